"""The shared feed (``share=``): what Redis adds, measured side by side in one run.

    pip install -e '.[sim,fast,redis]' && python benchmarks/share.py    # about 6 minutes; needs redis-server

Every figure comes from this one run on this machine, against a redis-server
started here (loopback, persistence off) and the loopback feed of
benchmarks/feed.py, each client in its own process, three runs, medians:

- latency: the feed stamps each message with its send time (the system-wide
  monotonic clock); the leader and a follower each record when the message is
  in their cache. A message's added latency is the follower's time minus the
  leader's; its percentiles are taken over the messages of the follower's
  window, at 1,000 and 10,000 messages a second. Each member runs one full
  garbage collection before its window (see ``member_latency``).
- relay rate: the leader relays reads of 200 messages as fast as Redis takes
  them, and two follower processes apply them; the rate is messages over the
  time until both followers hold every one (none may be missed).
- CPU: the leader's process CPU at 10,000 messages a second, with and without
  ``share=``, and their ratio, for a few write rates (``AGENTX_SYNC_PUBLISH_RATE``),
  and for a feed of tiny reads, with and without the rate's limit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from array import array
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from feed import Feed, symbols, ticker_text  # noqa: E402

REPEAT = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    def __enter__(self) -> Redis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- the members (each in its own process) ----------------------------------------------


def member_latency(url: str, share: str, n: int, role: str) -> dict[str, Any]:
    """A leader or a follower that records when each stamped message is in its cache.

    The leader stays until the feed ends, so that the follower gets its ``n``
    messages. Before the window each member runs one full collection: the one
    Python would run for its imports' objects (about 55,000 here; a 20-25 ms
    pause) is a start-up cost, and a 3-second window that catches it reports
    it as a tail. The window's own full collections are counted and printed.
    """
    import gc

    from agentx_sync import AgentExchangeWS, Ticker

    # When each batch was in the cache, and its messages, kept in strings and a float array:
    # no objects for the garbage collector to trace, and little work for the client's thread.
    times, symbols, stamps, total = array("d"), [], [], [0]
    symbol, stamp = attrgetter("symbol"), attrgetter("quantity")

    class Timed(AgentExchangeWS):
        def link_events(self, events: list[Any]) -> None:
            super().link_events(events)
            now = time.monotonic()
            if type(events[0]) is Ticker:  # a feed of tickers: every batch is one kind
                symbols.append("\x00".join(map(symbol, events)))
                stamps.append("\x00".join(map(str, map(stamp, events))))
                times.append(now)
                total[0] += len(events)

    ws = Timed(api_key="bench", base_url=url, share=share)
    ws.subscribe_ticker("all")
    ws.start().wait_connected(60)
    assert ws.health().role == role, ws.health()
    gc.collect()
    full = gc.get_stats()[2]["collections"]
    after = time.monotonic() + 1.0  # only messages sent after the warm-up count (not a catch-up)
    print("ready", flush=True)
    step = threading.Event()
    deadline = time.monotonic() + 120
    warm: int | None = None  # messages applied before the window
    last, quiet_since = 0, time.monotonic()
    while time.monotonic() < deadline:
        step.wait(0.05)
        now, applied_now = time.monotonic(), total[0]
        if warm is None and now > after + 0.1:
            warm = applied_now
        if warm is not None and applied_now - warm > n + 1_000:
            break
        if applied_now != last:
            last, quiet_since = applied_now, now
        elif last and now - quiet_since > 2.0:
            break  # the feed has ended
    health = ws.health()
    collections = gc.get_stats()[2]["collections"] - full
    ws.close()
    seen: dict[str, float] = {}
    batches = len(times)  # appended last: every batch below this one is whole
    for when, names, sent in zip(times[:batches], symbols[:batches], stamps[:batches], strict=True):
        for s, q in zip(names.split("\x00"), sent.split("\x00"), strict=True):
            if float(q) > after and len(seen) < n:
                seen[f"{s} {q}"] = when
    return {"seen": seen, "missed": health.missed_events, "full_collections": collections}


def member_follow(url: str, share: str, n: int) -> dict[str, Any]:
    """A follower that reports when it has applied ``n`` messages."""
    from agentx_sync import AgentExchangeWS

    ws = AgentExchangeWS(api_key="bench", base_url=url, share=share)
    ws.start().wait_connected(60)
    start = ws.health().messages
    print("ready", flush=True)
    step = threading.Event()
    deadline = time.monotonic() + 120
    while ws.health().messages - start < n and time.monotonic() < deadline:
        step.wait(0.002)
    done = time.monotonic()
    health = ws.health()
    ws.close()
    return {"done": done, "applied": health.messages - start, "missed": health.missed_events}


def member_cpu(url: str, share: str, n: int) -> dict[str, Any]:
    """The leader's process CPU while ``n`` messages arrive (``share`` empty: no sharing)."""
    from agentx_sync import AgentExchangeWS

    ws = AgentExchangeWS(api_key="bench", base_url=url, share=share or None)
    ws.subscribe_ticker("all")
    ws.start().wait_connected(60)
    step = threading.Event()
    wall, cpu = time.perf_counter(), time.process_time()
    while ws.health().messages < n:
        step.wait(0.05)
    result = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "msgs": n}
    ws.close()
    return result


