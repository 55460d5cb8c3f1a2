"""Soak: a million messages through a client, a disconnect every few seconds.

    python benchmarks/soak.py [--messages 1000000] [--rate 100000] [--per-connection 250000]

A feed process (loopback, pre-encoded ticker frames for 600 symbols) paces
``--rate`` messages a second and closes each connection after
``--per-connection`` messages, reporting what it sent. The client subscribes
to everything, with two callbacks and a thread draining the event queue. At
the end it prints, per connection, messages sent vs received (nothing may be
lost while connected), reconnects, peak RSS growth, and threads and file
descriptors against the baseline. Bounded: it stops after ``--messages``.
Exits non-zero if a message was lost or a thread or descriptor leaked.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from feed import Feed

from agentx_sync import AgentExchangeWS, BackoffPolicy, Disconnected, Ticker


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=100_000)
    parser.add_argument("--per-connection", type=int, default=250_000)
    args = parser.parse_args()
    connections = -(-args.messages // args.per_connection)

    feed_options = {"rate": args.rate, "per_connection": args.per_connection, "connections": connections}
    with Feed(args.messages, **feed_options) as feed:
        # The baseline is taken with the feed running: its pipes are not the client's.
        threads_before = threading.active_count()
        fds_before = len(os.listdir("/proc/self/fd"))
        ws = AgentExchangeWS(
            api_key="soak",
            base_url=feed.url,
            backoff=BackoffPolicy(initial=0.05, maximum=0.5),
            event_queue_size=10_000,
        )
        ws.subscribe_ticker("all")
        counted = {"callback": 0, "checked": 0, "drained": 0}
        received: list[int] = []
        ended = threading.Event()

        @ws.on_ticker("all")
        def count(t: Ticker) -> None:
            counted["callback"] += 1

        @ws.on_ticker("all")
        def check(t: Ticker) -> None:
            if type(t.price) is Decimal:
                counted["checked"] += 1

        @ws.on_disconnect()
        def lost(event: Disconnected) -> None:
            received.append(event.messages)
            if sum(received) >= args.messages:
                ended.set()

        def drain() -> None:
            while ws.get_event(timeout=1.0) is not None or not ended.is_set():
                counted["drained"] += 1

        drainer = threading.Thread(target=drain, name="soak-drain", daemon=True)
        start = time.monotonic()
        ws.start()
        drainer.start()
        ws.wait_for_price("S000USDT", timeout=30)
        rss_start = peak = rss_kib()
        while not ended.wait(0.25):
            peak = max(peak, rss_kib())
            if time.monotonic() - start > 600:
                print("soak: gave up after 600 s")
                break
        elapsed = time.monotonic() - start
        health = ws.health()
        ws.close()
        drainer.join(5)
        threads_after = threading.active_count()
        fds_after = len(os.listdir("/proc/self/fd"))
        sent: list[int] = []
        while len(sent) < len(received):
            kind, value = feed.stats.get(timeout=10)
            if kind == "connection":
                sent.append(value)

    lost_total = sum(s - r for s, r in zip(sent, received, strict=True))
    print(f"soak: {sum(received):,} messages in {elapsed:.1f} s over {len(received)} connections")
    print(
        "  per connection, sent vs received: "
        + ", ".join(f"{s:,}/{r:,}" for s, r in zip(sent, received, strict=True))
    )
    print(f"  lost while connected: {lost_total}")
    print(f"  reconnects: {health.reconnects}   bad messages: {health.bad_messages}")
    print(
        f"  callbacks: {counted['callback']:,} counted, {counted['checked']:,} checked; "
        f"dropped for slow callbacks: {health.dropped_callbacks:,}"
    )
    print(f"  event queue: {counted['drained']:,} drained, {health.dropped_events:,} dropped")
    growth = (peak - rss_start) / 1024
    print(f"  RSS: {rss_start / 1024:.1f} MiB after the first price, peak growth {growth:.1f} MiB")
    print(f"  threads: {threads_before} before, {threads_after} after close()")
    print(f"  file descriptors: {fds_before} before, {fds_after} after close()")
    ok = lost_total == 0 and threads_after == threads_before and fds_after == fds_before
    print("soak: OK" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
