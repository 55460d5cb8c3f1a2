"""The trading screen of ``agentx-sync demo`` and ``watch``, drawn from a client's cache.

:class:`Board` reads the client for each frame and remembers what one frame
cannot know: each symbol's first price (the change column) and last move (its
colour), the message rate, and when the current error appeared, so that an
error leaves the screen once it no longer holds. :func:`render` draws a frame
with rich for a terminal of any size from 80x24 up; :func:`render_text` draws
it as plain text. Every number and text goes through bounded formatting, so
nothing the server sends can stretch the screen.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from .client import AgentExchangeWS, BaseClient, NexgentWS
from .models import ConnectionState, Order, Portfolio, Position
from .numbers import CONTEXT, display

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["Board", "Frame", "Quote", "money", "price", "render", "render_text", "significant"]

#: Seconds a fresh error stays on screen while the connection is up.
ERROR_SHOWN_FOR = 15.0
#: Seconds after connecting before a symbol without a price gets a hint.
HINT_AFTER = 5.0
_MAX_ORDERS = 50


# -- numbers, bounded -------------------------------------------------------------------


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def price(value: Decimal | None) -> str:
    """A price as the exchange quotes it, grouped: ``64,521.30``, ``0.5213``."""
    if value is None:
        return "-"
    if value.is_finite() and -12 <= value.adjusted() <= 15:
        return f"{value:,}"
    return display(value)


def significant(value: Decimal | None, digits: int = 4) -> str:
    """Small prices to ``digits`` significant digits (``0.00002135``); large ones to cents."""
    if value is None:
        return "-"
    if not value.is_finite() or value.is_zero() or not -12 <= value.adjusted() <= 15:
        return display(value)
    if abs(value) >= 1:  # at least cents, and ``digits`` significant digits
        places = max(2, digits - 1 - value.adjusted())
        return f"{value.quantize(Decimal(1).scaleb(-places), context=CONTEXT):,}"
    step = Decimal(1).scaleb(value.adjusted() - digits + 1)
    return format(value.quantize(step, context=CONTEXT), "f")


def money(value: Decimal | None, places: int = 2) -> str:
    """An amount with grouping and fixed places: ``10,000.00``."""
    if value is None:
        return "-"
    if value.is_finite() and -12 <= value.adjusted() <= 15:
        return f"{value.quantize(Decimal(1).scaleb(-places), context=CONTEXT):,}"
    return display(value)


def _signed(value: Decimal | None, fmt: Callable[[Decimal | None], str] = money) -> str:
    if value is None:
        return "-"
    text = fmt(value)
    return text if text.startswith("-") or value.is_zero() else "+" + text


def _percent(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return _signed(value, lambda v: money(v, 2)) + "%"


# -- the frame: what is on screen ----------------------------------------------------


@attrs.frozen
class Quote:
    symbol: str
    price: Decimal | None
    change: Decimal | None  # percent since the first price this screen saw
    move: int  # +1 the last change was up, -1 down, 0 none yet
    age: float | None


@attrs.frozen
class Frame:
    client: str
    url: str
    state: ConnectionState
    reconnects: int
    messages: int
    rate: float | None
    last_message_age: float | None
    error: str | None  # only while it holds
    at: datetime
    quotes: tuple[Quote, ...] = ()
    missing: tuple[str, ...] = ()  # symbols still without a price HINT_AFTER s after connecting
    portfolio: Portfolio | None = None
    orders: tuple[Order, ...] = ()  # one per order, its latest update, newest first
    positions: tuple[Position, ...] = ()
    stale: bool = False
    sharing: str | None = None  # share=: this process's role in the shared feed


def _sharing(role: str | None, leader: str | None, lag: float | None) -> str | None:
    if role is None:
        return None
    if role == "leader":
        return "leader of the shared feed (holds the connection)"
    if role == "follower":
        shown = "" if lag is None else f", {lag * 1000:,.1f} ms behind"
        return f"follower of {leader or '?'} through Redis{shown}"
    return "joining the shared feed"


class Board:
    """The screen's memory between frames; :meth:`frame` reads the client now."""

    def __init__(self, ws: BaseClient, symbols: Sequence[str], clock: Callable[[], float] = time.monotonic):
        self.ws = ws
        self.symbols = list(symbols)
        self.clock = clock
        self._first: dict[str, Decimal] = {}
        self._last: dict[str, Decimal] = {}
        self._move: dict[str, int] = {}
        self._rate: deque[tuple[float, int]] = deque()
        self._error: str | None = None
        self._error_at = 0.0
        self._error_on: int | None = None
        self._connected_at: float | None = None

    def frame(self) -> Frame:
        now = self.clock()
        h = self.ws.health()
        if h.state is ConnectionState.CONNECTED:
            if self._connected_at is None:
                self._connected_at = now
        else:
            self._connected_at = None
        if h.last_error != self._error:
            # Which connection the error arrived on (None: while not connected).
            on = h.reconnects if h.state is ConnectionState.CONNECTED else None
            self._error, self._error_at, self._error_on = h.last_error, now, on
        # A connection error no longer holds once connected again; an error
        # during a good connection (a server error, a failed callback) shows a while.
        holds = h.state is not ConnectionState.CONNECTED or (
            self._error_on == h.reconnects and now - self._error_at < ERROR_SHOWN_FOR
        )
        common: dict[str, Any] = {
            "client": "Nexgent" if isinstance(self.ws, NexgentWS) else "AgentExchange",
            "url": h.url,
            "state": h.state,
            "reconnects": h.reconnects,
            "messages": h.messages,
            "rate": self._sample(now, h.messages),
            "last_message_age": h.last_message_age,
            "error": _clip(h.last_error, 300) if h.last_error and holds else None,
            "at": datetime.now(UTC),
            "sharing": _sharing(h.role, h.leader, h.lag),
        }
        if isinstance(self.ws, NexgentWS):
            return Frame(**common, positions=tuple(self.ws.get_positions()), stale=self.ws.positions_stale)
        assert isinstance(self.ws, AgentExchangeWS)
        quotes = tuple(self._quote(symbol, now) for symbol in self.symbols)
        waited = self._connected_at is not None and now - self._connected_at >= HINT_AFTER
        return Frame(
            **common,
            quotes=quotes,
            missing=tuple(q.symbol for q in quotes if q.price is None) if waited else (),
            portfolio=self.ws.get_portfolio(),
            orders=_latest(self.ws.get_orders()),
        )

    def _quote(self, symbol: str, now: float) -> Quote:
        assert isinstance(self.ws, AgentExchangeWS)
        ticker = self.ws.get_ticker(symbol)
        if ticker is None:
            return Quote(symbol, None, None, 0, None)
        value = ticker.price
        first = self._first.setdefault(symbol, value)
        last = self._last.get(symbol)
        if last is not None and value != last:
            self._move[symbol] = 1 if value > last else -1
        self._last[symbol] = value
        change = CONTEXT.multiply(CONTEXT.divide(CONTEXT.subtract(value, first), first), Decimal(100))
        return Quote(symbol, value, change, self._move.get(symbol, 0), max(0.0, now - ticker.received_at))

    def _sample(self, now: float, messages: int) -> float | None:
        samples = self._rate
        samples.append((now, messages))
        while len(samples) > 2 and now - samples[1][0] >= 3.0:
            samples.popleft()
        then, before = samples[0]
        return (messages - before) / (now - then) if now - then >= 0.5 else None


