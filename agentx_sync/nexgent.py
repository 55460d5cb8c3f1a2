"""NexgentWS: the threaded client for Nexgent (PROTOCOL.md section 2)."""

from __future__ import annotations

import copy
import html
import logging
import ssl
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .backoff import BackoffPolicy
from .client import BaseClient, F, Key
from .connection import Connection
from .dialects import Decision, ErrorMessage, Verdict
from .dialects.nexgent import (
    INITIAL_DATA_FAILED,
    AgentConnected,
    InitialData,
    NexgentDialect,
    RefreshPolicy,
    encode_initial,
    encode_prices,
)
from .errors import (
    AgentNotFoundError,
    AgentXError,
    AuthenticationError,
    ConnectionLostError,
    ConnectionReplacedError,
    ProtocolError,
    server_error,
)
from .models import (
    ConnectionState,
    Position,
    PositionChange,
    PriceBatch,
)
from .numbers import display
from .options import Options

__all__ = ["NexgentWS"]

log = logging.getLogger("agentx_sync.client")


class NexgentWS(BaseClient):
    """A threaded client for Nexgent's WebSocket (PROTOCOL.md section 2).

    Args:
        api_url: the instance's URL (``https://...`` becomes ``wss://...``).
        token: a JWT of the agent's owner; never logged.
        agent_id: the agent whose positions to follow.
        token_provider: called (on the IO thread) for a fresh JWT when the
            server refuses the current one at a reconnect (HTTP 401).
        reconnect_on_replace: reconnect after another client took this agent
            over (close 1000 "New connection established"). Off by default:
            two clients that both reconnect knock each other off forever.
        stale_timeout: seconds without a server ping or data before the
            connection is re-opened (the server pings every 30 s).
        Other options as for :class:`AgentExchangeWS`.
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        agent_id: str,
        *,
        token_provider: Callable[[], str] | None = None,
        reconnect_on_replace: bool = False,
        stale_timeout: float = 70.0,
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
        self._nexgent = NexgentDialect(api_url, token, agent_id)
        super().__init__(
            self._nexgent,
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
        self.api_url = api_url
        self.token_provider = token_provider
        self.reconnect_on_replace = reconnect_on_replace
        self._refresh = RefreshPolicy()
        self._book = self._state.book

    def _identity_extra(self) -> str:
        return self._nexgent.agent_id  # one owner's token serves several agents

    # -- a shared feed (share.py) ------------------------------------------------------

    _relayed = frozenset({PriceBatch, PositionChange, InitialData, ErrorMessage})

    def _feed_identity(self) -> str:
        # The agent, not the token: tokens are refreshed, and every process may hold another.
        return "\0".join((type(self).__name__, self._nexgent.safe_url, self._nexgent.agent_id))

    def _snapshot_state(self) -> Any:
        book = self._book
        with self._state.cond:
            prices = [(token, price, usd) for token, (price, usd) in book.prices.items()]
            positions = list(book.records.values()) if book.loaded or book.records else None
        return prices, positions

    def _snapshot_texts(self, state: Any) -> list[str]:
        prices, positions = state
        texts = [encode_prices(prices)] if prices else []
        if positions is not None:
            texts.append(encode_initial(positions))
        return texts

    def _load_snapshot(self, events: list[Any]) -> None:
        book = self._book

        def load() -> None:
            book.clear()
            for event in events:
                if type(event) is PriceBatch:
                    book.price_batch(event)
                elif type(event) is InitialData:
                    book.initial(event.positions)

        with self._state.batch:
            self._state.mutate(load)

    @property
    def agent_id(self) -> str:
        return self._nexgent.agent_id

    def _repr_extra(self) -> str:
        stale = " (stale)" if self.positions_stale else ""
        return f" agent={self.agent_id} positions={len(self._book.records)}{stale}"

    def _html_data(self) -> str:
        positions = self.get_positions()
        if not positions:
            return "<p>No positions.</p>"

        def cell(value: Any, places: int | None = None) -> str:
            if value is None:
                return "-"
            return html.escape(display(value, places) if isinstance(value, Decimal) else str(value)[:48])

        rows = "".join(
            f"<tr><td>{cell(p.token_symbol or p.token_address)}</td>"
            f"<td style='text-align:right'>{cell(p.holding)}</td>"
            f"<td style='text-align:right'>{cell(p.current_price)}</td>"
            f"<td style='text-align:right'>{cell(p.profit_loss_percent, 2)}</td></tr>"
            for p in positions
        )
        stale = "<p>(kept from a lost connection)</p>" if self.positions_stale else ""
        head = "<tr><th>token</th><th>holding</th><th>price (SOL)</th><th>P/L %</th></tr>"
        return f"<table>{head}{rows}</table>{stale}"

    # -- decorators ------------------------------------------------------------------

    def on_positions(self) -> Callable[[F], F]:
        """Decorator: ``fn(positions: list[Position])`` after any change (one call per price batch)."""
        return self._decorator(("positions",))

    def on_position_update(self) -> Callable[[F], F]:
        """Decorator: ``fn(event: PositionEvent)`` for each created / updated / closed position."""
        return self._decorator(("position_update",))

    def on_price_update(self) -> Callable[[F], F]:
        """Decorator: ``fn(batch: PriceBatch)`` once per price batch."""
        return self._decorator(("price_update",))

    # -- getters -----------------------------------------------------------------------

    def get_positions(self) -> list[Position]:
        """The current positions (kept, and ``positions_stale``, while disconnected)."""
        self._state.settle()
        with self._state.cond:
            return list(self._book.records.values())

    def get_position(self, position_id: str) -> Position | None:
        self._state.settle()
        return self._book.records.get(str(position_id))

    @property
    def positions_stale(self) -> bool:
        """True while the positions are from a lost connection, until fresh initial data."""
        return self._book.stale

    def get_cached_price(self, token_address: str) -> Decimal | None:
        """The latest SOL price of a token (any letter case), or None. Never waits for the network."""
        self._state.settle()
        price = self._book.prices.get(token_address.lower())
        return None if price is None else price[0]

    def get_cached_price_usd(self, token_address: str) -> Decimal | None:
        """The latest USD price of a token (any letter case), or None. Never waits for the network."""
        self._state.settle()
        price = self._book.prices.get(token_address.lower())
        return None if price is None else price[1]

    def wait_for_positions(self, timeout: float | None = 10.0) -> list[Position]:
        """Block until this connection's initial positions have arrived.

        Raises:
            ServerError: the server could not load them ("Failed to load initial data").
            AuthenticationError, AgentNotFoundError, ConnectionReplacedError: the client ended.
            TimeoutError: not within ``timeout`` seconds.
        """
        if self._status is ConnectionState.NEW:
            self.start()
        book = self._book

        def probe() -> list[Position] | None:
            if book.error is not None:
                raise copy.copy(book.error)
            return list(book.records.values()) if book.loaded else None

        return self._state.wait(probe, timeout, "initial positions")

    # -- the IO thread's hooks -----------------------------------------------------------

    def link_opened(self, conn: Connection) -> None:
        self._refresh.reset()
        super().link_opened(conn)

    def link_lost(self, error: AgentXError, retry_in: float | None) -> None:
        # An attempt that failed otherwise than by a 401 ends a run of refusals:
        # the next 401 (an expired token after a long outage) asks the provider again.
        self._refresh.reset()
        super().link_lost(error, retry_in)

    def _on_lost(self) -> None:
        with self._state.cond:
            self._book.disconnected()

    def _closed(self) -> None:
        with self._state.cond:
            self._book.clear()

    def link_events(self, events: list[Any]) -> None:  # noqa: C901 - the hot path: a read's Nexgent events applied as one state change
        if not self._started:
            return  # an IO thread that outlived close(): it must not fill a closed client
        book = self._book
        jobs: list[tuple[Key, Any]] = []
        errors: list[AgentXError] = []

        def positions() -> tuple[Key, list[Position]]:
            return ("positions",), list(book.records.values())

        def apply() -> None:  # noqa: C901 - a flat switch on the event type, inside the one state change
            # All the events of one read, as one state change.
            for event in events:
                kind = type(event)
                if kind is PriceBatch:
                    if event.refused:
                        errors.append(
                            ProtocolError(
                                f"{event.refused} malformed price(s) in a batch refused; the rest applied"
                            )
                        )
                    book.price_batch(event)
                    jobs.append((("price_update",), event))
                    jobs.append(positions())
                elif kind is PositionChange:
                    changed = book.change(event)
                    if changed is not None:
                        jobs.append((("position_update",), changed))
                        jobs.append(positions())
                elif kind is InitialData:
                    jobs.extend((("position_update",), e) for e in book.initial(event.positions))
                    jobs.append(positions())
                elif kind is AgentConnected:
                    if event.agent_id is not None and event.agent_id != self.agent_id:
                        errors.append(
                            ProtocolError(
                                f"the server confirmed agent {event.agent_id!r}, not {self.agent_id!r}"
                            )
                        )
                elif kind is ErrorMessage:
                    error = server_error(event.message)
                    if event.message.startswith(INITIAL_DATA_FAILED) and not book.loaded:
                        # No initial_data will come on this connection: what was
                        # held back is applied now, later changes as they come.
                        jobs.extend((("position_update",), e) for e in book.failed(error))
                        jobs.append(positions())
                    errors.append(error)

        self._state.mutate(apply)
        for key, payload in jobs:
            self._emit(key, payload)
        for error in errors:
            if isinstance(error, ProtocolError):
                self.link_bad_message(error)
                continue
            with self._lock:
                self._server_errors += 1
            log.warning("server error: %s", error)
            self._report(error)

    def link_verdict(self, verdict: Verdict, error: AgentXError) -> Decision:
        if verdict is Verdict.AUTH_FAILED:
            return self._refresh_token(error)
        if verdict is Verdict.REPLACED:
            replaced = ConnectionReplacedError(
                f"another client connected for agent {self.agent_id} and replaced this one"
            )
            if self._shared is not None:
                # Sharing: the share thread sees the connection end and lets another process lead.
                self._report(replaced)
                return Decision.STOP
            if self.reconnect_on_replace:
                self._report(replaced)
                return Decision.BACK_OFF
            self._fail(replaced, ConnectionState.REPLACED)
            return Decision.STOP
        if verdict is Verdict.FATAL and isinstance(error, ConnectionLostError) and error.code == 1008:
            error = AgentNotFoundError(
                f"Nexgent closed the connection (1008 {error.reason or 'Agent not found'}): "
                f"agent {self.agent_id} does not belong to this token's user"
            )
        self._fail(error, ConnectionState.FAILED)
        return Decision.STOP

    def _refresh_token(self, error: AgentXError) -> Decision:
        """Ask ``token_provider`` for a new token, as the refresh policy allows (IO thread)."""
        reason = self._refresh.refused(self.token_provider is not None)
        token: object = None
        if reason is None:
            assert self.token_provider is not None
            try:
                token = self.token_provider()
            except Exception as exc:
                log.error("token_provider raised %s", type(exc).__name__)
                reason = f"token_provider raised {type(exc).__name__}"
            else:
                reason = self._refresh.check(token)
        if reason is not None:
            self._fail(AuthenticationError(f"{error}; {reason}", status=401), ConnectionState.FAILED)
            return Decision.STOP
        assert isinstance(token, str)
        self._nexgent.token = token
        log.info("the token was refused (HTTP 401); retrying with a fresh one from token_provider")
        return Decision.RETRY_NOW
