"""What the agent tools do, free of any framework: text in, text out.

The LangChain and CrewAI modules wrap these functions; they can also be
called directly. Each reads the client's cache (waiting briefly for a first
value) and answers in short plain text an LLM can use, saying clearly when
nothing is known yet or the connection is down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs

from ..client import AgentExchangeWS, BaseClient, NexgentWS
from ..errors import AgentXError, SubscriptionLimitError
from ..models import ConnectionState
from ..numbers import display

__all__ = ["ToolSpec", "agentexchange_tools", "nexgent_tools", "tools_for"]


@attrs.frozen
class ToolSpec:
    """A tool, described once for every framework.

    Attributes:
        name: the tool's name.
        description: what it does, for the model.
        args: argument name -> (type, description, default or ``...`` if required).
        run: the function; keyword arguments as in ``args``.
    """

    name: str
    description: str
    args: dict[str, tuple[type, str, Any]]
    run: Callable[..., str]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "age unknown"
    return f"{seconds * 1000:.0f} ms old" if seconds < 1 else f"{seconds:.1f} s old"


def _link(ws: BaseClient) -> str:
    state = ws.state
    if state is ConnectionState.CONNECTED:
        return ""
    return f" (connection {state.value}: the value may be stale)"


def _number(value: Decimal | None) -> str:
    return display(value)  # bounded, whatever the cache holds


#: How long a symbol that brought no price is answered from memory.
_FORGET = 60.0
_LISTED = "Is the symbol listed on AgentExchange?"


def _clip(value: object, limit: int = 40) -> str:
    """Wire text, shortened: an answer stays short whatever the server sent."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _token_name(symbol: str | None, address: str) -> str:
    """``BONK (DezX...)``: the symbol an LLM reads and the address the price tool also takes."""
    return f"{_clip(symbol, 24)} ({_clip(address, 64)})" if symbol else _clip(address, 64)


def agentexchange_tools(ws: AgentExchangeWS, *, wait: float = 3.0) -> list[ToolSpec]:  # noqa: C901 - one small closure per tool; their branches add up here
    """Price, orders and portfolio tools over a running :class:`AgentExchangeWS`."""

    misses: dict[str, float] = {}  # symbol -> when it last brought no price

    def get_price(symbol: str) -> str:
        symbol = symbol.strip().upper()
        if not symbol:
            return "Give a trading pair such as BTCUSDT."
        shown = _clip(symbol, 24)
        missed = misses.get(symbol)
        if missed is not None and time.monotonic() - missed < _FORGET and ws.get_cached_price(symbol) is None:
            return f"No price for {shown}: none came when it was asked for just now. {_LISTED}"
        try:
            price = ws.lookup_price(symbol, timeout=wait)  # never keeps a guess subscribed
        except SubscriptionLimitError:
            return f"No price for {shown}: this connection cannot follow another symbol (10 subscriptions)."
        except AgentXError as exc:
            return f"No price for {shown}: {_clip(exc, 200)}"
        if price is None:
            if len(misses) >= 1000:
                misses.clear()
            misses[symbol] = time.monotonic()
            return f"No price for {shown} yet: none arrived within {wait:g} s. {_LISTED}"
        misses.pop(symbol, None)
        return f"{shown}: {display(price)} ({_age(ws.price_age(symbol))}){_link(ws)}"

    def get_orders(order_id: str = "") -> str:
        if order_id:
            order = ws.get_order(order_id)
            if order is None:
                return f"No update for order {order_id} among the last 100."
            orders = [order]
        else:
            orders = ws.get_orders()[-10:]
            if not orders:
                return "No order updates yet."
        lines = []
        for o in orders:
            filled = f" at {_number(o.executed_price)}" if o.executed_price is not None else ""
            reason = f" ({_clip(o.rejected_reason, 80)})" if o.rejected_reason else ""
            lines.append(
                f"{_clip(o.order_id)}: {_clip(o.side)} {_number(o.quantity)} {_clip(o.symbol)} "
                f"{_clip(o.status)}{filled}{reason}"
            )
        return "\n".join(lines) + _link(ws)

    def get_portfolio() -> str:
        p = ws.get_portfolio()
        if p is None:
            return "No portfolio snapshot yet (one arrives after each trade)." + _link(ws)
        return (
            f"Total equity {_number(p.total_equity)}, available cash {_number(p.available_cash)}, "
            f"unrealized P/L {_number(p.unrealized_pnl)}, realized P/L {_number(p.realized_pnl)} "
            f"({_age(time.monotonic() - p.received_at)}){_link(ws)}"
        )

    return [
        ToolSpec(
            "get_price",
            "Latest trade price of a trading pair on AgentExchange (e.g. BTCUSDT), from a live "
            "stream: instant, with how old the price is.",
            {"symbol": (str, "The trading pair, e.g. BTCUSDT or ETHUSDT.", ...)},
            get_price,
        ),
        ToolSpec(
            "get_orders",
            "Recent order updates of this agent (status, side, quantity, fill price), or one order's "
            "latest status when an order id is given.",
            {"order_id": (str, "An order id, or empty for the last ten updates.", "")},
            get_orders,
        ),
        ToolSpec(
            "get_portfolio",
            "This agent's latest portfolio snapshot: equity, available cash, unrealized and realized P/L.",
            {},
            get_portfolio,
        ),
    ]