def _latest(updates: Sequence[Order]) -> tuple[Order, ...]:
    """One row per order, its latest update, the most recently updated first."""
    latest: dict[str, Order] = {}
    for order in updates:
        latest.pop(order.order_id, None)
        latest[order.order_id] = order
    return tuple(reversed(list(latest.values())[-_MAX_ORDERS:]))


# -- plain text ---------------------------------------------------------------------------


def _status_line(f: Frame) -> str:
    age = "-" if f.last_message_age is None else f"{f.last_message_age:.1f}s ago"
    rate = "" if f.rate is None else f" ({f.rate:,.1f}/s)"
    sharing = "" if f.sharing is None else f"  {f.sharing}"
    return (
        f"[{f.at:%H:%M:%S}] {f.client}  {_clip(f.url, 120)}  state: {f.state.value}  "
        f"reconnects: {f.reconnects}  messages: {f.messages:,}{rate}  last message: {age}{sharing}"
    )


def _order_cells(o: Order) -> tuple[str, str, str, str, str, str, str]:
    when = o.filled_at or o.cancelled_at
    at = f"{when:%H:%M:%S}" if when is not None else ""
    status = _clip(str(o.status), 16)
    if o.rejected_reason:
        status = f"{status} ({_clip(o.rejected_reason, 24)})"
    qty = o.executed_quantity if o.executed_quantity is not None else o.quantity
    return (
        at,
        o.order_id[:8],
        _clip(str(o.side or ""), 6),
        _clip(price(qty), 14),
        _clip(str(o.symbol or ""), 14),
        status,
        _clip(price(o.executed_price), 16) if o.executed_price is not None else "",
    )


