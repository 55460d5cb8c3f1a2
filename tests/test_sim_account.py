"""The simulator's money adds up: average-cost accounting over random order flows."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from agentx_sync import AgentExchangeWS
from agentx_sync.sim import Simulator
from agentx_sync.sim._account import Account, tick_size

from .conftest import eventually

SYMBOLS = ("BTCUSDT", "XRPUSDT", "PEPEUSDT")
TOLERANCE = Decimal("1e-12")

prices = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("100000"), places=8)
quantities = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("5000"), places=6)
steps = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(("buy", "sell")), quantities, prices),
    max_size=60,
)


def check(account: Account, market: dict[str, Decimal]) -> None:
    assert account.cash >= 0
    assert all(h.quantity > 0 and h.cost >= 0 for h in account.holdings.values())
    equity = account.cash + account.value(market)
    assert equity == account.cash + sum(h.quantity * market[s] for s, h in account.holdings.items())
    gained = equity - account.starting_cash
    assert abs(gained - (account.realized + account.unrealized(market))) <= TOLERANCE
    unrealized = sum(h.quantity * (market[s] - h.average_cost) for s, h in account.holdings.items())
    assert abs(account.unrealized(market) - unrealized) <= TOLERANCE


@settings(max_examples=300, deadline=None)
@given(steps, st.decimals(min_value=Decimal(1), max_value=Decimal(1_000_000), places=2))
def test_random_order_flows_keep_the_accounting_identities(
    flow: list[tuple[str, str, Decimal, Decimal]], cash: Decimal
) -> None:
    account = Account(cash)
    market: dict[str, Decimal] = dict.fromkeys(SYMBOLS, Decimal(1))
    for symbol, side, quantity, price in flow:
        market[symbol] = price
        before = (account.cash, {s: (h.quantity, h.cost) for s, h in account.holdings.items()})
        held = account.holdings[symbol].quantity if symbol in account.holdings else Decimal(0)
        reason = account.fill(symbol, side, quantity, price)
        after = (account.cash, {s: (h.quantity, h.cost) for s, h in account.holdings.items()})
        if side == "buy":
            fee = (price * quantity / 1000).quantize(Decimal("0.00000001"), ROUND_HALF_UP)
            affordable = price * quantity + fee <= before[0]
            assert reason == (None if affordable else "insufficient_balance")
        else:
            assert reason == (None if quantity <= held else "insufficient_holdings")
        if reason is not None:
            assert after == before  # a rejected order changes nothing
        check(account, market)


def test_selling_everything_realizes_exactly_proceeds_less_cost() -> None:
    account = Account(Decimal(10_000))
    assert account.fill("BTCUSDT", "buy", Decimal("0.1"), Decimal(60_000)) is None  # 6000 + 6 fee
    assert account.fill("BTCUSDT", "sell", Decimal("0.1"), Decimal(61_000)) is None  # 6100 - 6.1 fee
    assert not account.holdings
    assert account.realized == Decimal("6100") - Decimal("6.1") - Decimal("6006")
    assert account.cash == Decimal(10_000) + account.realized
    assert account.fill("BTCUSDT", "sell", Decimal("0.000001"), Decimal(61_000)) == "insufficient_holdings"
    assert account.fill("BTCUSDT", "buy", Decimal(1), Decimal(61_000)) == "insufficient_balance"


def test_tick_sizes_suit_the_price() -> None:
    assert tick_size(Decimal("64500")) == Decimal("0.01")
    assert tick_size(Decimal("0.52")) == Decimal("0.0001")
    assert tick_size(Decimal("0.000012")) == Decimal("0.00000001")


def test_xrp_moves_on_the_wire() -> None:
    with Simulator(rate=0, seed=3) as sim:
        start = sim.prices["XRPUSDT"]
        for _ in range(50):
            sim.tick("XRPUSDT")
        assert len({sim.prices["XRPUSDT"], start}) == 2
        assert sim.prices["XRPUSDT"] == sim.prices["XRPUSDT"].quantize(Decimal("0.0001"))


def test_orders_beyond_cash_or_holdings_are_rejected_on_the_wire(
    sim: Simulator, client: Callable[..., AgentExchangeWS]
) -> None:
    ws = client().start()
    ws.wait_connected(5)
    too_big = sim.place_order("BTCUSDT", "buy", "1")  # 64,500 USDT of 10,000
    rejected = ws.wait_for_order(too_big, status="rejected", timeout=5)
    assert rejected.rejected_reason == "insufficient_balance"
    naked = sim.place_order("ETHUSDT", "sell", "0.1")
    assert ws.wait_for_order(naked, status="rejected", timeout=5).rejected_reason == "insufficient_holdings"
    assert ws.get_portfolio() is None  # a rejection moves no money, so no snapshot


def test_auto_trading_keeps_cash_and_equity_honest() -> None:
    with Simulator(rate=100, auto_trade=0.02, fill_delay=0.0, seed=5) as sim:
        ws = AgentExchangeWS(api_key="ak_test", base_url=sim.url)
        try:
            ws.start().wait_connected(5)
            eventually(lambda: len(ws.get_orders()) >= 100, 30, "a hundred order updates")
            account = sim.account()
            statuses = {o.status for o in ws.get_orders()}
            assert "filled" in statuses
            assert account.cash >= 0
            check(account, dict(sim.prices))
            portfolio = eventually(ws.get_portfolio)
            assert portfolio.available_cash >= 0
            # What the client saw adds up too (to the cent of each figure).
            gained = portfolio.total_equity - Decimal(10_000)
            assert abs(gained - (portfolio.realized_pnl + portfolio.unrealized_pnl)) <= Decimal("0.02")
        finally:
            ws.close()
