"""The docs' "Async Event Loop" example without asyncio: a strategy loop in the main thread.

    AGENTEXCHANGE_API_KEY=ak_test AGENTEXCHANGE_WS_URL=ws://127.0.0.1:8000 python examples/strategy_loop.py

The stream fills the cache in the background; the loop reads it whenever it
likes. ITERATIONS, INTERVAL and THRESHOLD are read from the environment.
"""

import os
import threading

from agentx_sync import AgentExchangeWS

ws = AgentExchangeWS(
    api_key=os.environ["AGENTEXCHANGE_API_KEY"],
    base_url=os.environ.get("AGENTEXCHANGE_WS_URL", "ws://localhost:8000"),
)


@ws.on_order_update()
def on_order(data):
    if data["status"] == "filled":
        what = f"{data['symbol']} {data['side']} {data['executed_quantity']}"
        print(f"[FILL] {what} @ {data['executed_price']}")


def strategy_loop(iterations: int, interval: float, threshold: float) -> None:
    """Run a simple strategy while the WS feed updates the cache."""
    tick = threading.Event()
    for _ in range(iterations):
        btc = ws.get_cached_price("BTCUSDT")
        if btc and btc > threshold:
            print(f"BTC {btc} above ${threshold:,.0f}: consider taking profit")
        elif btc:
            print(f"BTC {btc} (age {ws.price_age('BTCUSDT'):.2f} s): holding")
        tick.wait(interval)


if __name__ == "__main__":
    ws.subscribe_ticker("all")  # like the docs' on_ticker("all"): every pair
    with ws:  # starts the stream in the background; closes it at the end
        ws.wait_for_price("BTCUSDT", timeout=10)
        strategy_loop(
            int(os.environ.get("ITERATIONS", "1000000")),
            float(os.environ.get("INTERVAL", "10")),
            float(os.environ.get("THRESHOLD", "65000")),
        )
        print(f"{len(ws.prices())} pairs in the cache")