def _short(address: str) -> str:
    return address if len(address) <= 11 else f"{address[:4]}…{address[-4:]}"


#: Position columns: all of them on a wide screen or in plain text, five below 110 columns.
POSITION_COLUMNS = (
    "token",
    "address",
    "holding",
    "bought",
    "price (SOL)",
    "value (SOL)",
    "P/L (SOL)",
    "P/L %",
)
NARROW_POSITION_COLUMNS = ("token", "price (SOL)", "value (SOL)", "P/L (SOL)", "P/L %")


def _position_cells(p: Position, wide: bool) -> list[str]:
    symbol = _clip(p.token_symbol or "?", 10)
    figures = [
        _clip(significant(p.current_price), 14),
        _clip(money(p.position_value_sol, 4), 16),
        _clip(_signed(p.profit_loss_sol, lambda v: money(v, 4)), 16),
        _clip(_percent(p.profit_loss_percent), 12),
    ]
    if not wide:
        return [f"{symbol} {_short(p.token_address)}", *figures]
    held = [_clip(significant(p.holding), 14), _clip(significant(p.purchase_price), 14)]
    return [symbol, _clip(p.token_address, 44), *held, *figures]


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = [
        "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return [line.rstrip(), *(b.rstrip() for b in body)]


def render_text(f: Frame) -> str:
    """The frame as plain text (``--plain``, or output that is not a terminal)."""
    lines = [_status_line(f)]
    if f.client == "Nexgent":
        lines += _table(POSITION_COLUMNS, [_position_cells(p, True) for p in f.positions])
        if f.stale:
            lines.append("positions kept from a lost connection")
    else:
        rows = [
            [q.symbol, price(q.price), _percent(q.change), "-" if q.age is None else f"{q.age:.1f}s"]
            for q in f.quotes
        ]
        lines += _table(["symbol", "price", "change", "age"], [[_clip(c, 24) for c in r] for r in rows])
        p = f.portfolio
        if p is not None:
            lines.append(
                f"portfolio: equity {money(p.total_equity)}  cash {money(p.available_cash)}  "
                f"unrealized {_signed(p.unrealized_pnl)}  realized {_signed(p.realized_pnl)}"
            )
        if f.orders:
            lines.append("orders, newest first:")
            lines += ["  " + "  ".join(c for c in _order_cells(o) if c) for o in f.orders[:10]]
        lines += [_hint(f.missing)] if f.missing else []
    if f.error:
        lines.append(f"error: {f.error}")
    return "\n".join(lines)


def _hint(missing: Sequence[str]) -> str:
    names = ", ".join(_clip(s, 20) for s in missing[:4]) + (" ..." if len(missing) > 4 else "")
    return f"no price yet for {names}: check the symbol is traded on this exchange"


# -- rich ------------------------------------------------------------------------------------

_STATE_STYLE = {
    ConnectionState.CONNECTED: "bold green",
    ConnectionState.FAILED: "bold red",
    ConnectionState.REPLACED: "bold red",
}
_STATUS_STYLE = {"filled": "green", "rejected": "red", "cancelled": "dim", "expired": "dim"}


def _pl_style(value: Decimal | None) -> str:
    if value is None or value.is_zero():
        return ""
    return "green" if value > 0 else "red"


def render(f: Frame, width: int, height: int) -> RenderableType:
    """The frame for a ``width`` x ``height`` terminal (rich renderables)."""
    from rich.layout import Layout

    head = 5 if f.error else 4
    layout = Layout()
    parts = [Layout(_header(f), name="header", size=head)]
    if f.client == "Nexgent":
        room = height - head - 3 - 4  # the summary, the table's borders and heading
        parts += [Layout(_summary(f), size=3), Layout(_positions(f, room, width), name="positions")]
    else:
        top = max(len(f.quotes) + 4 + (1 if f.missing else 0), 8)
        row = Layout(name="market", size=top)
        if width >= 76:
            row.split_row(Layout(_prices(f), ratio=3), Layout(_portfolio(f), ratio=2, minimum_size=30))
        else:
            row.update(_prices(f))
        room = height - head - top - 5  # the orders table's title, heading and borders
        parts += [row, Layout(_orders(f, room), name="orders")]
    layout.split_column(*parts)
    return layout


def _header(f: Frame) -> RenderableType:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(expand=True)
    grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    grid.add_column(justify="right", no_wrap=True)
    state = Text(f"● {f.state.value}", style=_STATE_STYLE.get(f.state, "bold yellow"))
    grid.add_row(
        Text.assemble(state, "  ", (f.client, "bold"), "  ", (f.url, "cyan")), f"{f.at:%H:%M:%S} UTC"
    )
    age = "-" if f.last_message_age is None else f"{f.last_message_age:.1f} s ago"
    rate = "" if f.rate is None else f"  {f.rate:,.1f} msg/s"
    grid.add_row(
        Text(f"reconnects {f.reconnects}  messages {f.messages:,}{rate}  last message {age}", style="dim"),
        Text("Ctrl-C to stop", style="dim"),
    )
    if f.sharing:
        grid.add_row(Text(f"⇄ {f.sharing}", style="magenta", overflow="ellipsis", no_wrap=True), "")
    if f.error:
        grid.add_row(Text(f"⚠ {f.error}", style="bold red", overflow="ellipsis", no_wrap=True), "")
    return Panel(grid, title="agentx-sync", title_align="left", border_style="blue", padding=(0, 1))


def _prices(f: Frame) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=None, expand=True, border_style="blue", header_style="bold", caption_justify="left")
    table.add_column("Symbol", no_wrap=True)
    table.add_column("Price", justify="right", no_wrap=True)
    table.add_column("Change", justify="right", no_wrap=True)
    table.add_column("Age", justify="right", no_wrap=True)
    for q in f.quotes:
        style = {1: "green", -1: "red"}.get(q.move, "")
        arrow = {1: "▲ ", -1: "▼ "}.get(q.move, "  ")
        shown = (
            Text(arrow + _clip(price(q.price), 22), style=style)
            if q.price is not None
            else Text("waiting", "dim")
        )
        table.add_row(
            Text(_clip(q.symbol, 14), style="bold"),
            shown,
            Text(_percent(q.change), style=_pl_style(q.change)),
            "-" if q.age is None else f"{q.age:.1f}s",
        )
    if f.missing:
        table.caption = _hint(f.missing)
        table.caption_style = "yellow"
    return table


