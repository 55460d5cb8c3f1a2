"""The Nexgent dialect and the position book, as plain function calls."""

from __future__ import annotations

import json
import pickle
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentx_sync.dialects import ErrorMessage, Ping, Pong, Verdict
from agentx_sync.dialects.nexgent import (
    _FIELDS,
    AgentConnected,
    InitialData,
    NexgentDialect,
    RefreshPolicy,
    build_url,
    decode,
    parse_position,
)
from agentx_sync.errors import AgentXError, ProtocolError
from agentx_sync.models import (
    POSITION_FIELDS,
    PRICE_FIELDS,
    PositionChange,
    PositionEventType,
    PriceBatch,
    PriceUpdate,
    camel,
)
from agentx_sync.state import PositionBook, terms, valuation

RAW = {
    "id": "p1",
    "tokenAddress": "So1TokenABC",
    "tokenSymbol": "BONK",
    "purchasePrice": 0.0001,
    "purchaseAmount": 1000,
    "remainingAmount": None,
    "realizedProfitSol": 0,
    "dcaTransactionIds": [],
    "createdAt": "2026-11-21T12:00:00.000Z",
}
PRICE_KEYS = {"currentPrice", "currentPriceUsd", "profitLossSol", "profitLossPercent", "positionValueSol"}


def test_url_maps_scheme_and_encodes_both_parameters() -> None:
    assert build_url("https://x.com", "a.b", "ag") == "wss://x.com/ws?token=a.b&agentId=ag"
    assert build_url("http://h:4000/", "t+/=", "a b") == "ws://h:4000/ws?token=t%2B%2F%3D&agentId=a%20b"
    d = NexgentDialect("http://h", "eyJ.SECRET", "agent")
    assert "SECRET" in d.url and "SECRET" not in d.safe_url


def test_verdicts() -> None:
    d = NexgentDialect("http://h", "t", "a")
    assert d.handshake_verdict(401) is Verdict.AUTH_FAILED
    assert d.handshake_verdict(500) is Verdict.RECONNECT
    assert d.close_verdict(1008, "Agent not found") is Verdict.FATAL
    assert d.close_verdict(1000, "New connection established") is Verdict.REPLACED
    assert d.close_verdict(1000, "Connection timeout") is Verdict.RECONNECT
    assert d.close_verdict(1000, "Server shutdown") is Verdict.RECONNECT
    assert d.close_verdict(1011, "Internal server error") is Verdict.RECONNECT
    pong = json.loads(d.pong(Ping(), "2026-11-21T12:00:00Z"))
    assert pong == {"type": "pong", "timestamp": "2026-11-21T12:00:00Z"}


@pytest.mark.parametrize(
    ("message", "event"),
    [
        ({"type": "connected", "data": {"agentId": "a1", "timestamp": "x"}}, AgentConnected("a1")),
        ({"type": "ping", "timestamp": "t"}, Ping("t")),
        ({"type": "pong", "timestamp": "t"}, Pong()),
        (
            {"type": "error", "data": {"message": "Invalid message format"}},
            ErrorMessage("Invalid message format"),
        ),
        ({"type": "brand_new"}, None),
    ],
)
def test_simple_messages(message: dict[str, Any], event: Any) -> None:
    assert decode(json.dumps(message), 0) == event


def test_initial_data_and_position_updates() -> None:
    initial = decode(json.dumps({"type": "initial_data", "data": {"positions": [RAW], "timestamp": "t"}}), 0)
    assert isinstance(initial, InitialData) and initial.positions[0]["purchase_price"] == Decimal("0.0001")
    created = decode(
        json.dumps({"type": "position_update", "data": {"eventType": "position_created", "position": RAW}}), 0
    )
    assert isinstance(created, PositionChange) and created.type is PositionEventType.CREATED
    partial = decode(
        json.dumps(
            {
                "type": "position_update",
                "data": {"eventType": "position_updated", "position": {"id": "p1", "remainingAmount": 400}},
            }
        ),
        0,
    )
    assert isinstance(partial, PositionChange) and partial.fields == {
        "id": "p1",
        "remaining_amount": Decimal(400),
    }
    closed = decode(
        json.dumps({"type": "position_update", "data": {"eventType": "position_closed", "positionId": "p1"}}),
        0,
    )
    assert closed == PositionChange(PositionEventType.CLOSED, "p1", None)


