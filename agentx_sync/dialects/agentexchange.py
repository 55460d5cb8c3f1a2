"""The AgentExchange protocol (PROTOCOL.md section 1), sans-IO.

What the real server does, and this module follows:

- ``{base_url}/ws/v1?api_key=...``; a bad key is refused at the handshake with 403.
- ``{"action": "subscribe", "channel": ..., "symbol": ..., "interval": ...}``;
  acks ``{"type": "subscribed", "channel": "ticker:BTCUSDT"}``; at most 10
  subscriptions per connection, ``orders`` and ``portfolio`` included.
- Data envelopes have no ``type``; they are keyed by ``channel``, decimals are
  strings, timestamps ISO-8601 ``Z``.
- ``{"type": "ping"}`` must be answered with exactly ``{"action": "pong"}``.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import quote

import attrs

from ..errors import ProtocolError
from ..models import Candle, Order, OrderSide, OrderStatus, Portfolio, Ticker
from ..numbers import MAX_CHARS, MAX_EXPONENT
from . import ErrorMessage, Ping, Subscribed, Unsubscribed, Verdict, parse_json
from ._wire import (
    MAX_KEY,
    NUMERAL_FIRST,
    NUMERAL_LAST,
    Endpoint,
    as_bool,
    as_dec,
    as_dict,
    as_key,
    as_opt_dec,
    as_opt_str,
    as_opt_ts,
    as_price,
    as_str,
    basic_auth,
    userinfo_secrets,
    websocket_endpoint,
)

__all__ = [
    "INTERVALS",
    "MAX_SUBSCRIPTIONS",
    "AgentExchangeDialect",
    "Interest",
    "Plan",
    "Subscription",
    "SubscriptionBook",
    "build_url",
    "check_interval",
    "decode",
    "encode",
    "normalize_symbol",
]

#: Candle intervals the server accepts (its docs also list 15m and 4h; it refuses them).
INTERVALS: Final = ("1m", "5m", "1h", "1d")
MAX_SUBSCRIPTIONS: Final = 10
PONG: Final = '{"action":"pong"}'


@attrs.frozen(order=True)
class Subscription:
    """One server-side subscription."""

    channel: str  # "ticker", "ticker_all", "candles", "orders" or "portfolio"
    symbol: str | None = None
    interval: str | None = None

    @property
    def key(self) -> str:
        """The channel key the server uses in its ``subscribed`` ack."""
        if self.channel == "ticker_all":
            return "ticker:all"
        return ":".join(p for p in (self.channel, self.symbol, self.interval) if p)

    def request(self, action: str = "subscribe") -> dict[str, str]:
        req = {"action": action, "channel": self.channel}
        if self.symbol:
            req["symbol"] = self.symbol
        if self.interval:
            req["interval"] = self.interval
        return req

    def message(self, action: str = "subscribe") -> str:
        return json.dumps(self.request(action), separators=(",", ":"))


TICKER_ALL: Final = Subscription("ticker_all")
ORDERS: Final = Subscription("orders")
PORTFOLIO: Final = Subscription("portfolio")


def normalize_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"a symbol must be a non-empty string, not {symbol!r}")
    return symbol.strip().upper()


def check_interval(interval: str) -> str:
    if interval not in INTERVALS:
        raise ValueError(
            f"candle interval {interval!r} is not served by AgentExchange; use one of {', '.join(INTERVALS)}"
        )
    return interval


@attrs.frozen
class Plan:
    """The subscriptions to hold on the wire, and what could not fit."""

    subscriptions: tuple[Subscription, ...]
    #: Wanted but beyond the server's limit (only candles can end up here).
    unserved: tuple[Subscription, ...] = ()
    #: True when tickers are served by ``ticker_all`` and filtered client-side.
    via_ticker_all: bool = False


@attrs.define
class Interest:
    """What the user wants to receive; :meth:`plan` maps it onto the wire."""

    tickers: set[str] = attrs.Factory(set)
    all_tickers: bool = False
    candles: set[tuple[str, str]] = attrs.Factory(set)
    orders: bool = False
    portfolio: bool = False

    def wants_ticker(self, symbol: str) -> bool:
        return self.all_tickers or symbol in self.tickers

    def union(self, other: Interest) -> Interest:
        """What either wants (a shared feed's leader serves every process's interest)."""
        return Interest(
            self.tickers | other.tickers,
            self.all_tickers or other.all_tickers,
            self.candles | other.candles,
            self.orders or other.orders,
            self.portfolio or other.portfolio,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "tickers": sorted(self.tickers),
            "all": self.all_tickers,
            "candles": sorted(self.candles),
            "orders": self.orders,
            "portfolio": self.portfolio,
        }

    @classmethod
    def from_json(cls, data: Any) -> Interest:
        """The interest another process published; what is not well-formed is left out."""
        if type(data) is not dict:
            return cls()
        tickers = data.get("tickers")
        candles = data.get("candles")
        return cls(
            {normalize_symbol(t) for t in tickers if _symbol_like(t)} if type(tickers) is list else set(),
            data.get("all") is True,
            {
                (normalize_symbol(c[0]), c[1])
                for c in candles
                if type(c) is list and len(c) == 2 and _symbol_like(c[0]) and c[1] in INTERVALS
            }
            if type(candles) is list
            else set(),
            data.get("orders") is True,
            data.get("portfolio") is True,
        )

    def plan(self, limit: int = MAX_SUBSCRIPTIONS) -> Plan:
        """Fit the interest into ``limit`` subscriptions.

        Individual ticker subscriptions are used while tickers and candles fit;
        beyond that one ``ticker_all`` serves every symbol (filtered by the
        client). ``orders`` and ``portfolio`` take the slots that are left: the
        server pushes both to the agent's connections whether or not they
        were subscribed, so leaving them out loses nothing.
        """
        candles = [Subscription("candles", s, i) for s, i in sorted(self.candles)]
        tickers = [Subscription("ticker", s) for s in sorted(self.tickers)]
        extras = [s for s, wanted in ((ORDERS, self.orders), (PORTFOLIO, self.portfolio)) if wanted]
        # ticker_all (every pair on the exchange) only when it is asked for, or
        # when it saves slots: two or more tickers that do not fit beside the candles.
        via_all = self.all_tickers or (len(tickers) > 1 and len(candles) + len(tickers) > limit)
        if via_all:
            tickers = [TICKER_ALL]
        wanted = tickers + candles
        served, unserved = wanted[:limit], wanted[limit:]
        served += extras[: limit - len(served)]
        return Plan(tuple(served), tuple(unserved), via_all)


def _symbol_like(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= 32 and value.isascii() and value.isalnum()


class SubscriptionBook:
    """A client's AgentExchange subscriptions, sans IO: what it wants, what the wire
    carries, which requests await an answer, and what the server confirmed.

    The client edits the interest, then calls :meth:`sync` and sends the
    requests it returns, in order. The server answers requests in order and
    its errors name no channel, so an error answers the oldest unanswered
    request (:meth:`refused`). Not thread-safe: the client's lock guards it.
    """

    def __init__(self) -> None:
        self.interest = Interest()
        #: Other processes' interest, when this client leads a shared feed.
        self.others = Interest()
        self._wire: tuple[Subscription, ...] | None = None  # None: not connected
        self._pending: deque[tuple[Subscription, str]] = deque()  # sent, not yet answered
        self._confirmed: set[str] = set()
        self._unserved: tuple[Subscription, ...] = ()

    def keys(self) -> tuple[str, ...]:
        """The channel keys wanted, e.g. ``("ticker:BTCUSDT", "orders")``."""
        i = self.interest
        keys = ["ticker:all"] if i.all_tickers else []
        keys += [f"ticker:{s}" for s in sorted(i.tickers)]
        keys += [f"candles:{s}:{iv}" for s, iv in sorted(i.candles)]
        keys += [k for k, on in (("orders", i.orders), ("portfolio", i.portfolio)) if on]
        return tuple(keys)

    def confirmed(self) -> tuple[str, ...]:
        return tuple(sorted(self._confirmed))

    def opened(self) -> None:
        """A connection opened: nothing is on its wire yet."""
        self._wire = ()
        self._pending.clear()
        self._confirmed.clear()

    def lost(self) -> None:
        self._wire = None
        self._pending.clear()
        self._confirmed.clear()

    def sync(self) -> tuple[list[tuple[Subscription, str]], tuple[Subscription, ...] | None]:
        """What to send to bring the wire in line with the interest, and the
        subscriptions the 10-slot limit leaves out when that set changed (else None).

        Unsubscriptions come first, so the server's count never passes its limit.
        The requests are recorded as awaiting an answer.
        """
        plan = self.interest.union(self.others).plan()
        unserved = None
        if plan.unserved != self._unserved:
            self._unserved = unserved = plan.unserved
        if self._wire is None:
            return [], unserved
        old, new = self._wire, plan.subscriptions
        requests = [(s, "unsubscribe") for s in old if s not in new]
        requests += [(s, "subscribe") for s in new if s not in old]
        self._wire = new
        self._pending.extend(requests)
        return requests, unserved

    def unsent(self, request: tuple[Subscription, str]) -> None:
        """A request from :meth:`sync` could not be sent (the connection is going)."""
        with contextlib.suppress(ValueError):
            self._pending.remove(request)

    def answered(self, channel: str, subscribed: bool) -> None:
        """The server confirmed a subscription (or an unsubscription) of ``channel``."""
        for i, (sub, _) in enumerate(self._pending):
            if sub.key == channel:
                del self._pending[i]
                break
        if subscribed:
            self._confirmed.add(channel)
        else:
            self._confirmed.discard(channel)

    def refused(self) -> dict[str, Any] | None:
        """The server sent an error: the request it answers (the oldest unanswered), if any."""
        if not self._pending:
            return None
        sub, action = self._pending.popleft()
        return sub.request(action)


_CHANNELS: Final[dict[type, str]] = {
    Ticker: "ticker",
    Candle: "candles",
    Order: "orders",
    Portfolio: "portfolio",
}


def encode(record: Ticker | Candle | Order | Portfolio) -> str:
    """A record as the server's message that carries it: ``decode(encode(r), now) == r``.

    A shared feed's snapshot is made of these (share.py).
    """
    return json.dumps({"channel": _CHANNELS[type(record)], "data": record.to_dict(json=True)})


def build_url(base_url: str, api_key: str) -> str:
    """``{base_url}/ws/v1?api_key=...``, mapping http(s) to ws(s)."""
    return f"{_endpoint(base_url).url}?api_key={quote(api_key, safe='')}"


def _endpoint(base_url: str) -> Endpoint:
    return websocket_endpoint(base_url, "/ws/v1", "base_url")


# -- decoding -----------------------------------------------------------------

Event = Ticker | Candle | Order | Portfolio | Ping | Subscribed | Unsubscribed | ErrorMessage

_new = tuple.__new__


def _symbol(msg: dict[str, Any], data: dict[str, Any]) -> str:
    return as_key(msg.get("symbol") or data.get("symbol"), "symbol").upper()


def _ticker(msg: dict[str, Any], data: dict[str, Any], now: float) -> Ticker:
    return Ticker(
        symbol=_symbol(msg, data),
        price=as_price(data.get("price"), "price"),
        quantity=as_opt_dec(data.get("quantity"), "quantity"),
        timestamp=as_opt_ts(data.get("timestamp"), "timestamp"),
        is_buyer_maker=as_bool(data.get("is_buyer_maker"), "is_buyer_maker"),
        received_at=now,
    )


def _candle(msg: dict[str, Any], data: dict[str, Any], now: float) -> Candle:
    interval = msg.get("interval") or data.get("interval")
    return Candle(
        symbol=_symbol(msg, data),
        interval=as_str(interval, "interval"),
        time=as_opt_ts(data.get("time", data.get("open_time")), "time"),
        open=as_price(data.get("open"), "open"),
        high=as_price(data.get("high"), "high"),
        low=as_price(data.get("low"), "low"),
        close=as_price(data.get("close"), "close"),
        volume=as_opt_dec(data.get("volume"), "volume"),
        is_closed=as_bool(data.get("is_closed"), "is_closed"),
        received_at=now,
    )


def _enum(kind: type[OrderStatus] | type[OrderSide], value: Any, name: str) -> Any:
    text = as_opt_str(value, name)
    if text is None:
        return None
    try:
        return kind(text.lower())
    except ValueError:
        return text  # tolerated: a status or side this library does not know yet


def _order(msg: dict[str, Any], data: dict[str, Any], now: float) -> Order:
    status = _enum(OrderStatus, data.get("status"), "status")
    if status is None:
        raise ProtocolError("field 'status' is missing")
    order_id = data.get("order_id")
    if type(order_id) is int:
        order_id = str(order_id)
    symbol = as_opt_str(data.get("symbol"), "symbol")
    return Order(
        order_id=as_key(order_id, "order_id"),
        status=status,
        symbol=symbol.upper() if symbol else None,
        side=_enum(OrderSide, data.get("side"), "side"),
        type=as_opt_str(data.get("type"), "type"),
        quantity=as_opt_dec(data.get("quantity"), "quantity"),
        executed_price=as_opt_dec(data.get("executed_price"), "executed_price"),
        executed_quantity=as_opt_dec(data.get("executed_quantity"), "executed_quantity"),
        fee=as_opt_dec(data.get("fee"), "fee"),
        filled_at=as_opt_ts(data.get("filled_at"), "filled_at"),
        cancelled_at=as_opt_ts(data.get("cancelled_at"), "cancelled_at"),
        rejected_reason=as_opt_str(data.get("rejected_reason"), "rejected_reason"),
        price=as_opt_dec(data.get("price"), "price"),
        received_at=now,
    )


def _portfolio(msg: dict[str, Any], data: dict[str, Any], now: float) -> Portfolio:
    return Portfolio(
        total_equity=as_dec(data.get("total_equity"), "total_equity"),
        available_cash=as_opt_dec(data.get("available_cash"), "available_cash"),
        unrealized_pnl=as_opt_dec(data.get("unrealized_pnl"), "unrealized_pnl"),
        realized_pnl=as_opt_dec(data.get("realized_pnl"), "realized_pnl"),
        timestamp=as_opt_ts(data.get("timestamp"), "timestamp"),
        roi_pct=as_opt_dec(data.get("roi_pct"), "roi_pct"),
        received_at=now,
    )


_DATA: Final[dict[str, Callable[[dict[str, Any], dict[str, Any], float], Event]]] = {
    "ticker": _ticker,
    "candles": _candle,
    "orders": _order,
    "portfolio": _portfolio,
}


def _control(msg: dict[str, Any]) -> Event | None:
    kind = msg["type"]
    if kind == "ping":
        return Ping()
    if kind == "subscribed":
        return Subscribed(as_str(msg.get("channel"), "channel"))
    if kind == "unsubscribed":
        return Unsubscribed(as_str(msg.get("channel"), "channel"))
    if kind == "error":
        text = msg.get("message")
        return ErrorMessage(text if type(text) is str else "", as_opt_str(msg.get("code"), "code"))
    return None


def decode(text: str, now: float) -> Event | None:  # noqa: C901 - the decoder: a measured fast path for well-formed tickers, then a switch on channel
    """One server message as an event; ``None`` for what is tolerated and ignored.

    Args:
        text: the message's text.
        now: the receive time (``time.monotonic()``), stamped on data records.

    Raises:
        ProtocolError: the message is not JSON, or a field is malformed.
    """
    try:
        msg = parse_json(text)
    except (ValueError, RecursionError):
        raise ProtocolError("a message that is not valid JSON", raw=text) from None
    if type(msg) is not dict:
        raise ProtocolError("a message that is not a JSON object", raw=text)
    if msg.get("channel") == "ticker" and "type" not in msg:
        # The hot path (hundreds of thousands a second with ticker_all): the
        # well-formed ticker, converted inline. Anything unusual takes the
        # general path below, which checks and reports every field.
        data = msg.get("data")
        symbol = msg.get("symbol")
        if type(data) is dict and type(symbol) is str and 0 < len(symbol) <= MAX_KEY:
            price = data.get("price")
            quantity = data.get("quantity")
            stamp = data.get("timestamp")
            maker = data.get("is_buyer_maker")
            if (
                type(price) is str
                and type(quantity) is str
                and type(stamp) is str
                and stamp[-1:] == "Z"
                # as_price/as_dec's checks, inlined (two calls each cost 10 % here):
                # plain ASCII numerals only, then the magnitude bounds below.
                and 0 < len(price) <= MAX_CHARS
                and 0 < len(quantity) <= MAX_CHARS
                and (price + quantity).isascii()
                and "_" not in price
                and "_" not in quantity
                and price[0] in NUMERAL_FIRST
                and price[-1] in NUMERAL_LAST
                and quantity[0] in NUMERAL_FIRST
                and quantity[-1] in NUMERAL_LAST
            ):
                try:
                    p = Decimal(price)
                    q = Decimal(quantity)
                    moment = datetime.fromisoformat(stamp)
                except (InvalidOperation, ValueError, OverflowError):
                    pass  # the general path below says what is wrong
                else:
                    if (
                        p > 0
                        and -MAX_EXPONENT <= p.adjusted() <= MAX_EXPONENT
                        and (-MAX_EXPONENT <= q.adjusted() <= MAX_EXPONENT or q.is_zero())
                        and (maker is None or type(maker) is bool)
                    ):
                        return _new(Ticker, (symbol.upper(), p, q, moment, maker, now))
    try:
        if "type" in msg:
            return _control(msg)
        decoder = _DATA.get(msg.get("channel"))  # type: ignore[arg-type]
        if decoder is None:
            return None  # an unknown channel: tolerated
        return decoder(msg, as_dict(msg.get("data"), "data"), now)
    except ProtocolError as exc:
        exc.raw = text[:200]
        raise
    except TypeError:  # e.g. an unhashable "channel"
        raise ProtocolError("a message of an unexpected shape", raw=text) from None


class AgentExchangeDialect:
    """Everything platform-specific about AgentExchange, for the IO layer."""

    #: Every message from the server proves the link is alive.
    pong_counts_as_liveness: Final = True
    #: The data messages: decoded and applied to the cache as one batch.
    records: Final = frozenset({Ticker, Candle, Order, Portfolio})

    def __init__(self, base_url: str, api_key: str) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        self._where = _endpoint(base_url)
        self._endpoint = self._where.url
        self._api_key = api_key

    @property
    def url(self) -> str:
        """The connection URL (it carries the api key: never log it)."""
        return f"{self._endpoint}?api_key={quote(self._api_key, safe='')}"

    @property
    def safe_url(self) -> str:
        """The URL with the api key masked."""
        return f"{self._where.safe}?api_key=***"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret this dialect holds (the key or token, and a URL's userinfo)."""
        return (self._api_key, quote(self._api_key, safe=""), *userinfo_secrets(self._where))

    @property
    def headers(self) -> list[str]:
        """Extra HTTP headers of the upgrade: Basic auth from a URL's ``user:password@``."""
        return basic_auth(self._where)

    decode = staticmethod(decode)

    def pong(self, ping: Ping, now_iso: str) -> str:
        return PONG

    def handshake_verdict(self, status: int) -> Verdict:
        return Verdict.AUTH_FAILED if status in (401, 403) else Verdict.RECONNECT

    def close_verdict(self, code: int | None, reason: str) -> Verdict:
        return Verdict.RECONNECT
