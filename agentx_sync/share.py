"""Many processes, one connection: a client's feed shared through Redis (``share=``).

(Longer than 500 lines on purpose: leading, following, failover and the
writes' fencing are one protocol, read best in one place.)

::

    process A (leader)            Redis                      process B, C ... (followers)
    WebSocket -> cache ---XADD--> feed stream ---XREAD BLOCK--> decode -> cache -> callbacks
                 |   \\--SET----> snapshot   ----GET (start, gap)-^
                 |   <--renew-- lease (SET NX PX, fenced)  <--SET NX when it lapses
                 \\<--HGETALL-- interest (AgentExchange: every process's subscriptions)

Every process runs the same client. One per feed (AgentExchange: endpoint +
API key; Nexgent: endpoint + agent) holds a Redis lease and the WebSocket: the
leader. It relays the text of every message it applied, one stream entry per
socket read, and now and then a snapshot of its cache. Followers load the
snapshot, then apply the stream in order through the same decoder, cache and
callbacks as the leader, so getters stay local and callbacks fire everywhere.

Every write of the leader is a Lua script that first checks the lease token,
so a leader that lost its lease (frozen, cut off) can never publish again; it
steps down when it notices. Key names are a hash of the feed identity; no
credential is ever written to Redis.

Entries carry the leader's run id and a sequence number, so a follower knows
when it missed something (a stream trimmed past it, a Redis restart) and
reloads the snapshot, counting what it could not see; a snapshot load fires no
callback, so an update is never delivered twice.

Nothing here imports redis unless ``share=`` is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections import deque
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from .errors import AgentXError, ProtocolError, ShareError, ShareRefusedError, safe_str

__all__ = ["Feed", "RateLimit", "Shared", "safe_redis_url"]

log = logging.getLogger("agentx_sync.share")

#: Seconds a lease lasts unless renewed; the leader renews it every third of that.
LEASE = 5.0
#: Stream entries kept (approximately: Redis trims whole nodes).
MAXLEN = 10_000
#: Seconds between snapshots while the feed changes (sooner when a follower asks). At one
#: a second, encoding 600 tickers was 9 % of the share thread's py-spy samples.
SNAPSHOT_EVERY = 5.0
#: Items (reads) the leader holds for Redis while it is unreachable; older ones are dropped.
MAX_PENDING = 10_000
#: Writes a second a leader makes at most (bursts of ``BURST``): a read waits at most
#: 1/PUBLISH_RATE s for its write while the feed's reads come faster. It bounds the
#: entries a second in Redis and the wake-ups of every follower, however small the
#: reads; a write costs the leader about 80 µs of CPU on the benchmark machine, and
#: waking for a held read about as much (benchmarks/share.py). The environment
#: variable ``AGENTX_SYNC_PUBLISH_RATE`` sets it.
PUBLISH_RATE = 1000.0
BURST = 2.0
#: Writes the IO thread sends before it reads their answers: at most this many, and the
#: oldest at most this many seconds before (one read takes every answer that has come).
IN_FLIGHT = 32
COLLECT_AFTER = 0.01
#: Seconds the IO thread's Redis connection waits (to connect, or for an answer).
IO_TIMEOUT = 0.5
#: Messages at most in one stream entry (a follower applies an entry as one state change).
MAX_ENTRY = 5_000
#: How long a follower's XREAD blocks, in milliseconds.
BLOCK_MS = 250
#: Seconds between a follower's looks at the lease (and refreshes of its interest).
LOOK_EVERY = 0.25
#: A process's published interest lives this long unless refreshed.
INTEREST_TTL = 3 * LEASE
#: Stream and snapshot keys expire a day after the last write.
KEEP_MS = 86_400_000

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
"""
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
                      'r', ARGV[3], 's', ARGV[4], 'n', ARGV[5], 'm', ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return id
"""
_SNAPSHOT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local after = '0-0'
if last[1] then after = last[1][1] end
redis.call('SET', KEYS[3], after .. '\\n' .. ARGV[2], 'PX', ARGV[3])
return after
"""


class RateLimit:
    """At most ``rate`` events a second, in bursts of up to ``burst``: a token bucket."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = burst
        self._at: float | None = None

    def take(self, now: float) -> float | None:
        """Take a token: ``None`` when there was one, else when there will be one."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0 - 1e-9:  # (a token made of float steps may fall short by a hair)
            self._tokens -= 1.0
            return None
        return now + (1.0 - self._tokens) / self.rate