def test_price_batch_lower_cases_and_keeps_decimals_exact() -> None:
    batch = decode(
        json.dumps(
            {
                "type": "price_update_batch",
                "data": {
                    "updates": [{"tokenAddress": "So1TokenABC", "price": 0.0000123, "priceUsd": 0.0021}],
                    "timestamp": "2026-11-21T12:00:00Z",
                },
            }
        ),
        0,
    )
    assert isinstance(batch, PriceBatch)
    assert batch.updates[0].token_address == "so1tokenabc"
    assert batch.updates[0].price == Decimal("0.0000123") and batch.updates[0].price_usd == Decimal("0.0021")


@pytest.mark.parametrize(
    "message",
    [
        {"type": "initial_data", "data": {"positions": "nope"}},
        {"type": "initial_data", "data": {"positions": [{"id": "p"}]}},
        {"type": "initial_data", "data": {"positions": [{**RAW, "purchasePrice": "abc"}]}},
        {"type": "initial_data", "data": {"positions": [{**RAW, "purchasePrice": float("inf")}]}},
        {"type": "position_update", "data": {"eventType": "position_exploded", "position": RAW}},
        {
            "type": "position_update",
            "data": {"eventType": "position_updated", "position": {"remainingAmount": 1}},
        },
        {"type": "price_update_batch", "data": {"updates": [{"tokenAddress": 5, "price": 1}]}},
        {"type": "price_update_batch", "data": {"updates": [{"tokenAddress": "a", "price": None}]}},
        {"type": "price_update_batch", "data": None},
    ],
)
def test_malformed_messages_raise_protocol_error(message: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        decode(json.dumps(message), 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=25,
)
position_like = st.dictionaries(
    st.sampled_from(
        [
            "id",
            "tokenAddress",
            "purchasePrice",
            "purchaseAmount",
            "remainingAmount",
            "createdAt",
            "dcaCount",
            "dcaTransactionIds",
        ]
    ),
    json_values,
)
envelopes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "connected",
                "initial_data",
                "position_update",
                "price_update_batch",
                "ping",
                "pong",
                "error",
                "subscribed",
            ]
        )
    },
    optional={
        "data": st.fixed_dictionaries(
            {},
            optional={
                "positions": st.lists(position_like, max_size=3) | json_values,
                "eventType": st.sampled_from(["position_created", "position_updated", "position_closed"])
                | json_values,
                "position": position_like | json_values,
                "positionId": json_values,
                "updates": st.lists(
                    st.dictionaries(st.sampled_from(["tokenAddress", "price", "priceUsd"]), json_values),
                    max_size=3,
                )
                | json_values,
                "message": json_values,
            },
        )
        | json_values,
        "timestamp": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(envelopes.map(json.dumps), json_values.map(json.dumps), st.text()))
def test_any_input_gives_an_event_or_a_typed_error(text: str) -> None:
    try:
        decode(text, 0)
    except AgentXError:
        pass


def revalue(fields: dict[str, Any], price: str, price_usd: str | None = None) -> dict[str, Any]:
    """The position's fields after one price batch."""
    book = PositionBook()
    book.initial([fields])
    update = PriceUpdate(
        fields["token_address"].lower(), Decimal(price), Decimal(price_usd) if price_usd else None
    )
    book.price_batch(PriceBatch((update,), None))
    return book.records[fields["id"]].to_dict()


def test_valuation_follows_the_server_formulas() -> None:
    fields = parse_position(RAW)
    out = revalue(fields, "0.0002", "0.03")
    assert out["position_value_sol"] == Decimal("0.2000")
    assert out["profit_loss_sol"] == Decimal("0.1000")  # the seed's formula, no take-profit
    assert out["profit_loss_percent"] == Decimal(100)
    assert out["price_change_percent"] == Decimal(100)
    assert out["current_price_usd"] == Decimal("0.03") and out["position_value_usd"] == Decimal("30")
    assert out["profit_loss_usd"] == Decimal("15")
    after_tp = {**fields, "remaining_amount": Decimal(400), "realized_profit_sol": Decimal("0.06")}
    out = revalue(after_tp, "0.0002")
    # holding 400: value 0.08; P/L = 0.06 + 0.08 - 0.0001 * 400 = 0.10; cost basis 0.1
    assert out["position_value_sol"] == Decimal("0.0800")
    assert out["profit_loss_sol"] == Decimal("0.1000")
    assert out["profit_loss_percent"] == Decimal(100)
    assert out["current_price_usd"] is None and out["profit_loss_usd"] is None
    zero = revalue({**fields, "purchase_price": Decimal(0)}, "1")
    assert zero["profit_loss_percent"] == 0 and zero["price_change_percent"] == 0