def _portfolio(f: Frame) -> RenderableType:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    p = f.portfolio
    if p is None:
        return Panel(Text("no snapshot yet (one comes after each trade)", style="dim"), title="Portfolio")
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_row("Equity", Text(money(p.total_equity), style="bold"))
    grid.add_row("Cash", money(p.available_cash))
    if p.available_cash is not None:
        grid.add_row("Holdings at market", money(p.total_equity - p.available_cash))
    grid.add_row("Unrealized P/L", Text(_signed(p.unrealized_pnl), style=_pl_style(p.unrealized_pnl)))
    grid.add_row("Realized P/L", Text(_signed(p.realized_pnl), style=_pl_style(p.realized_pnl)))
    if p.roi_pct is not None:
        grid.add_row("ROI", Text(_percent(p.roi_pct), style=_pl_style(p.roi_pct)))
    return Panel(grid, title="Portfolio", title_align="left", border_style="blue")


def _orders(f: Frame, room: int) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title="Orders (newest first, one row each, latest status)",
        title_justify="left",
        title_style="bold",
        expand=True,
        border_style="blue",
        header_style="bold",
    )
    columns = ["Time", "Order", "Side", "Quantity", "Symbol", "Status", "Price"]
    for name in columns:
        table.add_column(name, justify="right" if name in ("Quantity", "Price") else "left", no_wrap=True)
    # The newest that fit, the table closed below them (a caption line says how many more).
    shown = f.orders if len(f.orders) <= room else f.orders[: max(1, room - 1)]
    for o in shown:
        cells = list(_order_cells(o))
        side = Text(cells[2], style={"buy": "green", "sell": "red"}.get(cells[2], ""))
        status = Text(cells[5], style=_STATUS_STYLE.get(str(o.status), "yellow"))
        table.add_row(cells[0], cells[1], side, cells[3], cells[4], status, cells[6])
    if not f.orders:
        table.add_row("", Text("no order updates yet", style="dim"), "", "", "", "", "")
    elif len(shown) < len(f.orders):
        table.caption = f"{len(f.orders) - len(shown)} older orders not shown"
        table.caption_justify = "left"
    return table


