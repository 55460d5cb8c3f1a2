"""One connection for many processes: run this in two or three terminals at once.

    AGENTEXCHANGE_API_KEY=ak_test AGENTEXCHANGE_WS_URL=ws://127.0.0.1:8000 \
    AGENTX_SYNC_SHARE=redis://127.0.0.1:6379/0 python examples/shared_feed.py

The first process to start holds the WebSocket (the leader); the others follow
through Redis, with the same getters and callbacks. Stop the leader (Ctrl-C,
or kill -9) and another one takes over. Each process asks for its own symbol
(SYMBOL, default BTCUSDT); the leader subscribes to every one that is wanted.
"""

import os
import time

from agentx_sync import AgentExchangeWS

symbol = os.environ.get("SYMBOL", "BTCUSDT")
ws = AgentExchangeWS(
    api_key=os.environ["AGENTEXCHANGE_API_KEY"],
    base_url=os.environ.get("AGENTEXCHANGE_WS_URL", "ws://localhost:8000"),
    share=os.environ.get("AGENTX_SYNC_SHARE", "redis://127.0.0.1:6379/0"),
)
ws.subscribe_ticker(symbol)


@ws.on_order_update()
def on_order(data):
    print(f"[{ws.health().role}] order {data['order_id']} -> {data['status']}", flush=True)


if __name__ == "__main__":
    duration = float(os.environ.get("DURATION", "0"))  # seconds; 0: until Ctrl-C
    deadline = time.monotonic() + duration if duration else None
    with ws:
        ws.wait_connected(timeout=30)
        try:
            while deadline is None or time.monotonic() < deadline:
                h = ws.health()
                price = ws.wait_for_price(symbol, timeout=10)
                lag = (h.lag or 0) * 1000
                print(f"[{h.role}] {symbol} {price}  (leader {h.leader}, lag {lag:.1f} ms)", flush=True)
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