def test_percentages_are_exact_where_the_numbers_allow() -> None:
    # 100 / 0.3 does not terminate: a precomputed reciprocal would show 99.999...
    fields = parse_position({**RAW, "purchasePrice": "0.0003", "purchaseAmount": "3"})
    out = revalue(fields, "0.0006")
    assert out["price_change_percent"] == 100 and f"{out['price_change_percent']:.2f}" == "100.00"
    assert out["profit_loss_percent"] == 100


def test_book_replays_updates_that_came_before_initial_data() -> None:
    book = PositionBook()
    early = PositionChange(PositionEventType.CREATED, "p2", parse_position({**RAW, "id": "p2"}))
    assert book.change(early) is None and not book.records
    replayed = book.initial([parse_position(RAW)])
    assert [e.position_id for e in replayed] == ["p2"]
    assert set(book.records) == {"p1", "p2"}


def test_book_batch_matches_addresses_case_insensitively_and_merges_updates() -> None:
    book = PositionBook()
    book.initial([parse_position(RAW)])
    batch = decode(
        json.dumps(
            {
                "type": "price_update_batch",
                "data": {"updates": [{"tokenAddress": "so1tokenabc", "price": 0.0002, "priceUsd": 0.03}]},
            }
        ),
        0,
    )
    assert isinstance(batch, PriceBatch)
    book.price_batch(batch)
    assert book.records["p1"].current_price == Decimal("0.0002")
    assert book.records["p1"].profit_loss_percent == Decimal(100)
    event = book.change(
        PositionChange(PositionEventType.UPDATED, "p1", {"id": "p1", "remaining_amount": Decimal(500)})
    )
    assert event is not None and event.position is not None
    assert event.position.token_symbol == "BONK"  # kept from before
    assert event.position.position_value_sol == Decimal("0.1000")  # recomputed for 500 held
    closed = book.change(PositionChange(PositionEventType.CLOSED, "p1", None))
    assert closed is not None and closed.position is not None and not book.records


def test_book_marks_stale_on_disconnect_and_clears_on_close() -> None:
    book = PositionBook()
    book.initial([parse_position(RAW)])
    book.disconnected()
    assert book.stale and book.records and not book.loaded
    book.initial([])
    assert not book.stale and not book.records
    book.clear()
    assert not book.prices


decimals = st.decimals(min_value=0, max_value=10**4, allow_nan=False, allow_infinity=False, places=4)


def oracle(
    pp: Decimal,
    pa: Decimal,
    remaining: Decimal | None,
    realized: Decimal | None,
    price: Decimal,
    usd: Decimal | None,
) -> dict[str, Any]:
    """PROTOCOL.md's formulas, written out plainly."""
    holding = remaining if remaining is not None else pa
    value = price * holding
    pnl = (realized or 0) + value - pp * holding
    return {
        "currentPrice": price,
        "currentPriceUsd": usd,
        "positionValueSol": value,
        "profitLossSol": pnl,
        "profitLossPercent": pnl / (pp * pa) * 100 if pp * pa else 0,
        "priceChangePercent": (price - pp) / pp * 100 if pp else 0,
        "positionValueUsd": None if usd is None else usd * holding,
        "profitLossUsd": None if usd is None or not price else pnl * usd / price,
    }


@settings(max_examples=300, deadline=None)
@given(
    purchase_price=decimals,
    purchase_amount=decimals,
    remaining=st.none() | decimals,
    realized=st.none() | decimals,
    price=decimals,
    price_usd=st.none() | decimals,
)
def test_batch_and_single_revaluation_follow_the_protocol_formulas(
    purchase_price: Decimal,
    purchase_amount: Decimal,
    remaining: Decimal | None,
    realized: Decimal | None,
    price: Decimal,
    price_usd: Decimal | None,
) -> None:
    fields = parse_position(
        {
            "id": "p",
            "tokenAddress": "MixedCaseToken",
            "purchasePrice": str(purchase_price),
            "purchaseAmount": str(purchase_amount),
            "remainingAmount": None if remaining is None else str(remaining),
            "realizedProfitSol": None if realized is None else str(realized),
        }
    )
    expected = oracle(purchase_price, purchase_amount, remaining, realized, price, price_usd)
    book = PositionBook()
    book.initial([fields])
    book.price_batch(PriceBatch((PriceUpdate("mixedcasetoken", price, price_usd),), None))
    by_batch = book.records["p"]
    assert {k: by_batch[k] for k in expected} == expected
    # A later single change values the position with valuation(): the same figures.
    event = book.change(PositionChange(PositionEventType.UPDATED, "p", {"id": "p", "token_symbol": "X"}))
    assert event is not None and event.position is not None
    assert {k: event.position[k] for k in expected} == expected
    assert event.position.position_value_usd == expected["positionValueUsd"]