def _summary(f: Frame) -> RenderableType:
    from rich.panel import Panel
    from rich.text import Text

    value = sum((p.position_value_sol or Decimal(0) for p in f.positions), Decimal(0))
    pnl = sum((p.profit_loss_sol or Decimal(0) for p in f.positions), Decimal(0))
    usd = sum((p.profit_loss_usd or Decimal(0) for p in f.positions), Decimal(0))
    text = Text.assemble(
        (f"{len(f.positions)} positions", "bold"),
        f"   value {money(value, 4)} SOL   P/L ",
        (_signed(pnl, lambda v: money(v, 4)) + " SOL", _pl_style(pnl)),
        "  (",
        (_signed(usd) + " USD", _pl_style(usd)),
        ")",
    )
    if f.stale:
        text.append("   positions kept from a lost connection", style="yellow")
    return Panel(text, border_style="blue")


def _positions(f: Frame, room: int, width: int) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    wide = width >= 110
    columns = POSITION_COLUMNS if wide else NARROW_POSITION_COLUMNS
    table = Table(expand=True, border_style="blue", header_style="bold")
    for name in columns:
        table.add_column(name, justify="left" if name in ("token", "address") else "right", no_wrap=True)
    shown = f.positions if len(f.positions) <= room else f.positions[: max(1, room - 1)]
    for p in shown:
        cells: list[Any] = list(_position_cells(p, wide))
        cells[0] = Text(cells[0], style="bold")
        if wide:
            cells[1] = Text(cells[1], style="dim")
        cells[-2] = Text(cells[-2], style=_pl_style(p.profit_loss_sol))
        cells[-1] = Text(cells[-1], style=_pl_style(p.profit_loss_percent))
        table.add_row(*cells)
    if not f.positions:
        table.add_row(Text("no open positions", style="dim"), *[""] * (len(columns) - 1))
    elif len(shown) < len(f.positions):
        table.caption = f"{len(f.positions) - len(shown)} more positions not shown"
        table.caption_justify = "left"
    return table
