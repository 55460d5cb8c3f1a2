"""Track the agent's orders as they change, and wait for fills without polling.

    AGENTEXCHANGE_API_KEY=ak_test AGENTEXCHANGE_WS_URL=ws://127.0.0.1:8000 python examples/order_tracking.py

Every update is printed by a callback; the main thread waits for the next
ORDERS orders (placed by your agent through the REST API, or by
``agentx-sync sim --auto-trade 2``) to end, and reports each one's outcome.
"""

import os

from agentx_sync import AgentExchangeWS, OrderFailedError

ws = AgentExchangeWS(
    api_key=os.environ["AGENTEXCHANGE_API_KEY"],
    base_url=os.environ.get("AGENTEXCHANGE_WS_URL", "ws://localhost:8000"),
)


@ws.on_order_update()
def on_order(data):
    print(f"[WS] Order {data['order_id']} → {data['status']}")


@ws.on_portfolio()
def on_portfolio(data):
    print(f"[WS] Equity: ${data['total_equity']}  cash ${data['available_cash']}")


if __name__ == "__main__":
    wanted = int(os.environ.get("ORDERS", "3"))
    with ws:
        seen: set[str] = set()
        while len(seen) < wanted:
            # The next order we have not handled yet, as soon as it shows up.
            event = ws.get_event(timeout=30)
            if event is None:
                print("no order within 30 s")
                break
            order_id = getattr(event, "order_id", None)
            if order_id is None or order_id in seen:
                continue
            seen.add(order_id)
            try:
                order = ws.wait_for_order(order_id, status="filled", timeout=30)
                what = f"{order.side} {order.executed_quantity} {order.symbol}"
                print(f"filled: {what} @ {order.executed_price}")
            except OrderFailedError as exc:
                print(f"not filled: {exc}")
        print(f"tracked {len(seen)} orders; {len(ws.get_orders())} updates in the cache")