# -- the orchestrator -------------------------------------------------------------------


def spawn(*args: str, writes: float | None = None) -> subprocess.Popen[str]:
    """A member process; ``writes``: its AGENTX_SYNC_PUBLISH_RATE (writes a second)."""
    env = dict(os.environ)
    if writes is not None:
        env["AGENTX_SYNC_PUBLISH_RATE"] = str(writes)
    return subprocess.Popen(
        [sys.executable, __file__, "--member", *args], stdout=subprocess.PIPE, text=True, env=env
    )


def ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"a member did not start: {line!r}")


def result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=180)
    return dict(json.loads(out.strip().splitlines()[-1]))


class Latency(NamedTuple):
    """One paced run: per message (in seconds), the leader's latency and what the follower adds."""

    leader: list[float]
    added: list[float]
    missed: int
    full_collections: int


def latency_run(rate: int, n: int, writes: float | None = None) -> Latency:
    """Latencies for one paced, stamped feed, over the messages the follower saw.

    A message's added latency is when it was in the follower's cache minus when
    it was in the leader's: both are read from the system-wide monotonic clock.
    """
    total = n + rate * 6
    with Redis() as redis, Feed(total, rate=rate, stamped=True, tick=0.001) as feed:
        leader = spawn("latency", feed.url, redis.url, str(total), "leader", writes=writes)
        ready(leader)
        follower = spawn("latency", feed.url, redis.url, str(n), "follower", writes=writes)
        ready(follower)
        a, b = result(leader), result(follower)
    lead, follow = a["seen"], b["seen"]
    if len(follow) < n or not follow.keys() <= lead.keys():
        raise RuntimeError(f"the follower saw {len(follow)} of {n} messages, or some the leader did not")
    return Latency(
        leader=[lead[k] - float(k.split()[1]) for k in follow],
        added=[t - lead[k] for k, t in follow.items()],
        missed=int(b["missed"]),
        full_collections=int(a["full_collections"]) + int(b["full_collections"]),
    )