def test_a_repeated_price_values_positions_that_came_without_prices() -> None:
    # Regression: initial_data without price fields left positions unvalued, and a
    # later batch repeating a known price was skipped as "unchanged".
    book = PositionBook()
    batch = PriceBatch((PriceUpdate("so1tokenabc", Decimal("0.0002"), Decimal("0.03")),), None)
    book.price_batch(batch)  # before initial_data, as the server may send it
    bare = {k: v for k, v in RAW.items() if k not in PRICE_KEYS}
    book.initial([parse_position(bare)])
    assert book.records["p1"].current_price == Decimal("0.0002")
    assert book.records["p1"].profit_loss_sol is not None
    book.price_batch(batch)
    assert book.records["p1"].current_price == Decimal("0.0002")


def test_initial_data_without_prices_is_valued_with_a_later_repeated_batch() -> None:
    book = PositionBook()
    bare = {k: v for k, v in RAW.items() if k not in PRICE_KEYS}
    book.initial([parse_position(bare)])
    assert book.records["p1"].current_price is None
    batch = PriceBatch((PriceUpdate("so1tokenabc", Decimal("0.0002"), None),), None)
    book.price_batch(batch)
    book.change(PositionChange(PositionEventType.CREATED, "p2", parse_position({**bare, "id": "p2"})))
    book.price_batch(batch)  # the same quote again
    assert all(p.current_price == Decimal("0.0002") for p in book.records.values())


def test_a_position_is_an_immutable_record_equal_by_value_and_not_ordered() -> None:
    book = PositionBook()
    book.initial([parse_position(RAW), parse_position({**RAW, "id": "p2"})])
    first, again = book.records["p1"], PositionBook()
    again.initial([parse_position(RAW)])
    assert first == again.records["p1"] and hash(first) == hash(again.records["p1"])
    assert first != book.records["p2"]
    assert pickle.loads(pickle.dumps(first)) == first
    with pytest.raises(TypeError):
        first < book.records["p2"]  # noqa: B015
    with pytest.raises(AttributeError):
        first.id = "p3"  # type: ignore[misc]
    # A tuple of its fields, honestly: len, iteration and unpacking agree.
    assert len(first) == len(POSITION_FIELDS) == 36 and list(first) == list(first.to_dict().values())
    pid, token, *_ = first
    assert (pid, token) == ("p1", "So1TokenABC") and first[0] == first["id"] == first.id
    assert first["tokenSymbol"] == first["token_symbol"] == first.get("tokenSymbol") == "BONK"
    assert "profitLossPercent" in first and "profit_loss_percent" in first and "nope" not in first
    assert first.keys() == POSITION_FIELDS and first.get("nope", 7) == 7
    assert first != tuple(first) and tuple(first) != first  # never equal to a plain tuple
    assert repr(first).startswith("Position(id='p1', token_address='So1TokenABC', agent_id=None")
    with pytest.raises(KeyError):
        first["nope"]


def test_one_field_list_makes_the_position_and_its_wire_table() -> None:
    # Every field is read off the wire under its camelCase name, by its type.
    wire = {camel(name): name for name in POSITION_FIELDS}
    assert wire["profitLossPercent"] == "profit_loss_percent" and wire["id"] == "id"
    assert {camel: name for camel, (name, _) in _FIELDS.items()} == wire
    assert POSITION_FIELDS[-9:] == PRICE_FIELDS and PRICE_FIELDS[0] == "current_price"
    full = {camel(name): None for name in POSITION_FIELDS} | {"id": "p", "tokenAddress": "T"}
    assert set(parse_position(full)) == set(POSITION_FIELDS)
    # valuation() gives the price fields in record order: a price batch appends them.
    t = terms(parse_position(RAW))
    values = dict(zip(PRICE_FIELDS, valuation(t, Decimal("0.0002"), Decimal("0.03")), strict=True))
    assert values["position_value_sol"] == Decimal("0.2000") and values["profit_loss_sol"] == Decimal("0.1")
    assert values["position_value_usd"] == Decimal("30") and values["profit_loss_usd"] == Decimal("15")
    assert values["price_change_percent"] == values["profit_loss_percent"] == Decimal(100)