def nexgent_tools(ws: NexgentWS, *, wait: float = 3.0) -> list[ToolSpec]:  # noqa: C901 - one small closure per tool; their branches add up here
    """A positions tool and a token price tool over a running :class:`NexgentWS`."""

    def get_positions() -> str:
        try:
            positions = ws.get_positions() if ws.get_positions() else ws.wait_for_positions(timeout=wait)
        except TimeoutError:
            return f"Positions are not loaded yet (nothing within {wait:g} s)."
        except AgentXError as exc:
            return f"Positions are unavailable: {exc}"
        if not positions:
            return "No open positions." + _link(ws)
        stale = " (kept from a lost connection)" if ws.positions_stale else ""
        lines = []
        for p in positions:
            pnl = "P/L n/a" if p.profit_loss_percent is None else f"P/L {display(p.profit_loss_percent, 2)}%"
            name = (
                f"{_clip(p.token_symbol, 24)} ({_clip(p.token_address, 64)})"
                if p.token_symbol
                else p.token_address
            )
            lines.append(
                f"{_clip(name, 96)}: holding {_number(p.holding)}, bought at "
                f"{_number(p.purchase_price)} SOL, now {_number(p.current_price)} SOL, {pnl} "
                f"({_number(p.profit_loss_sol)} SOL)"
            )
        return "\n".join(lines) + stale + _link(ws)

    def get_token_price(token_address: str) -> str:
        # An address or, as the positions tool shows it, a symbol (BONK).
        token = token_address.strip()
        address, label = token, _clip(token, 64)
        if ws.get_cached_price(token) is None:
            held = [p for p in ws.get_positions() if (p.token_symbol or "").casefold() == token.casefold()]
            if len({p.token_address.lower() for p in held}) > 1:
                addresses = ", ".join(sorted({_clip(p.token_address, 64) for p in held}))
                return f"{label} names several tokens the agent holds: {addresses}. Ask by address."
            if held:
                address = held[0].token_address
                label = _token_name(held[0].token_symbol, address)
        price = ws.get_cached_price(address)
        if price is None:
            return f"No price for {label} yet: prices come only for tokens the agent holds."
        usd = ws.get_cached_price_usd(address)
        usd_text = f" ({display(usd)} USD)" if usd is not None else ""
        return f"{label}: {display(price)} SOL{usd_text}{_link(ws)}"

    return [
        ToolSpec(
            "get_positions",
            "This Nexgent agent's open positions with amounts, purchase and current prices, and P/L.",
            {},
            get_positions,
        ),
        ToolSpec(
            "get_token_price",
            "Latest price of a Solana token the agent holds, in SOL and USD, by its token address or symbol.",
            {
                "token_address": (
                    str,
                    "The token's mint address (any letter case) or its symbol, e.g. BONK.",
                    ...,
                )
            },
            get_token_price,
        ),
    ]


def tools_for(ws: BaseClient, *, wait: float = 3.0) -> list[ToolSpec]:
    """The tools that fit a client."""
    if isinstance(ws, AgentExchangeWS):
        return agentexchange_tools(ws, wait=wait)
    if isinstance(ws, NexgentWS):
        return nexgent_tools(ws, wait=wait)
    raise TypeError(f"no tools for {type(ws).__name__}")
