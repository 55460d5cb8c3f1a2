"""The shared feed (``share=``): what Redis adds, measured side by side in one run.

    pip install -e '.[sim,fast,redis]' && python benchmarks/share.py    # about 10 minutes; needs redis-server

Every figure comes from this one run on this machine, against a redis-server
started here (loopback, persistence off) and the loopback feed of
benchmarks/feed.py, each client in its own process, three runs, medians:

- latency: the feed stamps each message with its send time (the system-wide
  monotonic clock); the leader and a follower each record when the message is
  in their cache. The added latency is the follower's percentile minus the
  leader's, at 1,000 and 10,000 messages a second.
- relay rate: the leader relays reads of 200 messages as fast as Redis takes
  them, and two follower processes apply them; the rate is messages over the
  time until both followers hold every one (none may be missed).
- CPU: the leader's process CPU at 10,000 messages a second, with and without
  ``share=``, and their ratio.
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
from pathlib import Path
from typing import Any

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
    # The leader stays until the feed ends, so that the follower gets its n messages.
    """A leader or a follower that records when each stamped message is in its cache."""
    from agentx_sync import AgentExchangeWS

    seen: list[float] = []
    after = [float("inf")]  # only messages sent after the warm-up count (not a follower's catch-up)

    class Timed(AgentExchangeWS):
        def link_events(self, events: list[Any]) -> None:
            super().link_events(events)
            now = time.monotonic()
            seen.extend(now - sent for e in events if (sent := float(e.quantity)) > after[0])

    ws = Timed(api_key="bench", base_url=url, share=share)
    ws.subscribe_ticker("all")
    ws.start().wait_connected(60)
    assert ws.health().role == role, ws.health()
    after[0] = time.monotonic() + 1.0
    print("ready", flush=True)
    step = threading.Event()
    deadline = time.monotonic() + 120
    count, quiet_since = 0, time.monotonic()
    while len(seen) < n and time.monotonic() < deadline:
        step.wait(0.05)
        if len(seen) != count:
            count, quiet_since = len(seen), time.monotonic()
        elif count and time.monotonic() - quiet_since > 2.0:
            break  # the feed has ended
    health = ws.health()
    ws.close()
    return {"latency": seen[:n], "missed": health.missed_events}


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


def spawn(*args: str, gap: float | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if gap is not None:
        env["AGENTX_SYNC_PUBLISH_GAP"] = str(gap)
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


def latency_run(rate: int, n: int, gap: float | None = None) -> tuple[list[float], list[float], int]:
    """Leader and follower latencies (seconds) for one paced, stamped feed."""
    total = n + rate * 6
    with Redis() as redis, Feed(total, rate=rate, stamped=True, tick=0.001) as feed:
        leader = spawn("latency", feed.url, redis.url, str(total), "leader", gap=gap)
        ready(leader)
        follower = spawn("latency", feed.url, redis.url, str(n), "follower", gap=gap)
        ready(follower)
        a, b = result(leader), result(follower)
        return a["latency"], b["latency"], int(b["missed"])


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
        while shared._pending or shared._inflight is not None:
            shared.flush(time.monotonic())
            step.wait(0.001)
        results = [result(p) for p in procs]
        ws.close()
    done = max(r["done"] for r in results)
    lost = sum(n - r["applied"] for r in results) + sum(r["missed"] for r in results)
    return {"rate": n / (done - start), "lost": lost}


def cpu_run(n: int, shared: bool, gap: float | None = None) -> dict[str, float]:
    with Redis() as redis, Feed(n, rate=10_000) as feed:
        leader = spawn("cpu", feed.url, redis.url if shared else "", str(n), gap=gap)
        return result(leader)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def added(runs: list[tuple[list[float], list[float], int]], q: float) -> tuple[float, float, float]:
    """Leader's, follower's and added percentile ``q`` (µs), medians over the runs."""
    lead = statistics.median(pct(a, q) for a, _, _ in runs)
    follow = statistics.median(pct(b, q) for _, b, _ in runs)
    return lead, follow, follow - lead


def core(runs: list[dict[str, float]]) -> float:
    return statistics.median(r["cpu"] / r["wall"] for r in runs) * 100


def main() -> int:
    started = time.monotonic()
    version = sys.version.split()[0]
    print(f"# agentx_sync shared feed: {os.cpu_count()} cores, Python {version}, medians of {REPEAT}\n")
    print("## Added latency, leader's cache to a follower's (µs), default settings\n")
    print("| rate | leader p50 | follower p50 | added p50 | leader p99 | follower p99 | added p99 | missed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for rate, n in ((1_000, 5_000), (10_000, 30_000)):
        runs = [latency_run(rate, n) for _ in range(REPEAT)]
        lp50, fp50, a50 = added(runs, 0.50)
        lp99, fp99, a99 = added(runs, 0.99)
        missed = max(m for _, _, m in runs)
        print(
            f"| {rate:,} msgs/s | {lp50:,.0f} | {fp50:,.0f} | {a50:,.0f} | {lp99:,.0f}"
            f" | {fp99:,.0f} | {a99:,.0f} | {missed} |"
        )

    print("\n## Relay to two followers, reads of 200 messages, as fast as it goes\n")
    relays = [relay_run(300_000) for _ in range(REPEAT)]
    print("| msgs/s to both followers | messages lost |")
    print("|---:|---:|")
    print(f"| {statistics.median(r['rate'] for r in relays):,.0f} | {max(r['lost'] for r in relays):.0f} |")

    print("\n## The leader's CPU at 10,000 msgs/s (1 ms writes), without share= and with it\n")
    alone = [cpu_run(60_000, False) for _ in range(REPEAT)]
    print(f"Without share=: {core(alone):.1f} % of a core.\n")
    print("| AGENTX_SYNC_PUBLISH_GAP | with share= | CPU ratio | added p50 at 10k msgs/s | added p99 |")
    print("|---:|---:|---:|---:|---:|")
    for gap in (0.0, 0.001, 0.002, 0.005):
        shared = [cpu_run(60_000, True, gap) for _ in range(REPEAT)]
        runs = [latency_run(10_000, 30_000, gap) for _ in range(REPEAT)]
        default = " (default)" if gap == 0.002 else ""
        print(
            f"| {gap * 1000:g} ms{default} | {core(shared):.1f} % | {core(shared) / core(alone):.2f}"
            f" | {added(runs, 0.5)[2]:,.0f} µs | {added(runs, 0.99)[2]:,.0f} µs |"
        )
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
