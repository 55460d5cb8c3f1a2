"""Where the IO thread's time goes, per message, stage by stage (no sockets, no threads).

    python benchmarks/breakdown.py            # orjson when installed
    AGENTX_SYNC_JSON=stdlib python benchmarks/breakdown.py

One read's worth of ticker frames (2,400 messages for 600 symbols, as the
feed sends them) goes through each stage of the hot path on its own and then
through all of them together, as ``Connection._session`` runs them. Best of
seven timings; nanoseconds per message. This is what each optimisation was
measured with before it was kept; benchmarks/run.py gives the end-to-end
figures.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from feed import symbols, ticker_frame

from agentx_sync import AgentExchangeWS, frames
from agentx_sync.dialects import JSON_PARSER, parse_json
from agentx_sync.dialects.agentexchange import AgentExchangeDialect, decode

COUNT = 2_400


def best(fn: Callable[[], Any], rounds: int = 7, inner: int = 30) -> float:
    """Best seconds per call."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - started) / inner)
    return min(times)


def main() -> None:
    names = symbols()
    data = b"".join(ticker_frame(names[i % len(names)], f"{60000 + i % 997}.25") for i in range(COUNT))
    reader = frames.FrameReader()
    messages = reader.feed(data)
    texts = [p for _, p in messages]
    events = [decode(t, 1.0) for t in texts]  # type: ignore[arg-type]
    records = AgentExchangeDialect.records
    client = AgentExchangeWS(api_key="bench", base_url="ws://127.0.0.1:9")  # never started
    client._started = True  # but taken as running: link_events ignores a closed client
    client.subscribe_ticker("all")
    state = client._state

    def whole() -> None:
        with state.batch:
            batch = [decode(p, 1.0) for op, p in reader.feed(data) if op == frames.TEXT]  # type: ignore[arg-type]
            if records.issuperset(map(type, batch)):
                client.link_events(batch)

    stages: list[tuple[str, Callable[[], Any]]] = [
        ("cut frames (FrameReader.feed)", lambda: reader.feed(data)),
        (f"parse JSON alone ({JSON_PARSER})", lambda: [parse_json(t) for t in texts]),
        ("decode: JSON, checks, Decimal, datetime, Ticker", lambda: [decode(t, 1.0) for t in texts]),  # type: ignore[arg-type]
        ("apply: cache, event queue (link_events)", lambda: client.link_events(events)),
        ("the whole read, under the batch lock", whole),
    ]
    print(f"{len(data) / COUNT:.0f}-byte frames, {COUNT:,} a read, JSON: {JSON_PARSER}\n")
    print("| stage | ns per message |")
    print("|---|---:|")
    for label, fn in stages:
        print(f"| {label} | {best(fn) / COUNT * 1e9:,.0f} |")


if __name__ == "__main__":
    main()
