"""The benchmark suite: receive loops side by side, then contention, CPU, latency, memory.

    pip install -e '.[sim,fast]' && python benchmarks/run.py      # about 5 minutes

Every figure comes from this one run, on this machine: each variant runs in
a fresh worker process against a fresh feed process (benchmarks/feed.py:
pre-encoded ~150-byte ticker frames for 600 symbols over loopback, a server
that is never the bottleneck), three times, and the median is shown. "B" is
websocket-client's ``recv()`` plus ``json.loads`` without its pure-Python
UTF-8 check; ratios are to B's median in the same run.

"default install" is agentx_sync with the standard library's JSON parser;
"[fast]" adds orjson (``pip install 'agentx_sync[fast]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from feed import Feed  # noqa: E402

N = 200_000
REPEAT = 3
COALESCE = 0.02  # the coalesce= option shown beside the default (0: no wait)


# -- the workers (each runs in its own process) ---------------------------------------


def _ingest(ws: Any, n: int, poll: float) -> dict[str, float]:
    """Time the client until ``n`` messages are in its cache, checking every ``poll`` s."""
    step = threading.Event()

    def run() -> int:
        while ws.health().messages < n:
            step.wait(poll)
        return int(ws.health().messages)

    return _window(run)


def _window(fn: Any) -> dict[str, float]:
    """Time a receive loop: wall and CPU seconds of this whole process."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = fn()
    return {"msgs": count, "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def loop_websocket_client(url: str, n: int, skip_utf8: bool, parser: str) -> dict[str, float]:
    import websocket

    loads = _parser(parser)
    ws = websocket.create_connection(url + "/ws/v1?api_key=bench", skip_utf8_validation=skip_utf8)

    def run() -> int:
        got = 0
        while got < n:
            message = ws.recv()
            if not message:
                break
            loads(message)
            got += 1
        return got

    result = _window(run)
    ws.close()
    return result


def loop_websocket_app(url: str, n: int, skip_utf8: bool) -> dict[str, float]:
    import websocket

    got = [0]

    def on_message(app: Any, message: str) -> None:
        json.loads(message)
        got[0] += 1
        if got[0] >= n:
            app.close()

    app = websocket.WebSocketApp(url + "/ws/v1?api_key=bench", on_message=on_message)

    def run() -> int:
        app.run_forever(skip_utf8_validation=skip_utf8)
        return got[0]

    return _window(run)


def loop_websockets_asyncio(url: str, n: int) -> dict[str, float]:
    from websockets.asyncio.client import connect

    async def main() -> dict[str, float]:
        async with connect(
            url + "/ws/v1?api_key=bench", max_size=None, compression=None, ping_interval=None
        ) as ws:
            wall, cpu = time.perf_counter(), time.process_time()
            got = 0
            async for message in ws:
                json.loads(message)
                got += 1
                if got >= n:
                    break
            return {"msgs": got, "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}

    return asyncio.run(main())


def loop_agentx(url: str, n: int, callbacks: int) -> dict[str, float]:
    from agentx_sync import AgentExchangeWS

    ws = AgentExchangeWS(api_key="bench", base_url=url)
    ws.subscribe_ticker("all")
    counts = [0] * callbacks
    for i in range(callbacks):

        def count(_: Any, i: int = i) -> None:
            counts[i] += 1

        ws.on_ticker("all")(count)
    ws.start().wait_connected(30)
    step = threading.Event()

    def run() -> int:
        # Done when every message is in the cache and, with callbacks, delivered.
        while ws.health().messages < n or (callbacks and counts[-1] + ws.health().dropped_callbacks < n):
            step.wait(0.002)
        return ws.health().messages

    result = _window(run)
    result["dropped_callbacks"] = ws.health().dropped_callbacks
    ws.close()
    return result


def contention_agentx(url: str, n: int, readers: int) -> dict[str, float]:
    from agentx_sync import AgentExchangeWS

    ws = AgentExchangeWS(api_key="bench", base_url=url)
    ws.subscribe_ticker("all")
    reads = [0] * readers
    stalls = [0.0] * readers
    stop = threading.Event()

    def reader(i: int) -> None:
        get = ws.get_cached_price
        clock = time.perf_counter
        count = 0
        longest = 0.0
        while not stop.is_set():
            started = clock()
            for _ in range(100):
                get("S001USDT")
            longest = max(longest, clock() - started)
            count += 100
        reads[i] = count
        stalls[i] = longest

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    ws.start().wait_connected(30)
    for t in threads:
        t.start()
    result = _ingest(ws, n, 0.002)
    stop.set()
    for t in threads:
        t.join()
    result["reads"] = sum(reads)
    result["stall"] = max(stalls)
    ws.close()
    return result


def contention_naive(url: str, n: int) -> dict[str, float]:
    """B with a lock per cache update and one thread calling a getter in a tight loop."""
    import websocket

    ws = websocket.create_connection(url + "/ws/v1?api_key=bench", skip_utf8_validation=True)
    lock = threading.Lock()
    cache: dict[str, Any] = {}
    stop = threading.Event()
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            for _ in range(1000):
                with lock:
                    cache.get("S001USDT")
            reads[0] += 1000

    thread = threading.Thread(target=reader)
    thread.start()

    def run() -> int:
        got = 0
        deadline = time.monotonic() + 10  # it crawls: measure ten seconds of it
        while got < n and time.monotonic() < deadline:
            message = json.loads(ws.recv())
            with lock:
                cache[message["symbol"]] = message["data"]["price"]
            got += 1
        return got

    result = _window(run)
    stop.set()
    thread.join()
    ws.close()
    result["reads"] = reads[0]
    return result


def latency_agentx(url: str, n: int, coalesce: float = 0.0) -> dict[str, Any]:
    from agentx_sync import AgentExchangeWS

    cache_lat: list[float] = []
    callback_lat: list[float] = []

    class Timed(AgentExchangeWS):
        def link_events(self, events: list[Any]) -> None:
            super().link_events(events)
            now = time.monotonic()  # the batch is in the cache, the lock released
            cache_lat.extend(now - float(e.quantity) for e in events)

    ws = Timed(api_key="bench", base_url=url, coalesce=coalesce)
    ws.on_ticker("all")(lambda t: callback_lat.append(time.monotonic() - float(t.quantity)))
    ws.start().wait_connected(30)
    step = threading.Event()
    while len(callback_lat) < n and not step.wait(0.01):
        pass
    ws.close()
    return {"cache": cache_lat, "callback": callback_lat}


def cpu_agentx(url: str, n: int, coalesce: float = 0.0) -> dict[str, float]:
    from agentx_sync import AgentExchangeWS

    ws = AgentExchangeWS(api_key="bench", base_url=url, coalesce=coalesce)
    ws.subscribe_ticker("all")
    ws.start().wait_connected(30)
    result = _ingest(ws, n, 0.05)
    ws.close()
    return result


def cpu_baseline(url: str, n: int) -> dict[str, float]:
    return loop_websocket_client(url, n, True, "json")


def memory_agentx(url: str, n: int) -> dict[str, float]:
    from agentx_sync import AgentExchangeWS

    ws = AgentExchangeWS(api_key="bench", base_url=url)  # event queue on, never drained
    ws.subscribe_ticker("all")
    ws.start().wait_connected(30)
    step = threading.Event()
    while ws.health().messages < 20_000:
        step.wait(0.005)
    start = _rss()
    peak = start
    while ws.health().messages < n:
        step.wait(0.05)
        peak = max(peak, _rss())
    end = _rss()
    health = ws.health()
    ws.close()
    return {
        "start": start,
        "peak": peak,
        "end": end,
        "msgs": health.messages,
        "dropped": health.dropped_events,
    }


def _rss() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _parser(name: str) -> Any:
    if name == "orjson":
        import orjson

        return orjson.loads
    return json.loads


WORKERS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    # name: (function, its arguments, feed options)
    "A": (loop_websocket_client, {"skip_utf8": False, "parser": "json"}, {}),
    "B": (loop_websocket_client, {"skip_utf8": True, "parser": "json"}, {}),
    "B+orjson": (loop_websocket_client, {"skip_utf8": True, "parser": "orjson"}, {}),
    "app": (loop_websocket_app, {"skip_utf8": False}, {}),
    "app-noutf8": (loop_websocket_app, {"skip_utf8": True}, {}),
    "websockets": (loop_websockets_asyncio, {}, {}),
    "agentx": (loop_agentx, {"callbacks": 0}, {}),
    "agentx-cb": (loop_agentx, {"callbacks": 2}, {}),
    "contention": (contention_agentx, {"readers": 2}, {}),
    "naive-contention": (contention_naive, {}, {}),
    "cpu-agentx": (cpu_agentx, {}, {"rate": 10_000}),
    "cpu-B": (cpu_baseline, {}, {"rate": 10_000}),
    "cpu-agentx-each": (cpu_agentx, {}, {"rate": 10_000, "tick": 0}),
    "cpu-agentx-co": (cpu_agentx, {"coalesce": COALESCE}, {"rate": 10_000}),
    "cpu-agentx-co-each": (cpu_agentx, {"coalesce": COALESCE}, {"rate": 10_000, "tick": 0}),
    "cpu-B-each": (cpu_baseline, {}, {"rate": 10_000, "tick": 0}),
    "latency-each": (latency_agentx, {}, {"rate": 20_000, "stamped": True, "tick": 0}),
    "latency-each-co": (latency_agentx, {"coalesce": COALESCE}, {"rate": 20_000, "stamped": True, "tick": 0}),
    "memory": (memory_agentx, {}, {}),
}


def worker(name: str, n: int) -> None:
    function, options, feed_options = WORKERS[name]
    with Feed(n, **feed_options) as feed:
        result = function(feed.url, n, **options)
    print(json.dumps(result))


# -- the orchestrator -------------------------------------------------------------------


def measure(name: str, n: int, *, fast: bool = False) -> dict[str, Any]:
    env = {**os.environ, "AGENTX_SYNC_JSON": "" if fast else "stdlib"}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--messages", str(n)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def medians(name: str, n: int, *, fast: bool = False, repeat: int = REPEAT) -> list[dict[str, Any]]:
    return [measure(name, n, fast=fast) for _ in range(repeat)]


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def rate(runs: list[dict[str, Any]]) -> float:
    return statistics.median(r["msgs"] / r["wall"] for r in runs)


def cpu_us(runs: list[dict[str, Any]]) -> float:
    return statistics.median(r["cpu"] / r["msgs"] * 1e6 for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description="agentx_sync benchmarks")
    parser.add_argument("--worker")
    parser.add_argument("--messages", type=int, default=N)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.messages)
        return 0

    started = time.monotonic()
    python = sys.version.split()[0]
    print(f"# agentx_sync benchmarks: {os.cpu_count()} cores, Python {python}, medians of {REPEAT}")
    print(f"\n## Ingest, ticker_all over 600 symbols, {N:,} messages\n")
    rows = [
        ("websocket-client recv() + json, default options (A)", "A", False),
        ("websocket-client recv() + json, skip_utf8_validation (B)", "B", False),
        ("B + orjson", "B+orjson", False),
        ("websocket-client WebSocketApp.run_forever + json", "app", False),
        ("WebSocketApp.run_forever + json, no UTF-8 check", "app-noutf8", False),
        ("websockets asyncio client + json", "websockets", False),
        ("**agentx_sync**, default install: frames, decode, Decimal, cache", "agentx", False),
        ("**agentx_sync [fast]** (orjson)", "agentx", True),
        ("agentx_sync + 2 callbacks + event queue, default install", "agentx-cb", False),
        ("agentx_sync + 2 callbacks + event queue, [fast]", "agentx-cb", True),
    ]
    results = {}
    for _, name, fast in rows:
        results[(name, fast)] = medians(name, N, fast=fast)
    b = rate(results[("B", False)])
    print("| receive loop | msgs/s | µs CPU/msg | ratio to B |")
    print("|---|---:|---:|---:|")
    for label, name, fast in rows:
        runs = results[(name, fast)]
        print(f"| {label} | {rate(runs):,.0f} | {cpu_us(runs):.2f} | {rate(runs) / b:.2f} |")

    solo = rate(results[("agentx", False)])
    print("\n## Contention: two threads calling get_cached_price() in a tight loop\n")
    contended = medians("contention", N)
    naive = medians("naive-contention", 50_000, repeat=1)
    reads = statistics.median(r["reads"] / r["wall"] for r in contended)
    stall = statistics.median(r["stall"] for r in contended) * 1e3
    print("| | ingest msgs/s | of solo | getter calls/s | longest wait of a reader (100 calls) |")
    print("|---|---:|---:|---:|---:|")
    ours = rate(contended)
    print(
        f"| agentx_sync, default install, 2 readers | {ours:,.0f} | {ours / solo:.0%} | {reads:,.0f} |"
        f" {stall:.0f} ms |"
    )
    naive_reads = naive[0]["reads"] / naive[0]["wall"]
    theirs = rate(naive)
    print(
        f"| B + a lock per update, 1 reader | {theirs:,.0f} | {theirs / b:.1%} of B | {naive_reads:,.0f} | |"
    )

    print("\n## CPU at a steady 10,000 msgs/s (whole client process, 5 s)\n")
    print("The feed writes every 1 ms what is due (10 messages), as a live server's event loop")
    print("batches, or each message in its own write (10,000 wakeups a second).\n")
    print("| | 1 ms writes: % of one core | each message: % of one core |")
    print("|---|---:|---:|")
    for label, ticked, each, fast in (
        ("agentx_sync, default install", "cpu-agentx", "cpu-agentx-each", False),
        ("agentx_sync [fast]", "cpu-agentx", "cpu-agentx-each", True),
        (f"agentx_sync, default install, coalesce={COALESCE}", "cpu-agentx-co", "cpu-agentx-co-each", False),
        (f"agentx_sync [fast], coalesce={COALESCE}", "cpu-agentx-co", "cpu-agentx-co-each", True),
        ("B", "cpu-B", "cpu-B-each", False),
    ):
        shares = [
            statistics.median(r["cpu"] / r["wall"] for r in medians(name, 50_000, fast=fast))
            for name in (ticked, each)
        ]
        print(f"| {label} | {shares[0]:.1%} | {shares[1]:.1%} |")

    print("\n## Latency at 20,000 msgs/s, server send to visible (system-wide monotonic clock)\n")
    print("Each message is stamped and written on its own, so the figure is the client's alone.\n")

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6

    print("| where | p50 µs | p99 µs |")
    print("|---|---:|---:|")
    for name, option in (("latency-each", ""), ("latency-each-co", f", coalesce={COALESCE}")):
        runs = medians(name, 60_000)
        for key, label in (("cache", "in the cache"), ("callback", "in a callback")):
            p50 = statistics.median(pct(r[key], 0.50) for r in runs)
            p99 = statistics.median(pct(r[key], 0.99) for r in runs)
            print(f"| {label}{option} | {p50:,.0f} | {p99:,.0f} |")

    print("\n## Memory: 1,000,000 messages, 600 symbols, event queue never drained\n")
    mem = medians("memory", 1_000_000)
    print("| RSS after 20k msgs | peak | growth | events dropped (queue holds 10,000) |")
    print("|---:|---:|---:|---:|")
    growth = median([{"v": r["peak"] - r["start"]} for r in mem], "v")
    print(
        f"| {median(mem, 'start'):.1f} MiB | {median(mem, 'peak'):.1f} MiB | {growth:.1f} MiB |"
        f" {median(mem, 'dropped'):,.0f} |"
    )

    print("\n## Nexgent: a price_update_batch of 50 tokens on 1,000 positions (P/L recomputed)\n")
    apply_ms, total_ms = nexgent_batch()
    print("| apply to the cache | decode + apply |")
    print("|---:|---:|")
    print(f"| {apply_ms:.3f} ms | {total_ms:.3f} ms |")
    print(f"\n(all of the above in {time.monotonic() - started:.0f} s)")
    return 0


