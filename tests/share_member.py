"""One member process of a shared feed, for tests/test_share.py (see tests/sharing.py).

It runs one client with ``share=`` and prints its state as a JSON line every
50 ms until SIGTERM, then closes the client.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

from agentx_sync import AgentExchangeWS, BackoffPolicy, NexgentWS, Order

FAST = BackoffPolicy(initial=0.05, maximum=0.2, jitter=0.2, stable_after=5.0)


def main() -> int:
    config: dict[str, Any] = json.loads(sys.argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    orders: list[list[str]] = []
    errors: list[str] = []
    ws: AgentExchangeWS | NexgentWS
    if config["platform"] == "nexgent":
        ws = NexgentWS(config["url"], config["token"], config["agent"], share=config["redis"], backoff=FAST)
    else:
        ws = AgentExchangeWS(config["key"], config["url"], share=config["redis"], backoff=FAST)
        if config.get("tickers"):
            ws.subscribe_ticker(*config["tickers"])

        @ws.on_order_update()
        def order(o: Order) -> None:
            orders.append([o.order_id, str(o.status)])

    @ws.on_error()
    def error(e: Exception) -> None:
        errors.append(f"{type(e).__name__}: {e}")

    ws.start()
    while not stop.wait(0.05):
        h = ws.health()
        status: dict[str, Any] = {
            "role": h.role,
            "leader": h.leader,
            "state": h.state.value,
            "resyncs": h.resyncs,
            "missed": h.missed_events,
            "share_error": h.share_error,
            "lease_changes": h.lease_changes,
            "errors": errors[-5:],
        }
        if isinstance(ws, AgentExchangeWS):
            status["prices"] = {k: str(v) for k, v in ws.prices().items()}
            status["orders"] = orders
            status["cached_orders"] = [o.order_id for o in ws.get_orders()]
        else:
            status["positions"] = {
                p.id: [str(p.current_price), str(p.profit_loss_sol)] for p in ws.get_positions()
            }
        print(json.dumps(status), flush=True)
    ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
