"""The simulator's paper-trading account: cash, holdings at average cost, P/L (pure).

The usual average-cost accounting, fees included:

- A buy costs ``price * quantity + fee`` in cash and is rejected beyond the
  cash available. The holding's cost basis grows by that whole cost, so its
  average cost includes the fee.
- A sell is rejected beyond the quantity held. It brings
  ``price * quantity - fee`` in cash; the realized P/L grows by those
  proceeds less the average cost of the quantity sold.
- Unrealized P/L is ``quantity * (price - average cost)`` over the holdings.
- Equity is ``cash + quantity * price`` over the holdings.

So ``equity - starting cash == realized + unrealized`` always holds (to the
rounding of average costs at 28 digits), cash never goes below zero, and no
holding does. ``tests/test_sim_account.py`` checks these over random order flows.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

__all__ = ["FEE_RATE", "Account", "Holding", "quantity_for", "tick_size"]

FEE_RATE = Decimal("0.001")
_FEE_STEP = Decimal("0.00000001")
_CENT = Decimal("0.01")


def tick_size(price: Decimal) -> Decimal:
    """The price step for a symbol trading near ``price`` (as exchanges quote them)."""
    if price >= 10:
        return Decimal("0.01")
    if price >= Decimal("0.01"):
        return Decimal("0.0001")
    return Decimal("0.00000001")


def quantity_for(notional: Decimal, price: Decimal) -> Decimal:
    """The quantity that ``notional`` buys at ``price``, rounded down to a step of 1e-6."""
    return (notional / price).quantize(Decimal("0.000001"), ROUND_DOWN)


class Holding:
    __slots__ = ("cost", "quantity")

    def __init__(self, quantity: Decimal, cost: Decimal) -> None:
        self.quantity = quantity
        self.cost = cost  # the cost basis of the whole quantity, fees included

    @property
    def average_cost(self) -> Decimal:
        return self.cost / self.quantity


class Account:
    def __init__(self, cash: Decimal) -> None:
        self.starting_cash = cash
        self.cash = cash
        self.holdings: dict[str, Holding] = {}
        self.realized = Decimal(0)
        self.fees = Decimal(0)

    def fill(self, symbol: str, side: str, quantity: Decimal, price: Decimal) -> str | None:
        """Apply a market order filled at ``price``; the rejection reason, or None when it filled."""
        if quantity <= 0:
            return "invalid_quantity"
        fee = (price * quantity * FEE_RATE).quantize(_FEE_STEP, ROUND_HALF_UP)
        holding = self.holdings.get(symbol)
        if side == "buy":
            cost = price * quantity + fee
            if cost > self.cash:
                return "insufficient_balance"
            self.cash -= cost
            if holding is None:
                self.holdings[symbol] = Holding(quantity, cost)
            else:
                holding.quantity += quantity
                holding.cost += cost
        elif side == "sell":
            if holding is None or quantity > holding.quantity:
                return "insufficient_holdings"
            proceeds = price * quantity - fee
            # The cost of what is sold, at the average cost; selling everything takes all of it.
            sold_cost = (
                holding.cost if quantity == holding.quantity else holding.cost * quantity / holding.quantity
            )
            self.cash += proceeds
            self.realized += proceeds - sold_cost
            holding.quantity -= quantity
            holding.cost -= sold_cost
            if holding.quantity == 0:
                del self.holdings[symbol]
        else:
            return "invalid_side"
        self.fees += fee
        return None

    def value(self, prices: Mapping[str, Decimal]) -> Decimal:
        """The holdings at market (at cost when a price is unknown)."""
        return sum((h.quantity * prices.get(s, h.average_cost) for s, h in self.holdings.items()), Decimal(0))

    def unrealized(self, prices: Mapping[str, Decimal]) -> Decimal:
        return sum(
            (h.quantity * prices.get(s, h.average_cost) - h.cost for s, h in self.holdings.items()),
            Decimal(0),
        )

    def snapshot(self, prices: Mapping[str, Decimal]) -> dict[str, str]:
        """The portfolio message's figures, to the cent."""
        return {
            "total_equity": str((self.cash + self.value(prices)).quantize(_CENT)),
            "available_cash": str(self.cash.quantize(_CENT)),
            "unrealized_pnl": str(self.unrealized(prices).quantize(_CENT)),
            "realized_pnl": str(self.realized.quantize(_CENT)),
        }