def nexgent_batch() -> tuple[float, float]:
    """Median milliseconds over 60 batches, each with new prices."""
    from agentx_sync.dialects.nexgent import decode, parse_position
    from agentx_sync.state import PositionBook

    tokens = [f"So1Token{i:02d}Base58Case" for i in range(50)]
    book = PositionBook()
    book.initial(
        [
            parse_position(
                {
                    "id": f"p{i}",
                    "tokenAddress": tokens[i % 50],
                    "tokenSymbol": f"T{i % 50}",
                    "purchasePrice": 0.001 * (1 + i % 7),
                    "purchaseAmount": 1000.0 + i,
                    "remainingAmount": None if i % 3 else 500.0,
                    "realizedProfitSol": 0.01 * (i % 5),
                }
            )
            for i in range(1000)
        ]
    )
    texts = [
        json.dumps(
            {
                "type": "price_update_batch",
                "data": {
                    "updates": [
                        {
                            "tokenAddress": t.lower(),
                            "price": 0.0012 + k * 1e-6 + r * 1e-7,
                            "priceUsd": 0.18 + r * 1e-4,
                        }
                        for k, t in enumerate(tokens)
                    ]
                },
            }
        )
        for r in range(120)
    ]
    applied, total = [], []
    for r in range(60):
        batch = decode(texts[r], 0.0)
        t = time.perf_counter()
        book.price_batch(batch)  # type: ignore[arg-type]
        applied.append(time.perf_counter() - t)
    for r in range(60, 120):
        t = time.perf_counter()
        book.price_batch(decode(texts[r], 0.0))  # type: ignore[arg-type]
        total.append(time.perf_counter() - t)
    return statistics.median(applied) * 1e3, statistics.median(total) * 1e3


if __name__ == "__main__":
    sys.exit(main())
