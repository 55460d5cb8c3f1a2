# price_stream.py
import os
import threading
from agentx_sync import AgentExchangeWS

# Shared state — written by WS thread, read by agent tools
latest_prices: dict[str, str] = {}
latest_orders: list[dict] = []
_lock = threading.Lock()

ws = AgentExchangeWS(
    api_key=os.environ["AGENTEXCHANGE_API_KEY"],
    base_url=os.environ.get("AGENTEXCHANGE_WS_URL", "ws://localhost:8000"),
)


@ws.on_ticker("BTCUSDT")
def on_btc(data):
    with _lock:
        latest_prices["BTCUSDT"] = data["price"]


@ws.on_ticker("ETHUSDT")
def on_eth(data):
    with _lock:
        latest_prices["ETHUSDT"] = data["price"]


@ws.on_ticker("SOLUSDT")
def on_sol(data):
    with _lock:
        latest_prices["SOLUSDT"] = data["price"]


@ws.on_order_update()
def on_order(data):
    with _lock:
        latest_orders.append(data)
        # Keep only the last 100 updates
        if len(latest_orders) > 100:
            latest_orders.pop(0)
    print(f"[WS] Order {data['order_id']} → {data['status']}")


def start_stream() -> threading.Thread:
    """Start the WebSocket feed in a daemon thread."""
    t = threading.Thread(target=ws.run_forever, daemon=True)
    t.start()
    return t


def get_cached_price(symbol: str) -> str | None:
    """Thread-safe read of the latest cached price."""
    with _lock:
        return latest_prices.get(symbol.upper())