def relay_run(n: int, followers: int = 2) -> dict[str, float]:
    """Push ``n`` messages through a leader's relay as fast as Redis takes them."""
    from agentx_sync import AgentExchangeWS
    from agentx_sync.dialects.agentexchange import decode

    # The texts the leader relays are the server's own, as the feed writes them.
    texts = [ticker_text(s, f"{60000 + i}.25") for i, s in enumerate(symbols(600))]
    reads = [(texts[i : i + 200], [decode(t, 0.0) for t in texts[i : i + 200]]) for i in (0, 200, 400)]
    with Redis() as redis, Feed(1, rate=1) as feed:
        # The leader's feed ends at once: this process plays its IO thread, as fast as it can.
        ws = AgentExchangeWS(api_key="bench", base_url=feed.url, share=redis.url)
        ws.start().wait_connected(60)
        shared = ws._shared
        assert shared is not None and shared.role == "leader"
        procs = [spawn("follow", feed.url, redis.url, str(n)) for _ in range(followers)]
        for p in procs:
            ready(p)
        start = time.monotonic()
        sent = 0
        step = threading.Event()
        while sent < n:
            if len(shared._pending) > 2000:  # let the share thread drain what is queued
                step.wait(0.001)
                continue
            read, events = reads[(sent // 200) % 3]
            with ws._state.batch:  # as the IO thread calls it: relay under the batch lock,
                shared.relay(events, read)
            shared.flush(time.monotonic())  # then write, outside it
            sent += 200
        while shared._pending or shared._inflight:
            shared.flush(time.monotonic())
            step.wait(0.001)
        results = [result(p) for p in procs]
        ws.close()
    done = max(r["done"] for r in results)
    lost = sum(n - r["applied"] for r in results) + sum(r["missed"] for r in results)
    return {"rate": n / (done - start), "lost": lost}


def cpu_run(n: int, shared: bool, writes: float | None = None, tick: float = 0.001) -> dict[str, float]:
    with Redis() as redis, Feed(n, rate=10_000, tick=tick) as feed:
        leader = spawn("cpu", feed.url, redis.url if shared else "", str(n), writes=writes)
        return result(leader)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def added(runs: list[Latency], q: float) -> tuple[float, float]:
    """The leader's and the added percentile ``q`` (µs), medians over the runs."""
    return (
        statistics.median(pct(r.leader, q) for r in runs),
        statistics.median(pct(r.added, q) for r in runs),
    )


def core(runs: list[dict[str, float]]) -> float:
    return statistics.median(r["cpu"] / r["wall"] for r in runs) * 100


def main() -> int:
    started = time.monotonic()
    version = sys.version.split()[0]
    print(f"# agentx_sync shared feed: {os.cpu_count()} cores, Python {version}, medians of {REPEAT}\n")
    print("## Added latency, leader's cache to a follower's (µs), default settings\n")
    print("| rate | leader p50 | added p50 | leader p99 | added p99 | missed | full collections |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for rate, n in ((1_000, 5_000), (10_000, 30_000)):
        runs = [latency_run(rate, n) for _ in range(REPEAT)]
        lp50, a50 = added(runs, 0.50)
        lp99, a99 = added(runs, 0.99)
        print(
            f"| {rate:,} msgs/s | {lp50:,.0f} | {a50:,.0f} | {lp99:,.0f} | {a99:,.0f}"
            f" | {max(r.missed for r in runs)} | {sum(r.full_collections for r in runs)} |"
        )

    print("\n## Relay to two followers, reads of 200 messages, as fast as it goes\n")
    relays = [relay_run(300_000) for _ in range(REPEAT)]
    print("| msgs/s to both followers | messages lost |")
    print("|---:|---:|")
    print(f"| {statistics.median(r['rate'] for r in relays):,.0f} | {max(r['lost'] for r in relays):.0f} |")

    print("\n## The leader's CPU at 10,000 msgs/s (reads every 1 ms), without share= and with it\n")
    alone = [cpu_run(60_000, False) for _ in range(REPEAT)]
    print(f"Without share=: {core(alone):.1f} % of a core.\n")
    print("| AGENTX_SYNC_PUBLISH_RATE | with share= | CPU ratio | added p50 at 10k msgs/s | added p99 |")
    print("|---:|---:|---:|---:|---:|")
    for writes in (250, 500, 1_000):
        shared = [cpu_run(60_000, True, writes) for _ in range(REPEAT)]
        runs = [latency_run(10_000, 30_000, writes) for _ in range(REPEAT)]
        default = " (default)" if writes == 1_000 else ""
        print(
            f"| {writes:,} writes/s{default} | {core(shared):.1f} % | {core(shared) / core(alone):.2f}"
            f" | {added(runs, 0.5)[1]:,.0f} µs | {added(runs, 0.99)[1]:,.0f} µs |"
        )

    print("\n## The same, the feed writing each message on its own (tiny reads)\n")
    alone = [cpu_run(60_000, False, tick=0) for _ in range(REPEAT)]
    print(f"Without share=: {core(alone):.1f} % of a core.\n")
    print("| AGENTX_SYNC_PUBLISH_RATE | with share= | CPU ratio |")
    print("|---:|---:|---:|")
    for writes in (1_000, 1e9):
        shared = [cpu_run(60_000, True, writes, tick=0) for _ in range(REPEAT)]
        label = "1,000 writes/s (default)" if writes == 1_000 else "no limit"
        print(f"| {label} | {core(shared):.1f} % | {core(shared) / core(alone):.2f} |")
    print(f"\n(all of the above in {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--member", nargs="+")
    args = parser.parse_args()
    if args.member:
        kind, *rest = args.member
        if kind == "latency":
            out = member_latency(rest[0], rest[1], int(rest[2]), rest[3])
        elif kind == "follow":
            out = member_follow(rest[0], rest[1], int(rest[2]))
        else:
            out = member_cpu(rest[0], rest[1], int(rest[2]))
        print(json.dumps(out), flush=True)
        sys.exit(0)
    sys.exit(main())