def _publish_rate() -> float:
    """``AGENTX_SYNC_PUBLISH_RATE`` (writes a second), or the default when unset or invalid."""
    raw = os.environ.get("AGENTX_SYNC_PUBLISH_RATE")
    if raw is None:
        return PUBLISH_RATE
    try:
        rate = float(raw)
    except ValueError:
        rate = 0.0
    if not 0.0 < rate < float("inf"):
        log.warning("AGENTX_SYNC_PUBLISH_RATE=%r is not a positive number: using %g", raw, PUBLISH_RATE)
        return PUBLISH_RATE
    return rate


def safe_redis_url(url: str) -> str:
    """``url`` without its password (and user): for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<a redis URL>"


class Feed(Protocol):
    """What a client offers its share thread (``BaseClient`` implements it)."""

    _relayed: frozenset[type]

    def _feed_identity(self) -> str: ...
    def _lead_relay(self, shared: Shared | None) -> None: ...
    def _snapshot_state(self) -> Any: ...
    def _snapshot_texts(self, state: Any) -> list[str]: ...
    def _load_snapshot(self, events: list[Any]) -> None: ...
    def _follow_events(self, events: list[Any]) -> None: ...
    def _interest(self) -> Any: ...
    def _others(self, interests: list[Any]) -> None: ...
    def _lead(self) -> None: ...
    def _leading(self) -> bool: ...
    def _unlead(self) -> None: ...
    def _share_status(self, following: bool) -> None: ...
    def _share_failed(self, error: AgentXError) -> None: ...
    def _share_report(self, error: AgentXError) -> None: ...
    @property
    def _decoder(self) -> Any: ...
    def _bad_relayed(self, error: ProtocolError) -> None: ...
    @property
    def _batch(self) -> threading.Lock: ...


class Shared:
    """One client's share thread (``agentx-sync-share``): it leads or follows.

    Args:
        feed: the client.
        target: a ``redis://``/``rediss://``/``unix://`` URL, or a redis-py client.
        lease: seconds a leader's lease lasts unless renewed.
    """

    def __init__(self, feed: Feed, target: Any, *, lease: float = LEASE) -> None:
        self.feed = feed
        self._target = target
        self.where = safe_redis_url(target) if isinstance(target, str) else _describe_client(target)
        self.lease = lease
        digest = hashlib.sha256(feed._feed_identity().encode()).hexdigest()[:24]
        p = f"agentx_sync:{digest}:"
        self.k_lease, self.k_epoch, self.k_stream = p + "lease", p + "epoch", p + "feed"
        self.k_snap, self.k_interest, self.k_want = p + "snapshot", p + "interest", p + "want"
        self.member = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # A redis-py client (typed Any: its stubs type every reply as a union of all replies).
        self.redis: Any = None
        self._fast: Any = None
        self._io: Any = None  # the IO thread's own connection, for its writes
        # Writes sent from the IO thread, their answers not yet read: texts, first seq, when sent.
        self._inflight: deque[tuple[list[str], int, float]] = deque()
        self._head: tuple[str | None, bytes] = (None, b"")  # the packed start of a write, and its token
        self._acquire_script: Any = None
        self._renew_script: Any = None
        self._release_script: Any = None
        self._publish_script: Any = None
        self._snapshot_script: Any = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # Leading.
        self.token: str | None = None
        self._runs = 0
        self.run = ""  # the leader's run id, in every entry it writes
        self.seq = 0  # texts relayed in this run
        self._pending: deque[list[str]] = deque()  # appended by the IO thread, batch lock held
        self._dropped = 0  # texts dropped while Redis was unreachable (seq moves past them)
        self._changed = False
        self._rate = RateLimit(_publish_rate(), BURST)
        self._publish_lock = threading.Lock()  # one writer at a time: the IO thread or the share thread
        self._degraded = False  # the IO thread's last write failed: the share thread writes
        self._lease_lost = False  # a write was fenced off: step down
        self._next_snapshot = 0.0
        self._next_renew = 0.0
        self._next_interest = 0.0
        # Following.
        self._synced = False
        self._caught_up = False
        self._follow_run: str | None = None
        self._next_seq = 0
        self._last_id = "0-0"
        self._published_interest: str | None = None
        self._next_look = 0.0
        self._quiet_until = 0.0  # after a Redis outage: let the leader take its lease back first
        self._bad_snapshot: bytes | None = None  # the last malformed snapshot, reported once
        self._resynced_for = ""  # the run of the last entry that sent this follower to the snapshot
        self._want_after = 0  # a gap was seen at this sequence number: a snapshot at least as new is due
        self.applied = 0  # relayed messages this process applied as a follower
        self.last_applied: float | None = None
        self._init_status()

    def _init_status(self) -> None:
        # What health() shows (read without a lock: each is one attribute).
        self.role = "starting"
        self.leader: str | None = None
        self.lag: float | None = None
        self.lease_changes = 0
        self.resyncs = 0
        self.missed = 0
        self.relayed = 0
        self.error: str | None = None
        self._outage = False

    # -- lifecycle (the client's threads) ------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="agentx-sync-share", daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def stop(self) -> None:
        """Signal the share thread to end; it steps down and releases the lease."""
        self._stopping.set()
        self._wake.set()

    def relay(self, events: list[Any], texts: list[str]) -> None:
        """The IO thread's hook (batch lock held): queue the texts of what was just applied."""
        relayed = self.feed._relayed
        out = [t for e, t in zip(events, texts, strict=True) if type(e) in relayed]
        if not out:
            return
        pending = self._pending
        pending.append(out)
        if len(pending) > MAX_PENDING:
            self._dropped += len(pending.popleft())

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._open()
        except AgentXError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.feed._share_failed(exc)
            return
        try:
            self._loop()
        except BaseException as exc:  # never die silently
            log.critical("the share thread crashed", exc_info=exc)
            self.feed._share_failed(ShareError(f"internal error in the share thread: {type(exc).__name__}"))
        finally:
            self._step_down(release=True)
            self._forget_interest()
            if self._io is not None:
                self._io.disconnect()
            for client in (self.redis, self._fast):
                if client is not None:
                    client.close()
                    client.connection_pool.disconnect()

    def _open(self) -> None:
        """Connect to Redis and check it answers; a refusal or no answer ends the client."""
        import redis

        try:
            if isinstance(self._target, str):
                client = redis.Redis.from_url(
                    self._target,
                    socket_connect_timeout=5.0,
                    socket_timeout=5.0 + BLOCK_MS / 1000,
                    health_check_interval=30,
                )
            else:
                # Our own pool with the caller's settings (host, password, TLS...), answering in
                # bytes whatever ``decode_responses`` says, writing UTF-8 whatever ``encoding``
                # says (followers read UTF-8, and any text must go through); closed with the client.
                pool = self._target.connection_pool
                utf8 = {"encoding": "utf-8", "encoding_errors": "strict"}
                kwargs = {**pool.connection_kwargs, "decode_responses": False, **utf8}
                client = redis.Redis(
                    connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs)
                )
            client.ping()
        except redis.AuthenticationError as exc:
            raise ShareRefusedError(f"Redis at {self.where} refused the login: {_reason(exc)}") from None
        except redis.ResponseError as exc:  # NOAUTH, WRONGPASS, NOPERM ...
            raise ShareRefusedError(f"Redis at {self.where} refused: {_reason(exc)}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError, ValueError) as exc:
            if _is_certificate(exc):
                raise ShareRefusedError(
                    f"Redis at {self.where}: the TLS certificate was refused ({_reason(exc)})"
                ) from None
            raise ShareError(f"cannot reach Redis at {self.where}: {_reason(exc)}") from None
        self.redis = client
        # The IO thread's own connections, with short timeouts: a Redis that stops
        # answering must not hold up the WebSocket (its pongs) for long.
        pool = client.connection_pool
        quick = {**pool.connection_kwargs, "socket_timeout": IO_TIMEOUT, "socket_connect_timeout": IO_TIMEOUT}
        self._fast = redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **quick))
        self._io = self._fast.connection_pool.make_connection()
        self._acquire_script = client.register_script(_ACQUIRE)
        self._renew_script = client.register_script(_RENEW)
        self._release_script = client.register_script(_RELEASE)
        self._publish_script = client.register_script(_PUBLISH)
        self._snapshot_script = client.register_script(_SNAPSHOT)
        log.info("sharing the feed through Redis at %s as %s", self.where, self.member)

    def _loop(self) -> None:
        import redis

        while not self._stopping.is_set():
            try:
                if self.token is not None:
                    self._lead_tick()
                else:
                    self._follow_tick()
                if self._outage:
                    self._outage = False
                    self.error = None
                    log.info("Redis at %s is reachable again", self.where)
            except (redis.AuthenticationError, redis.ResponseError) as exc:
                if "NOSCRIPT" in str(exc):
                    continue  # a restarted Redis forgot the scripts: redis-py loads them again
                self._down(exc)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._down(exc)
            except Exception as exc:  # a bug here must not end sharing: step down, report, go on
                log.error("the share thread failed: %s", type(exc).__name__, exc_info=exc)
                self._step_down(release=True)
                self._synced = False
                self.feed._share_report(
                    ShareError(f"internal error in the share thread: {type(exc).__name__}")
                )
                self._stopping.wait(1.0)

    def _down(self, exc: Exception) -> None:
        """Redis failed: report it once per outage, then retry in a moment."""
        error = ShareError(f"Redis at {self.where} is unreachable: {_reason(exc)}")
        self.error = f"ShareError: {error}"
        if not self._outage:
            self._outage = True
            log.warning("%s; %s", error, "keeping the connection" if self.token else "retrying")
            self.feed._share_report(error)
            if self.token is None:
                self.feed._share_status(following=False)
        self._synced = False  # the stream may be gone (a restart): reload the snapshot
        self._quiet_until = time.monotonic() + self.lease
        self._stopping.wait(0.2)

    # -- leading ------------------------------------------------------------------------

    def _try_lead(self) -> bool:
        if time.monotonic() < self._quiet_until:
            return False
        token = self._acquire_script(
            keys=[self.k_lease, self.k_epoch], args=[self.member, int(self.lease * 1000)]
        )
        if not token:
            return False
        self.token = token.decode() if isinstance(token, bytes) else str(token)
        self._lease_lost = self._degraded = False
        self._runs += 1
        self.run = f"{self.member}#{self._runs}"
        self.seq = 0
        self.lease_changes += 1
        self.role, self.leader, self.lag = "leader", _who(self.token), 0.0
        log.info("leading the shared feed (lease %s)", self.token.split(":", 1)[0])
        with self.feed._batch:  # from here on every applied read is relayed
            self._pending.clear()
            self._dropped = 0
            state = self.feed._snapshot_state()
            self.feed._lead_relay(self)
        with self._publish_lock:
            self._write_snapshot(self.feed._snapshot_texts(state))
        if self._lease_lost:  # taken over already: never open the connection
            self._step_down(release=False)
            return False
        now = time.monotonic()
        self._next_renew = now + self.lease / 3
        self._next_snapshot = now + SNAPSHOT_EVERY
        self._next_interest = 0.0
        self.feed._lead()
        return True

    def _lead_tick(self) -> None:
        """The share thread's turn as leader: chores, and writes only when the IO thread cannot."""
        now = time.monotonic()
        self._wake.wait(max(0.0, min(self._next_renew, self._next_snapshot, self._next_interest) - now))
        self._wake.clear()
        if self._stopping.is_set():
            return
        if self._lease_lost:
            log.warning("the lease was lost while publishing: stepping down")
            self._step_down(release=False)
            return
        if self._outage and not self._renew():
            return
        if not self.feed._leading():
            # The connection ended for good (a Nexgent takeover, a refusal): let another process try.
            log.warning("the shared feed's connection ended: giving up the lease")
            self._step_down(release=True)
            self._quiet_until = time.monotonic() + self.lease
            return
        if self._degraded:  # the IO thread's last write failed: write from here until one works
            with self._publish_lock:
                self._settle_io()
                while self._pending and self.token is not None and not self._lease_lost:
                    self._publish(self.redis, self._take())
            self._degraded = False
        self._chores(time.monotonic())

    def _chores(self, now: float) -> None:
        """The leader's periodic work: the lease, the other processes' interest, snapshots."""
        if now >= self._next_renew:
            if not self._renew():
                return
            self._next_renew = now + self.lease / 3
        if now >= self._next_interest:
            self._gather_interest()
            self._next_interest = now + 0.5
            if self.redis.getdel(self.k_want) is not None:  # a follower needs a newer snapshot
                self._next_snapshot = now
        if now >= self._next_snapshot:
            self._next_snapshot = now + SNAPSHOT_EVERY
            if self._changed:
                self._snapshot()

    def _renew(self) -> bool:
        """Keep the lease; after a Redis restart take it back. False: this process no longer leads."""
        ms = int(self.lease * 1000)
        if self._renew_script(keys=[self.k_lease], args=[self.token, ms]) == 1:
            return True
        if self._outage:
            # Redis came back without the lease (a restart): take it back at once if it is free.
            token = self._acquire_script(keys=[self.k_lease, self.k_epoch], args=[self.member, ms])
            if token:
                self.token = token.decode() if isinstance(token, bytes) else str(token)
                self.lease_changes += 1
                log.info("took the lease back after a Redis outage")
                self._snapshot()
                return True
        log.warning("lost the lease of the shared feed: stepping down")
        self._step_down(release=False)
        return False

    def flush(self, now: float) -> float | None:
        """The IO thread's hook, after each read and when its wait times out: write what is
        queued as one entry, at most ``PUBLISH_RATE`` times a second.

        Returns when to call again (``None``: nothing waits). The IO thread, awake
        anyway, writes on a connection of its own and never waits for an answer:
        it reads the answers that have come, in order, every ``COLLECT_AFTER``
        (or ``IN_FLIGHT`` writes). A share thread that did the writes, waiting for
        each answer, cost the leader about twice its unshared CPU, and reading
        each answer before the next write a quarter more than reading them
        together (benchmarks/share.py). On any failure the share thread takes the
        writes over.
        """
        if self.token is None or self._degraded or self._lease_lost:
            return None
        if not self._pending and not self._inflight:
            return None
        if not self._publish_lock.acquire(blocking=False):
            return now + 0.001  # the share thread is writing (a snapshot): soon again
        try:
            return self._flush(now)
        except Exception as exc:
            self._io_failed(exc)
            return None
        finally:
            self._publish_lock.release()

    def _flush(self, now: float) -> float | None:
        inflight = self._inflight
        if inflight and (len(inflight) >= IN_FLIGHT or now >= inflight[0][2] + COLLECT_AFTER):
            self._collect(wait=False)
        if len(inflight) >= IN_FLIGHT:
            return now + 0.001  # Redis is behind: back for its answers
        collect = inflight[0][2] + COLLECT_AFTER if inflight else None
        if not self._pending:
            return collect
        due = self._rate.take(now)
        if due is not None:
            return due if collect is None else min(due, collect)
        self._send(self._take(), now)
        return inflight[0][2] + COLLECT_AFTER

    def _send(self, texts: list[str], now: float) -> None:
        """Send one entry on the IO thread's connection without waiting (``_publish_lock`` held)."""
        if self._dropped:
            self.seq += self._dropped  # followers see the gap and resync
            self._dropped = 0
        head, token = self._head, self.token
        assert token is not None
        if head[0] != token:  # packed once a term: what stays the same in every write
            fixed = ("EVALSHA", self._publish_script.sha, 2, self.k_lease, self.k_stream, token)
            head = self._head = (token, _pack_head(12, *fixed, MAXLEN, self.run))
        tail = (self.seq, len(texts), _join(texts), KEEP_MS)
        self._inflight.append((texts, self.seq, now))
        self.seq += len(texts)
        # Packed here: redis-py's pack_command took a fifth of a write's CPU (benchmarks/share.py).
        self._io.send_packed_command([head[1] + _pack_args(*tail)], check_health=False)

    def _collect(self, *, wait: bool) -> None:
        """Read the answers to the writes in flight that have come (all of them if ``wait``),
        oldest first (``_publish_lock`` held). An error answer raises: the share thread
        writes again what was not answered."""
        inflight, io = self._inflight, self._io
        while inflight and (wait or io.can_read(timeout=0)):
            written = io.read_response()  # after the first, read from what the first recv took
            texts = inflight.popleft()[0]
            if written is None:  # fenced off: another process leads now
                self._lease_lost = True
                self._wake.set()
                inflight.clear()
                io.disconnect()  # the answers still to come are of fenced writes too
                return
            self.relayed += len(texts)
            self._changed = True
        if inflight and time.monotonic() - inflight[0][2] > IO_TIMEOUT:
            raise TimeoutError("Redis did not answer a write")

    def _io_failed(self, exc: BaseException) -> None:
        """A write from the IO thread failed: unanswered texts go back in line; the share
        thread writes from here (and, for a restarted Redis, loads the script again)."""
        log.debug("a write from the IO thread failed (%s): the share thread takes over", _reason(exc))
        self._forget_inflight()
        self._degraded = True
        self._wake.set()

    def _forget_inflight(self) -> None:
        """Put what was sent but not answered back in line; drop the connection its answers
        would come on (``_publish_lock`` held)."""
        inflight = self._inflight
        if inflight:
            self.seq = inflight[0][1]
            for texts, _, _ in reversed(inflight):
                self._pending.appendleft(texts)  # maybe written after all: followers skip a repeat
            inflight.clear()
        self._io.disconnect()

    def _settle_io(self) -> None:
        """The share thread, before writing itself: the IO thread's writes in flight are answered."""
        if self._inflight:
            try:
                self._collect(wait=True)
            except Exception as exc:
                self._io_failed(exc)

    def _take(self) -> list[str]:
        """The texts of queued reads, oldest first, for one entry."""
        pending = self._pending
        texts: list[str] = []
        while pending and len(texts) < MAX_ENTRY:
            texts += pending.popleft()
        return texts

    def _publish(self, client: Any, texts: list[str]) -> None:
        """Write ``texts`` as one fenced stream entry (one round trip; ``_publish_lock`` held).

        One entry per write, not per read: at 10,000 msgs/s in 1 ms reads, one
        XADD per read cost the leader 2.7x its unshared CPU (benchmarks/share.py).
        """
        if not texts:
            return
        if self._dropped:
            self.seq += self._dropped  # followers see the gap and resync
            self._dropped = 0
        try:
            written = self._write(client, len(texts), _join(texts))
        except Exception:
            self._pending.appendleft(texts)  # not written: first in line for the next try
            raise
        if written is None:  # fenced off: another process leads now
            self._lease_lost = True
            self._wake.set()
            return
        self.seq += len(texts)
        self.relayed += len(texts)
        self._changed = True

    def _write(self, client: Any, count: int, joined: str) -> Any:
        """The fenced XADD. EVALSHA called directly: redis-py's Script wrapper adds a sixth
        to a write's CPU, which the leader pays hundreds of times a second."""
        import redis

        args = (self.k_lease, self.k_stream, self.token, MAXLEN, self.run, self.seq, count, joined, KEEP_MS)
        try:
            return client.execute_command("EVALSHA", self._publish_script.sha, 2, *args)
        except redis.exceptions.NoScriptError:  # a restarted Redis: load it again
            return self._publish_script(keys=list(args[:2]), args=list(args[2:]), client=client)

    def _snapshot(self) -> None:
        """Write what is queued, then the cache as it stands after exactly that."""
        with self._publish_lock:
            self._settle_io()
            with self.feed._batch:  # the records only (immutable): encoded outside the lock
                state = self.feed._snapshot_state()
                taken = []
                while self._pending:
                    taken.append(self._take())
            for texts in taken:
                if self.token is None or self._lease_lost:
                    return
                self._publish(self.redis, texts)
            if self.token is not None and not self._lease_lost:
                self._write_snapshot(self.feed._snapshot_texts(state))

    def _write_snapshot(self, texts: list[str]) -> None:
        body = json.dumps({"run": self.run, "seq": self.seq, "texts": texts})
        after = self._snapshot_script(
            keys=[self.k_lease, self.k_stream, self.k_snap], args=[self.token, body, KEEP_MS]
        )
        self._changed = False
        if after is None:  # fenced off: the share thread steps down at its next turn
            self._lease_lost = True
            self._wake.set()

    def _step_down(self, *, release: bool) -> None:
        """Stop leading: close the WebSocket first, then (if asked) free the lease."""
        if self.token is None:
            return
        token, self.token = self.token, None
        with self.feed._batch:
            self.feed._lead_relay(None)
            self._pending.clear()
        with self._publish_lock:
            if self._inflight:  # answers a next term must not take for its own
                self._inflight.clear()
                self._io.disconnect()
        self.feed._unlead()
        self.role, self.leader = "follower", None
        self._synced = False
        if release and self.redis is not None:
            try:
                self._release_script(keys=[self.k_lease], args=[token])
            except Exception as exc:
                log.debug("could not release the lease: %s", _reason(exc))

    # -- following ----------------------------------------------------------------------

    def _follow_tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_look:  # is there a leader? (not at every read: a round trip)
            self._next_look = now + LOOK_EVERY
            holder = self.redis.get(self.k_lease)
            if holder is None and self._try_lead():
                return
            if holder is not None:
                self.leader = _who(holder.decode("utf-8", "replace"))
            self._publish_interest()
        if not self._synced and not self._resync():
            self._stopping.wait(0.05)
            return
        # Until caught up (after a snapshot load), read without waiting.
        block = BLOCK_MS if self._caught_up else None
        found = self.redis.xread({self.k_stream: self._last_id}, count=500, block=block)
        read = 0
        for _, entries in found or ():
            for entry_id, fields in entries:
                if not self._apply(entry_id, fields):
                    return
                read += 1
        if not self._caught_up and read < 500:
            self._caught_up = True
            self.role = "follower"
            self.feed._share_status(following=True)

    def _apply(self, entry_id: bytes, fields: dict[bytes, bytes]) -> bool:
        """One stream entry; False when it shows a gap (the snapshot is due)."""
        run = fields.get(b"r", b"").decode("utf-8", "replace")
        try:
            seq, count = int(fields.get(b"s", b"-1")), int(fields.get(b"n", b"0"))
        except ValueError:
            seq, count = -1, 0
        if run != self._follow_run or seq != self._next_seq:
            if run == self._follow_run:
                stale = seq + count <= self._next_seq
            else:
                stale = self._foreign(run, seq, count)
            if stale:
                self._last_id = entry_id.decode()  # already applied (a snapshot held it), or not ours
                return True
            if run == self._follow_run and seq > self._next_seq:
                self._want_after = seq
                self.redis.set(self.k_want, b"1", px=int(INTEREST_TTL * 1000))  # ask for a newer snapshot
            self._synced = False
            return False
        text = fields.get(b"m", b"").decode("utf-8", "replace")
        now = time.monotonic()
        events = self._decode(_split(text), now)
        if events:
            self.feed._follow_events(events)
        self.applied += count
        self.last_applied = now
        self._next_seq = seq + count
        self._last_id = entry_id.decode()
        stamp = int(self._last_id.split("-", 1)[0]) / 1000
        self.lag = max(0.0, time.time() - stamp)
        return True

    def _foreign(self, run: str, seq: int, count: int) -> bool:
        """An entry no leader of this feed wrote (malformed, or of a run the latest snapshot
        does not lead to): counted as a bad message and skipped, never a resync loop."""
        if run and seq >= 0 and count > 0 and run != self._resynced_for:
            self._resynced_for = run  # a new leader's entry: one resync to its snapshot
            return False
        self.feed._bad_relayed(ProtocolError("a shared feed entry that no leader of this feed wrote"))
        return True

    def _decode(self, texts: list[str], now: float) -> list[Any]:
        """The relayed texts decoded as the leader decoded them; what is not a relayed record
        is dropped, what does not decode is a counted bad message."""
        decode, relayed = self.feed._decoder, self.feed._relayed
        events = []
        for text in texts:
            try:
                event = decode(text, now)
            except ProtocolError as exc:
                self.feed._bad_relayed(exc)
                continue
            except Exception as exc:  # a decoder bug must not end the share thread either
                error = ProtocolError(f"a relayed message the decoder failed on ({type(exc).__name__})")
                error.__cause__ = exc
                self.feed._bad_relayed(error)
                continue
            if type(event) in relayed:
                events.append(event)
        return events

    def _resync(self) -> bool:
        """Load the leader's snapshot; False when there is none (yet) to load."""
        raw = self.redis.get(self.k_snap)
        if raw is None:
            return False
        head, _, body = raw.partition(b"\n")
        try:
            after = head.decode("ascii")
            if not _STREAM_ID.fullmatch(after):
                raise ValueError(after)
            snap = json.loads(body)
            run, seq, texts = str(snap["run"]), int(snap["seq"]), list(snap["texts"])
        except (ValueError, KeyError, TypeError):
            if raw != self._bad_snapshot:  # once per snapshot, not at every look
                self._bad_snapshot = raw
                self.feed._bad_relayed(ProtocolError("a shared feed snapshot that is not well-formed"))
            return False
        if run == self._follow_run and seq < max(self._next_seq, self._want_after):
            return False  # older than what this process saw: wait for a newer one
        if run == self._follow_run:
            self.missed += seq - self._next_seq
        elif self._follow_run is not None:
            log.info("the shared feed has a new leader: reloading its snapshot")
        self.feed._load_snapshot(self._decode([str(t) for t in texts], time.monotonic()))
        self._follow_run, self._next_seq, self._last_id = run, seq, after
        self._want_after = 0
        self.resyncs += 1
        self._synced = True
        self._caught_up = False  # connected once the stream after the snapshot is applied too
        return True

    # -- interest (what each process subscribes to) -----------------------------------

    def _publish_interest(self) -> None:
        interest = self.feed._interest()
        if interest is None:
            return
        text = json.dumps(interest, sort_keys=True)
        now = time.monotonic()
        if text == self._published_interest and now < self._next_interest:
            return
        seconds, micros = self.redis.time()
        until = int(seconds) * 1000 + int(micros) // 1000 + int(INTEREST_TTL * 1000)
        self.redis.hset(self.k_interest, self.member, json.dumps({"until": until, "interest": interest}))
        self.redis.pexpire(self.k_interest, KEEP_MS)
        self._published_interest = text
        self._next_interest = now + self.lease / 3

    def _gather_interest(self) -> None:
        """The leader: every live process's interest, to subscribe to the union."""
        if self.feed._interest() is None:
            return
        seconds, micros = self.redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        wanted, expired = [], []
        for member, raw in self.redis.hgetall(self.k_interest).items():
            if member.decode("utf-8", "replace") == self.member:
                continue
            try:
                entry = json.loads(raw)
                if int(entry["until"]) < now_ms:
                    expired.append(member)
                    continue
                wanted.append(entry["interest"])
            except (ValueError, KeyError, TypeError):
                expired.append(member)
        if expired:
            self.redis.hdel(self.k_interest, *expired)
        self.feed._others(wanted)

    def _forget_interest(self) -> None:
        if self.redis is None:
            return
        try:
            self.redis.hdel(self.k_interest, self.member)
        except Exception as exc:
            log.debug("could not remove this process's interest: %s", _reason(exc))


