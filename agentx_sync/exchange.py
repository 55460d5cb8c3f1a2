"""AgentExchangeWS: the threaded client for AgentExchange (PROTOCOL.md section 1)."""

from __future__ import annotations

import html
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import attrs

from .backoff import BackoffPolicy
from .client import _RECORDS, BaseClient, F, Key
from .connection import Connection
from .dialects import ErrorMessage, Subscribed, Unsubscribed
from .dialects.agentexchange import (
    AgentExchangeDialect,
    Interest,
    SubscriptionBook,
    check_interval,
    encode,
    normalize_symbol,
)
from .dispatch import Callback
from .errors import (
    OrderFailedError,
    SubscriptionLimitError,
    server_error,
)
from .models import (
    Candle,
    Order,
    OrderStatus,
    Portfolio,
    Ticker,
)
from .numbers import display
from .options import Options

__all__ = ["AgentExchangeWS"]

log = logging.getLogger("agentx_sync.client")


class AgentExchangeWS(BaseClient):
    """A threaded client for AgentExchange's WebSocket (PROTOCOL.md section 1).

    Args:
        api_key: the agent's api key (``ak_live_...``); never logged.
        base_url: ``ws(s)://`` or ``http(s)://`` root of the platform. By
            default ``$AGENTEXCHANGE_WS_URL`` when set (the variable the
            platform's examples use), else ``ws://localhost:8000`` (the SDK's
            default).
        stale_timeout: seconds without any message before the connection is
            considered dead and re-opened (the server pings every 30 s).
        connect_timeout: seconds allowed to open a connection.
        backoff: reconnect delays (default: 1 s doubling to 60 s, 20 % jitter,
            reset after 30 s of stable connection).
        max_message_size: larger messages drop the connection.
        ssl_context: for ``wss://`` (default: system CAs, host name checked).
        event_queue_size: how many events ``get_event`` holds (oldest dropped).
        callback_queue_size: how many events may wait for slow callbacks.
        close_previous: on start(), close a running AgentExchangeWS with the
            same key first (whatever its endpoint), with a :class:`PreviousClientClosedWarning`
            (a notebook cell run twice). ``None``, the default: on inside
            IPython/Jupyter only; elsewhere two such clients run side by side.
        coalesce: seconds to let messages gather after each read before the
            next one (at most 1). Fewer wakeups of the IO thread, so less CPU
            at steady rates (see README, Performance), for up to that much
            added latency. 0, the default, hands each message over at once.
        proxy: an HTTP proxy, ``http://[user:password@]host:port``, to
            tunnel through with HTTP CONNECT (TLS to a wss:// server stays end
            to end). Its credentials are secrets: never logged or shown.
        trust_env: without ``proxy``, use the environment's ``https_proxy``
            (wss://) or ``http_proxy`` (ws://) and ``no_proxy``, as
            websocket-client and requests do. Read at each connection attempt.
        share: a Redis URL (``redis://[:password@]host:port/db``, ``rediss://``,
            ``unix://``) or a redis-py client: every process that passes the
            same one (and the same endpoint and key) shares one connection;
            see README, "Many processes, one connection". Needs the
            ``[redis]`` extra.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        stale_timeout: float = 40.0,
        connect_timeout: float = 10.0,
        backoff: BackoffPolicy | None = None,
        max_message_size: int = 4 * 1024 * 1024,
        ssl_context: ssl.SSLContext | None = None,
        event_queue_size: int = 10_000,
        callback_queue_size: int = 100_000,
        close_previous: bool | None = None,
        coalesce: float = 0.0,
        proxy: str | None = None,
        trust_env: bool = True,
        share: Any = None,
    ) -> None:
        if base_url is None:
            base_url = os.environ.get("AGENTEXCHANGE_WS_URL") or "ws://localhost:8000"
        super().__init__(
            AgentExchangeDialect(base_url, api_key),
            Options(
                stale_timeout=stale_timeout,
                connect_timeout=connect_timeout,
                backoff=backoff,
                max_message_size=max_message_size,
                ssl_context=ssl_context,
                event_queue_size=event_queue_size,
                callback_queue_size=callback_queue_size,
                close_previous=close_previous,
                coalesce=coalesce,
                proxy=proxy,
                trust_env=trust_env,
                share=share,
            ),
        )
        self.base_url = base_url
        self._subs = SubscriptionBook()  # guarded by the client lock

    # -- decorators ----------------------------------------------------------------

    def on_ticker(self, symbol: str) -> Callable[[F], F]:
        """Decorator: ``fn(ticker: Ticker)`` for each trade of ``symbol`` (or ``"all"``)."""
        key = "*" if symbol.strip().lower() == "all" else normalize_symbol(symbol)
        return self._decorator(("ticker", key), lambda: self._subscribe_tickers([key]))

    def on_candles(self, symbol: str, interval: str) -> Callable[[F], F]:
        """Decorator: ``fn(candle: Candle)`` for ``symbol``'s candles of ``interval``."""
        sym, interval = normalize_symbol(symbol), check_interval(interval)
        return self._decorator(("candles", sym, interval), lambda: self.subscribe_candles(sym, interval))

    def on_order_update(self) -> Callable[[F], F]:
        """Decorator: ``fn(order: Order)`` for each order update of the agent."""
        return self._decorator(("orders",), lambda: self._want(orders=True))

    def on_portfolio(self) -> Callable[[F], F]:
        """Decorator: ``fn(portfolio: Portfolio)`` for each portfolio snapshot."""
        return self._decorator(("portfolio",), lambda: self._want(portfolio=True))

    # -- subscriptions ----------------------------------------------------------------

    def subscribe_ticker(self, *symbols: str) -> None:
        """Receive trades of these symbols (``"all"`` for every pair); kept across reconnects."""
        self._subscribe_tickers(["*" if s.strip().lower() == "all" else normalize_symbol(s) for s in symbols])

    def unsubscribe_ticker(self, *symbols: str) -> None:
        with self._lock:
            for symbol in symbols:
                if symbol.strip().lower() == "all":
                    self._subs.interest.all_tickers = False
                else:
                    self._subs.interest.tickers.discard(normalize_symbol(symbol))
            self._resubscribe()

    def subscribe_candles(self, symbol: str, interval: str) -> None:
        """Receive ``symbol``'s candles of ``interval`` (one of 1m, 5m, 1h, 1d)."""
        with self._lock:
            self._subs.interest.candles.add((normalize_symbol(symbol), check_interval(interval)))
            self._resubscribe()

    def unsubscribe_candles(self, symbol: str, interval: str) -> None:
        with self._lock:
            self._subs.interest.candles.discard((normalize_symbol(symbol), interval))
            self._resubscribe()

    def subscriptions(self) -> tuple[str, ...]:
        """The channel keys this client wants, e.g. ``("ticker:BTCUSDT", "orders")``."""
        with self._lock:
            return self._subs.keys()

    def _subscribe_tickers(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                if key == "*":
                    self._subs.interest.all_tickers = True
                else:
                    self._subs.interest.tickers.add(key)
            self._resubscribe()

    def _want(self, *, orders: bool = False, portfolio: bool = False) -> None:
        with self._lock:
            self._subs.interest.orders |= orders
            self._subs.interest.portfolio |= portfolio
            self._resubscribe()

    def _resubscribe(self) -> None:
        """Bring the wire in line with the interest (client lock held)."""
        requests, unserved = self._subs.sync()
        if unserved:
            keys = ", ".join(s.key for s in unserved)
            self._report(
                SubscriptionLimitError(
                    f"more than 10 subscriptions are needed; not subscribed: {keys}",
                    code="SUBSCRIPTION_LIMIT",
                )
            )
        for request in requests:
            sub, action = request
            if not self._conn.send_text(sub.message(action)):
                self._subs.unsent(request)

    def _on_open(self, conn: Connection) -> None:
        self._subs.opened()
        self._resubscribe()

    def _on_lost(self) -> None:
        self._subs.lost()

    def _confirmed(self) -> tuple[str, ...]:
        return self._subs.confirmed()

    def _repr_extra(self) -> str:
        return f" prices={len(self._state.tickers)}"

    def _html_data(self, limit: int = 20) -> str:
        tickers = sorted(self._state.ticker_snapshot().values(), key=lambda t: t.symbol)
        if not tickers:
            return "<p>No prices yet.</p>"
        now = time.monotonic()
        rows = "".join(
            f"<tr><td>{html.escape(t.symbol[:32])}</td><td style='text-align:right'>{display(t.price)}</td>"
            f"<td style='text-align:right'>{now - t.received_at:.1f} s</td></tr>"
            for t in tickers[:limit]
        )
        more = f"<p>... and {len(tickers) - limit} more</p>" if len(tickers) > limit else ""
        return f"<table><tr><th>symbol</th><th>price</th><th>age</th></tr>{rows}</table>{more}"

    # -- a shared feed (share.py) ------------------------------------------------------

    _relayed = frozenset({Ticker, Candle, Order, Portfolio})

    def _snapshot_state(self) -> Any:
        state = self._state
        with state.cond:
            records: list[Any] = [*state.tickers.values(), *state.candles.values(), *state.orders]
            if state.portfolio is not None:
                records.append(state.portfolio)
        return records

    def _snapshot_texts(self, state: Any) -> list[str]:
        return [encode(r) for r in state]

    def _load_snapshot(self, events: list[Any]) -> None:
        state = self._state

        def clear() -> None:
            state.tickers.clear()
            state.candles.clear()
            state.orders.clear()
            state.portfolio = None

        with state.batch:
            state.mutate(clear)
            state.apply(events)

    def _interest(self) -> Any:
        with self._lock:
            return self._subs.interest.to_json()

    def _others(self, interests: list[Any]) -> None:
        others = Interest()
        for interest in interests:
            others = others.union(Interest.from_json(interest))
        with self._lock:
            if others != self._subs.others:
                self._subs.others = others
                self._resubscribe()

    # -- the IO thread's hot path ----------------------------------------------------

    def link_events(self, events: list[Any]) -> None:  # noqa: C901, PLR0912 - the hot path: one pass routes a read's records to the cache, callbacks and queue
        if not self._started:
            return  # an IO thread that outlived close(): it must not fill a closed client
        records = [e for e in events if type(e) in _RECORDS]
        if len(records) != len(events):
            for event in events:
                if type(event) not in _RECORDS:
                    self._control(event)
        if not records:
            return
        self._state.apply(records)
        callbacks = self._callbacks
        interest = self._subs.interest
        every, chosen = interest.all_tickers, interest.tickers
        if every and not callbacks:  # the ticker_all firehose, pull-style: nothing to filter
            self._events.put_many(records)
            return
        jobs: list[tuple[tuple[Callback, ...], Any]] = []
        wanted: list[Any] = []
        for record in records:
            kind = type(record)
            if kind is Ticker:
                if not (every or record.symbol in chosen):
                    continue  # arrived through ticker_all for another symbol
                keys: tuple[Key, ...] = (("ticker", record.symbol), ("ticker", "*"))
            elif kind is Candle:
                keys = (("candles", record.symbol, record.interval),)
            elif kind is Order:
                keys = (("orders",),)
            else:
                keys = (("portfolio",),)
            wanted.append(record)
            if callbacks:
                for key in keys:
                    found = callbacks.get(key)
                    if found:
                        jobs.append((found, record))
        if jobs:
            self._dispatcher.submit(jobs)
        if wanted:
            self._events.put_many(wanted)

    def _control(self, event: Any) -> None:
        kind = type(event)
        if kind is ErrorMessage:
            with self._lock:
                request = self._subs.refused()
                self._server_errors += 1
            error = server_error(event.message, event.code, request)
            log.warning("server error: %s", error)
            self._report(error)
        elif kind is Subscribed or kind is Unsubscribed:
            with self._lock:
                self._subs.answered(event.channel, kind is Subscribed)

    # -- getters (any thread) ----------------------------------------------------------
    # They never wait for the network; at most for the batch being applied (State.settle).

    def get_cached_price(self, symbol: str) -> Decimal | None:
        """The latest price of ``symbol``, or None if none has arrived. Never waits for the network."""
        ticker = self._state.ticker(symbol.upper())
        return None if ticker is None else ticker.price

    def get_ticker(self, symbol: str) -> Ticker | None:
        """The latest trade of ``symbol`` (price, quantity, timestamp), or None."""
        return self._state.ticker(symbol.upper())

    def price_age(self, symbol: str) -> float | None:
        """Seconds since ``symbol``'s cached price arrived, or None."""
        ticker = self._state.ticker(symbol.upper())
        return None if ticker is None else time.monotonic() - ticker.received_at

    def prices(self) -> dict[str, Decimal]:
        """Every cached price, by symbol."""
        return {s: t.price for s, t in self._state.ticker_snapshot().items()}

    def get_candle(self, symbol: str, interval: str) -> Candle | None:
        self._state.settle()
        return self._state.candles.get((symbol.upper(), interval))

    def get_orders(self) -> list[Order]:
        """The last 100 order updates, oldest first."""
        return self._state.order_list()

    def get_order(self, order_id: str) -> Order | None:
        """The latest update of ``order_id`` among the last 100, or None."""
        return self._state.order(str(order_id))

    def get_portfolio(self) -> Portfolio | None:
        self._state.settle()
        return self._state.portfolio

    # -- blocking getters ------------------------------------------------------------

    def wait_for_price(self, symbol: str, timeout: float | None = 10.0) -> Decimal:
        """Block until ``symbol`` has a price (subscribing to it if needed).

        Raises:
            TimeoutError: no price within ``timeout`` seconds.
            AuthenticationError, ClientClosedError: the client ended meanwhile.
        """
        sym = normalize_symbol(symbol)
        if sym not in self._state.tickers and not self._subs.interest.wants_ticker(sym):
            self._subscribe_tickers([sym])
        tickers = self._state.tickers
        ticker = self._state.wait(lambda: tickers.get(sym), timeout, f"price for {sym}")
        return ticker.price

    def lookup_price(self, symbol: str, timeout: float = 3.0) -> Decimal | None:
        """A price for a one-off question (an agent's tool); blocks up to ``timeout``.

        The cached price if there is one; otherwise a temporary subscription is
        made and the first price awaited. A symbol that brings no price within
        ``timeout`` (not listed, a typo) does not keep its subscription, and a
        lookup never widens the connection to ``ticker_all``.

        Returns:
            The price, or None when none came within ``timeout``.

        Raises:
            SubscriptionLimitError: the subscription slots are full; a new
                symbol could only be served by streaming every pair.
            AuthenticationError, ClientClosedError: the client ended meanwhile.
        """
        sym = normalize_symbol(symbol)
        ticker = self._state.ticker(sym)
        if ticker is not None:
            return ticker.price
        added = False
        with self._lock:
            if not self._subs.interest.wants_ticker(sym):
                trial = attrs.evolve(self._subs.interest, tickers={*self._subs.interest.tickers, sym})
                if trial.plan().via_ticker_all and not self._subs.interest.plan().via_ticker_all:
                    raise SubscriptionLimitError(
                        f"no slot left to subscribe to {sym}: every subscription of this connection "
                        "is taken, and a guess must not switch it to ticker_all",
                        code="SUBSCRIPTION_LIMIT",
                    )
                self._subs.interest.tickers.add(sym)
                self._resubscribe()
                added = True
        tickers = self._state.tickers
        try:
            return self._state.wait(lambda: tickers.get(sym), timeout, f"price for {sym}").price
        except TimeoutError:
            return None
        finally:
            if added and sym not in tickers:
                self.unsubscribe_ticker(sym)

    def wait_for_order(
        self, order_id: str, status: str | None = "filled", timeout: float | None = 30.0
    ) -> Order:
        """Block until ``order_id`` reaches ``status`` (any update if None).

        Raises:
            OrderFailedError: the order reached a different final status
                (e.g. rejected while waiting for filled).
            TimeoutError: not within ``timeout`` seconds.
        """
        order_id = str(order_id)

        def accept(order: Order) -> bool:
            if status is None or order.status == status:
                return True
            return isinstance(order.status, OrderStatus) and order.status.is_final

        order = self._state.wait_order(order_id, accept, timeout, f"update of order {order_id}")
        if status is not None and order.status != status:
            raise OrderFailedError(f"order {order_id} ended {order.status}, not {status}", order=order)
        return order
