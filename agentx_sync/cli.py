"""The ``agentx-sync`` command.

    agentx-sync demo                                  the simulator, watched live
    agentx-sync sim [--port --symbols --rate --dialect]
    agentx-sync watch BTCUSDT ETHUSDT [--url --api-key] [--share redis://...]
    agentx-sync watch --nexgent --url https://... --token JWT --agent-id ID
    agentx-sync demo --share redis://127.0.0.1:6379/0  (then the printed watch command elsewhere)

``watch`` shows a live table (with ``rich`` when the ``[cli]`` extra is
installed and the output is a terminal; plain text otherwise). Errors are one
line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from . import __version__
from .client import AgentExchangeWS, BaseClient, NexgentWS
from .errors import AgentXError, AuthenticationError, ConnectionLostError
from .models import Connected, ConnectionState, Disconnected
from .screen import Board, Frame, render, render_text

__all__ = ["CliError", "main", "save_svg", "watch"]

EXIT_AUTH = 2
EXIT_CONNECT = 1


class CliError(Exception):
    """One line for stderr, and an exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# -- the screen ---------------------------------------------------------------------------


class _Screen:
    """Draws frames: rich's full-screen Live on a terminal if installed, else plain text."""

    def __init__(self, plain: bool) -> None:
        self.live: Any = None
        self.console: Any = None
        self.tty = sys.stdout.isatty() and not plain
        if self.tty:
            try:
                from rich.console import Console
                from rich.live import Live
            except ImportError:
                return
            self.console = Console()
            self.live = Live(console=self.console, auto_refresh=False, screen=True, redirect_stderr=False)
            self.live.start()

    def show(self, frame: Frame) -> None:
        if self.live is not None:
            width, height = self.console.size
            self.live.update(render(frame, width, height), refresh=True)
        elif self.tty:
            sys.stdout.write("\x1b[H\x1b[2J" + render_text(frame) + "\n")
            sys.stdout.flush()
        else:
            print(render_text(frame) + "\n", flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def save_svg(frame: Frame, path: str, width: int = 120, height: int = 34) -> None:
    """Save ``frame`` as the rich screen would draw it, as an SVG image."""
    import io

    try:
        from rich.console import Console
    except ImportError:
        raise CliError("--svg needs rich: pip install 'agentx_sync[cli]'", 2) from None
    console = Console(
        record=True,
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
    )
    console.print(render(frame, width, height), height=height)
    console.save_svg(path, title="agentx-sync demo")


def watch(
    ws: BaseClient,
    symbols: Sequence[str],
    *,
    interval: float,
    duration: float | None,
    plain: bool,
    timeout: float = 10.0,
    svg: str | None = None,
) -> int:
    """Connect, then redraw the board every ``interval`` s until Ctrl-C or ``duration``."""
    _first_data(ws, symbols, timeout)
    board = Board(ws, symbols)
    screen = _Screen(plain)
    deadline = None if duration is None else time.monotonic() + duration
    tick = threading.Event()
    frame = None
    try:
        while True:
            frame = board.frame()
            screen.show(frame)
            if ws.state in (ConnectionState.FAILED, ConnectionState.REPLACED):
                raise CliError(ws.health().last_error or f"connection {ws.state.value}", EXIT_CONNECT)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return 0
            tick.wait(interval if left is None else min(interval, left))
    finally:
        screen.close()
        if svg is not None and frame is not None:
            save_svg(frame, svg)


def _first_data(ws: BaseClient, symbols: Sequence[str], timeout: float) -> None:
    """Connect (one line and an exit status if that fails), then give the first data a moment."""
    try:
        _connect(ws, timeout)
    except AuthenticationError as exc:
        raise CliError(f"authentication refused: {exc}", EXIT_AUTH) from None
    except AgentXError as exc:
        raise CliError(str(exc), EXIT_CONNECT) from None
    except TimeoutError:
        reason = ws.health().last_error or "no answer"
        raise CliError(f"cannot connect to {ws.health().url}: {reason}", EXIT_CONNECT) from None
    with contextlib.suppress(TimeoutError, AgentXError):
        if isinstance(ws, NexgentWS):
            ws.wait_for_positions(timeout=5)
        elif isinstance(ws, AgentExchangeWS):
            for symbol in symbols[:3]:
                ws.wait_for_price(symbol, timeout=2)


# -- commands --------------------------------------------------------------------------


def _symbols(text: str) -> list[str] | int:
    return int(text) if text.isdigit() else [s.strip().upper() for s in text.split(",") if s.strip()]


def _sim_class(dialect: str) -> Any:
    try:
        from .sim import NexgentSimulator, Simulator
    except ImportError:
        raise CliError("the simulator needs the [sim] extra: pip install 'agentx_sync[sim]'", 2) from None
    return NexgentSimulator if dialect == "nexgent" else Simulator


def _run_sim(args: argparse.Namespace) -> int:
    cls = _sim_class(args.dialect)
    if args.dialect == "nexgent":
        with cls(host=args.host, port=args.port, ping_interval=args.ping_interval) as sim:
            agent = sim.add_agent("agent-1")
            for symbol, price in (("BONK", 0.00002), ("WIF", 0.012), ("POPCAT", 0.004)):
                sim.open_position(agent, symbol=symbol, purchase_price=price, amount=10_000, notify=False)
            url = sim.url.replace("ws://", "http://")
            print(f"Nexgent simulator on {url}")
            print(f"  NEXGENT_API_URL={url}")
            print(f"  NEXGENT_TOKEN={sim.issue_token()}")
            print(f"  NEXGENT_AGENT_ID={agent}")
            print("Ctrl-C to stop.", flush=True)
            threading.Event().wait(args.duration)
        return 0
    options = {
        "host": args.host,
        "port": args.port,
        "symbols": args.symbols,
        "rate": args.rate,
        "api_keys": args.api_key or ["ak_test"],
        "ping_interval": args.ping_interval,
        "auto_trade": args.auto_trade,
    }
    with cls(**options) as sim:
        print(f"AgentExchange simulator on {sim.url}  (api keys: {', '.join(sorted(sim.api_keys))})")
        print("Ctrl-C to stop.", flush=True)
        threading.Event().wait(args.duration)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    cls = _sim_class("agentexchange")
    with cls(port=0, symbols=args.symbols, rate=args.rate, auto_trade=args.auto_trade, seed=args.seed) as sim:
        print(f"Started the built-in AgentExchange simulator on {sim.url}", flush=True)
        key = sorted(sim.api_keys)[0]
        symbols = sim.symbols[:8]
        share = _share_option(args)
        if share is not None:
            print(
                "Sharing its feed through Redis. In another terminal, a second process joins it:\n"
                f"  agentx-sync watch {' '.join(symbols)} --url {sim.url} --api-key {key} --share {share}",
                flush=True,
            )
            time.sleep(3)  # time to read it before the screen takes over
        ws = AgentExchangeWS(api_key=key, base_url=sim.url, stale_timeout=10, share=share)
        ws.subscribe_ticker(*symbols)
        ws.on_order_update()(lambda order: None)  # orders and portfolio are pushed anyway;
        ws.on_portfolio()(lambda portfolio: None)  # subscribing says we want them
        try:
            return watch(
                ws, symbols, interval=args.interval, duration=args.duration, plain=args.plain, svg=args.svg
            )
        finally:
            ws.close()


def _run_watch(args: argparse.Namespace) -> int:
    ws: BaseClient
    if args.nexgent:
        token = args.token or os.environ.get("NEXGENT_TOKEN")
        agent = args.agent_id or os.environ.get("NEXGENT_AGENT_ID")
        url = args.url or os.environ.get("NEXGENT_API_URL")
        if not (token and agent and url):
            raise CliError("watch --nexgent needs --url, --token and --agent-id (or NEXGENT_* variables)", 2)
        ws = NexgentWS(api_url=url, token=token, agent_id=agent, stale_timeout=70, share=_share_option(args))
        symbols: list[str] = []
    else:
        key = args.api_key or os.environ.get("AGENTEXCHANGE_API_KEY")
        if not key:
            raise CliError("watch needs --api-key (or AGENTEXCHANGE_API_KEY)", 2)
        if not args.symbols:
            raise CliError("watch needs at least one symbol, e.g. agentx-sync watch BTCUSDT ETHUSDT", 2)
        url = args.url or os.environ.get("AGENTEXCHANGE_WS_URL", "ws://localhost:8000")
        try:
            ws = AgentExchangeWS(api_key=key, base_url=url, share=_share_option(args))
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
        symbols = [s.upper() for s in args.symbols]
        ws.subscribe_ticker(*symbols)
        ws.on_order_update()(lambda order: None)
        ws.on_portfolio()(lambda portfolio: None)
    try:
        return watch(
            ws,
            symbols,
            interval=args.interval,
            duration=args.duration,
            plain=args.plain,
            timeout=args.timeout,
            svg=args.svg,
        )
    finally:
        ws.close()


def _share_option(args: argparse.Namespace) -> str | None:
    share: str | None = args.share or os.environ.get("AGENTX_SYNC_SHARE") or None
    if share is None:
        return None
    try:
        import redis  # noqa: F401
    except ImportError:
        raise CliError("--share needs redis-py: pip install 'agentx_sync[redis]'", 2) from None
    if not share.startswith(("redis://", "rediss://", "unix://")):
        raise CliError("--share takes a redis://, rediss:// or unix:// URL", 2)
    return share


def _connect(ws: BaseClient, timeout: float) -> None:
    """Start ``ws`` and block until it is connected; fail at the first refused attempt.

    A command-line user wants to hear at once that the host is unreachable,
    not after ``timeout`` seconds of retries.

    Raises:
        AgentXError: the first attempt failed (the client keeps no retries going).
        TimeoutError: neither a connection nor a failure within ``timeout``.
    """
    ws.start()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if ws.state in (ConnectionState.FAILED, ConnectionState.REPLACED):
            ws.wait_connected(timeout=0)  # raises the fatal error
        event = ws.get_event(timeout=min(left, 0.25))
        if isinstance(event, Connected):
            return
        if isinstance(event, Disconnected) and event.retry_in is not None and event.error is not None:
            raise ConnectionLostError(f"cannot connect to {ws.health().url}: {event.error}")
    raise TimeoutError


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.05 <= value <= 60:
        raise argparse.ArgumentTypeError("must be between 0.05 and 60 seconds")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentx-sync", description="Live trading data for AI agents, without asyncio."
    )
    parser.add_argument("--version", action="version", version=f"agentx-sync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("sim", help="run a simulator until Ctrl-C")
    sim.add_argument("--dialect", choices=("agentexchange", "nexgent"), default="agentexchange")
    sim.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    sim.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks one)")
    sim.add_argument("--symbols", type=_symbols, default=_symbols("BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT"))
    sim.add_argument("--rate", type=float, default=20.0, help="ticker messages per second in all")
    sim.add_argument("--api-key", action="append", help="accepted api key (repeatable; default ak_test)")
    sim.add_argument("--ping-interval", type=float, default=30.0, help="seconds between server pings")
    sim.add_argument("--auto-trade", type=float, default=None, help="a random order every N seconds per key")
    sim.add_argument("--duration", type=float, default=None, help="stop after N seconds")

    for name, text in (("demo", "start the simulator and watch it live"), ("watch", "show a live table")):
        cmd = commands.add_parser(name, help=text, description=text)
        cmd.add_argument(
            "--interval", type=_interval, default=0.5, help="seconds between redraws (0.05 to 60)"
        )
        cmd.add_argument("--duration", type=float, default=None, help="stop after N seconds")
        cmd.add_argument("--plain", action="store_true", help="print plain text, no live redraw")
        cmd.add_argument("--svg", metavar="PATH", help="at the end, save the last screen as an SVG image")
        cmd.add_argument(
            "--share",
            metavar="REDIS_URL",
            help="share one connection with other processes through Redis (or AGENTX_SYNC_SHARE)",
        )
        if name == "demo":
            cmd.add_argument(
                "--symbols", type=_symbols, default=_symbols("BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT")
            )
            cmd.add_argument("--rate", type=float, default=20.0, help="ticker messages per second in all")
            cmd.add_argument("--auto-trade", type=float, default=3.0, help="a random order every N seconds")
            cmd.add_argument("--seed", type=int, default=None)
        else:
            cmd.add_argument("symbols", nargs="*", help="trading pairs, e.g. BTCUSDT ETHUSDT")
            cmd.add_argument("--url", help="ws(s):// or http(s):// URL of the platform")
            cmd.add_argument("--api-key", help="AgentExchange api key (or AGENTEXCHANGE_API_KEY)")
            cmd.add_argument("--nexgent", action="store_true", help="watch Nexgent positions instead")
            cmd.add_argument("--token", help="Nexgent JWT (or NEXGENT_TOKEN)")
            cmd.add_argument("--agent-id", help="Nexgent agent id (or NEXGENT_AGENT_ID)")
            cmd.add_argument("--timeout", type=float, default=10.0, help="seconds allowed to connect")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run = {"sim": _run_sim, "demo": _run_demo, "watch": _run_watch}[args.command]
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\nStopped.", file=sys.stderr)
        return 0
    except BrokenPipeError:
        # The reader went away (`agentx-sync watch --plain | head`): end quietly,
        # and keep Python from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except CliError as exc:
        print(f"agentx-sync: {exc}", file=sys.stderr)
        return exc.status
    except OSError as exc:
        print(f"agentx-sync: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