def test_after_a_load_failure_events_are_applied_and_early_ones_bounded() -> None:
    # Regression: after "Failed to load initial data" every later event was held
    # back for the whole connection (no callback) and piled up in memory.
    from agentx_sync.state import MAX_EARLY

    book = PositionBook()
    created = PositionChange(PositionEventType.CREATED, "p1", parse_position(RAW))
    assert book.change(created) is None  # before initial_data: held back
    for i in range(3):  # merged per position, not piled up
        book.change(PositionChange(PositionEventType.UPDATED, "p1", {"id": "p1", "dca_count": i}))
    assert len(book._early) == 1
    replayed = book.failed(AgentXError("Failed to load initial data: x"))
    assert [e.type for e in replayed] == [PositionEventType.CREATED]
    assert book.records["p1"].dca_count == 2 and book.error is not None
    later = book.change(PositionChange(PositionEventType.CREATED, "p2", parse_position({**RAW, "id": "p2"})))
    assert later is not None and set(book.records) == {"p1", "p2"}
    closed = book.change(PositionChange(PositionEventType.CLOSED, "p1", None))
    assert closed is not None and set(book.records) == {"p2"}
    fresh = PositionBook()
    for i in range(MAX_EARLY + 50):
        fresh.change(
            PositionChange(PositionEventType.CREATED, f"x{i}", parse_position({**RAW, "id": f"x{i}"}))
        )
    assert len(fresh._early) == MAX_EARLY and fresh.early_dropped == 50


def test_position_values_do_not_depend_on_the_threads_decimal_context() -> None:
    # Regression: USD values were computed with the reading thread's context,
    # so one immutable record had different values (and hashes) per thread,
    # and ==, hash, repr and to_dict raised where a thread traps Inexact.
    import copy
    import decimal
    import threading

    book = PositionBook()
    book.initial([parse_position(RAW)])
    book.price_batch(PriceBatch((PriceUpdate("so1tokenabc", Decimal("0.000333"), Decimal("0.0497")),), None))
    record = book.records["p1"]
    here = (record.to_dict(), hash(record), repr(record))
    seen: list[object] = []

    def elsewhere() -> None:
        with decimal.localcontext() as ctx:
            ctx.prec, ctx.rounding = 3, decimal.ROUND_DOWN
            ctx.traps[decimal.Inexact] = True
            try:
                seen.append((record.to_dict(), hash(record), repr(record)))
                seen.append(record == copy.copy(record) and record.profit_loss_usd)
            except Exception as exc:  # pragma: no cover - the regression
                seen.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert seen[0] == here and seen[1] == record.profit_loss_usd


def test_zero_prices_from_the_real_server_mean_unknown_and_do_not_sink_a_message() -> None:
    # The real server writes priceUsd 0 (and currentPrice 0 with no purchase price)
    # when it has no price: that is "unknown", never a reason to refuse the message.
    batch = decode(
        json.dumps(
            {
                "type": "price_update_batch",
                "data": {
                    "updates": [
                        {"tokenAddress": "good", "price": 0.002, "priceUsd": 0},
                        {"tokenAddress": "bad", "price": 0, "priceUsd": 0.1},
                        {"tokenAddress": "worse", "price": "1e999999"},
                    ]
                },
            }
        ),
        0.0,
    )
    assert isinstance(batch, PriceBatch)
    assert [(u.token_address, u.price, u.price_usd) for u in batch.updates] == [
        ("good", Decimal("0.002"), None)
    ]
    assert batch.refused == 2
    with pytest.raises(ProtocolError):  # nothing usable at all: one bad message
        decode('{"type":"price_update_batch","data":{"updates":[{"tokenAddress":"x","price":-1}]}}', 0.0)
    initial = decode(
        json.dumps(
            {
                "type": "initial_data",
                "data": {"positions": [{**RAW, "currentPrice": 0, "currentPriceUsd": 0}]},
            }
        ),
        0.0,
    )
    assert isinstance(initial, InitialData)
    assert (
        initial.positions[0].get("current_price") is None
        and initial.positions[0].get("current_price_usd") is None
    )


@pytest.mark.parametrize(
    ("steps", "answers"),
    [
        (["refused"], [None]),  # the first refusal asks the provider
        (["refused", "refused"], [None, "a freshly provided token was refused too"]),
        (["refused", "reset", "refused"], [None, None]),  # a connection (or an outage) ended the run
    ],
)
def test_the_refresh_policy_asks_once_per_run_of_refusals(
    steps: list[str], answers: list[str | None]
) -> None:
    policy = RefreshPolicy()
    got = []
    for step in steps:
        if step == "reset":
            policy.reset()
        else:
            got.append(policy.refused(has_provider=True))
    assert got == answers


def test_the_refresh_policy_without_a_provider_and_with_a_bad_answer() -> None:
    assert RefreshPolicy().refused(has_provider=False) == "no token_provider to refresh the token"
    assert RefreshPolicy.check("eyJ.new") is None
    assert RefreshPolicy.check("") == RefreshPolicy.check(None) == "token_provider returned no token"
