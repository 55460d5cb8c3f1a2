"""Every record has a JSON-ready form: ``json.dumps(record.to_dict(json=True))``.

The records come from real traffic (the simulators over loopback), so the
test covers what users actually hold, nested records and errors included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from agentx_sync import AgentExchangeWS, NexgentWS
from agentx_sync.models import (
    Candle,
    Connected,
    Disconnected,
    ErrorEvent,
    Health,
    Order,
    Portfolio,
    Position,
    PositionEvent,
    PriceBatch,
    Ticker,
    jsonable,
)
from agentx_sync.sim import NexgentSimulator, Simulator

from .conftest import eventually, next_event


def round_trip(record: Any) -> dict[str, Any]:
    """The JSON form survives json.dumps/loads unchanged, and matches the record field by field."""
    form: dict[str, Any] = record.to_dict(json=True)
    assert json.loads(json.dumps(form, allow_nan=False)) == form
    assert list(form) == list(record.keys())
    for key, value in record.to_dict().items():
        shown = form[key]
        if isinstance(value, Decimal):
            assert Decimal(shown) == value and shown == str(value)  # exact, as the wire has it
        elif isinstance(value, datetime):
            assert datetime.fromisoformat(shown) == value
    return form


def test_agentexchange_records_and_events(sim: Simulator, client: Callable[..., AgentExchangeWS]) -> None:
    ws = client()
    ws.subscribe_candles("BTCUSDT", "1m")
    ws.start().wait_connected(5)
    connected = next_event(ws, Connected)
    assert round_trip(connected)["reconnect"] is False
    ticker = ws.wait_for_price("BTCUSDT", 5) and ws.get_ticker("BTCUSDT")
    assert isinstance(ticker, Ticker)
    form = round_trip(ticker)
    assert set(form) == {"symbol", "price", "quantity", "timestamp", "is_buyer_maker"}
    assert form["timestamp"].endswith("Z")
    candle = eventually(lambda: ws.get_candle("BTCUSDT", "1m"), 10, "a candle")
    assert isinstance(candle, Candle)
    round_trip(candle)
    filled = ws.wait_for_order(sim.place_order("BTCUSDT", "buy", "0.01"), timeout=5)
    assert isinstance(filled, Order)
    assert round_trip(filled)["status"] == "filled"
    rejected = ws.wait_for_order(sim.place_order("BTCUSDT", "buy", "100"), status="rejected", timeout=5)
    assert round_trip(rejected)["rejected_reason"] == "insufficient_balance"
    portfolio = eventually(ws.get_portfolio)
    assert isinstance(portfolio, Portfolio)
    assert Decimal(round_trip(portfolio)["total_equity"]) == portfolio.total_equity
    health = ws.health()
    assert isinstance(health, Health)
    shown = round_trip(health)
    assert shown["state"] == "connected" and isinstance(shown["subscriptions"], list)
    sim.drop_all(code=1011, reason="restart")
    lost = next_event(ws, Disconnected)
    form = round_trip(lost)
    assert form["error"]["type"] == type(lost.error).__name__ and form["error"]["message"]
    json.dumps([e.to_dict(json=True) for e in (lost, connected)])


def test_nexgent_records_and_events(
    nsim: NexgentSimulator, agent: str, nclient: Callable[..., NexgentWS]
) -> None:
    ws = nclient()
    batches: list[PriceBatch] = []
    ws.on_price_update()(batches.append)
    ws.start().wait_for_positions(timeout=5)
    raw = nsim.open_position(agent, symbol="WIF", purchase_price=0.002, amount=50)
    created = next_event(ws, PositionEvent)
    form = round_trip(created)
    assert form["type"] == "position_created" and form["position"]["token_symbol"] == "WIF"
    nsim.send_prices(agent, {raw["tokenAddress"]: 0.003})
    position = eventually(lambda: ws.get_position(raw["id"]) if batches else None, 5, "a priced position")
    assert isinstance(position, Position)
    shown = round_trip(position)
    assert Decimal(shown["position_value_usd"]) == position.position_value_usd  # derived fields too
    assert shown["dca_transaction_ids"] == []
    batch = round_trip(batches[-1])
    assert batch["updates"][0]["token_address"] == raw["tokenAddress"].lower()


def test_errors_and_odd_values_never_break_json_dumps() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    event = ErrorEvent(Unprintable())
    assert json.loads(json.dumps(event.to_dict(json=True)))["error"]["type"] == "Unprintable"
    assert jsonable(float("nan")) is None and jsonable(Decimal("NaN")) is None
    assert jsonable(object()) == "<object>"