_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


def _pack_head(count: int, *args: str | int) -> bytes:
    """The start of a Redis command of ``count`` arguments, packed as redis-py packs it (RESP)."""
    return b"*%d\r\n" % count + _pack_args(*args)


def _pack_args(*args: str | int) -> bytes:
    """Arguments of a Redis command (RESP bulk strings), as redis-py packs them."""
    out = []
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else b"%d" % arg
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _join(texts: list[str]) -> str:
    """One entry's texts: NUL-separated (no well-formed JSON text holds a NUL), or, when
    one does, a JSON list after a 0x01 mark."""
    joined = "\x00".join(texts)
    if joined.count("\x00") != len(texts) - 1 or joined.startswith("\x01"):
        return "\x01" + json.dumps(texts)
    return joined


def _split(text: str) -> list[str]:
    """The texts of a stream entry: NUL-separated, or a JSON list after a 0x01 mark."""
    if not text:
        return []
    if text[0] == "\x01":
        try:
            texts = json.loads(text[1:])
        except ValueError:
            return []
        return [t for t in texts if type(t) is str] if type(texts) is list else []
    return text.split("\x00")


def _who(token: str) -> str:
    """``host:pid`` of a lease token ``epoch:host:pid:nonce``."""
    parts = token.split(":")
    return ":".join(parts[1:3]) if len(parts) >= 4 else "?"


def _describe_client(client: Any) -> str:
    try:
        kwargs = client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
    except AttributeError:
        return "<a redis client>"


def _reason(exc: BaseException) -> str:
    """A Redis error's text without anything secret (redis-py never puts the password in it)."""
    return safe_str(exc, 200) or type(exc).__name__


def _is_certificate(exc: BaseException) -> bool:
    import ssl

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
