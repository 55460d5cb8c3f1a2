"""The ``agentx-sync`` command: ``sim`` runs the simulator, ``demo`` watches it live."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from .client import AgentExchangeWS
from .errors import AgentXError
from .models import Order, Portfolio

__all__ = ["main"]


def _symbols(text: str) -> list[str] | int:
    return int(text) if text.isdigit() else [s.strip().upper() for s in text.split(",") if s.strip()]


def _simulator(args: argparse.Namespace, **overrides: Any) -> Any:
    try:
        from .sim import NexgentSimulator, Simulator
    except ImportError:
        raise SystemExit(
            "agentx-sync: the simulator needs the [sim] extra: pip install 'agentx_sync[sim]'"
        ) from None
    if getattr(args, "dialect", "agentexchange") == "nexgent":
        return NexgentSimulator(
            host=args.host, port=overrides.get("port", args.port), ping_interval=args.ping_interval
        )
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "symbols": args.symbols,
        "rate": args.rate,
        "api_keys": args.api_key,
        "ping_interval": args.ping_interval,
        "auto_trade": args.auto_trade,
    }
    options.update(overrides)
    return Simulator(**options)


def _run_sim(args: argparse.Namespace) -> int:
    if args.dialect == "nexgent":
        return _run_nexgent_sim(args)
    with _simulator(args) as sim:
        print(f"AgentExchange simulator on {sim.url}  (api keys: {', '.join(sorted(sim.api_keys))})")
        print("Ctrl-C to stop.", flush=True)
        _wait(args.duration)
    return 0


def _run_nexgent_sim(args: argparse.Namespace) -> int:
    with _simulator(args) as sim:
        agent = sim.add_agent("agent-1")
        for symbol, price in (("BONK", 0.00002), ("WIF", 0.012), ("POPCAT", 0.004)):
            sim.open_position(agent, symbol=symbol, purchase_price=price, amount=10_000, notify=False)
        token = sim.issue_token()
        print(f"Nexgent simulator on {sim.url.replace('ws://', 'http://')}")
        print(f"  NEXGENT_API_URL={sim.url.replace('ws://', 'http://')}")
        print(f"  NEXGENT_TOKEN={token}")
        print(f"  NEXGENT_AGENT_ID={agent}")
        print("Ctrl-C to stop.", flush=True)
        _wait(args.duration)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    out_lock = threading.Lock()

    def say(line: str) -> None:
        with out_lock:
            print(line, flush=True)

    with _simulator(args, port=0) as sim:
        say(f"Started the built-in AgentExchange simulator on {sim.url}")
        ws = AgentExchangeWS(api_key=sorted(sim.api_keys)[0], base_url=sim.url, stale_timeout=10)
        symbols = sim.symbols[:5]
        ws.subscribe_ticker(*symbols)

        @ws.on_order_update()
        def on_order(order: Order) -> None:
            price = f" @ {order.executed_price}" if order.executed_price is not None else ""
            what = f"{order.side} {order.quantity} {order.symbol}"
            say(f"  order  {order.order_id[:8]}  {what}  -> {order.status}{price}")

        @ws.on_portfolio()
        def on_portfolio(p: Portfolio) -> None:
            say(f"  portfolio  equity {p.total_equity}  cash {p.available_cash}  pnl {p.unrealized_pnl}")

        with ws:
            try:
                ws.wait_connected(timeout=10)
            except (AgentXError, TimeoutError) as exc:
                say(f"agentx-sync: cannot connect: {exc}")
                return 1
            say(f"Connected: {ws.health().url}.  Live prices follow; Ctrl-C to stop.")
            for symbol in symbols:
                try:
                    ws.wait_for_price(symbol, timeout=2)
                except TimeoutError:
                    break
            deadline = None if args.duration is None else time.monotonic() + args.duration
            while deadline is None or time.monotonic() < deadline:
                prices = "  ".join(
                    f"{s} {ws.get_cached_price(s) if ws.get_cached_price(s) is not None else '-'}"
                    for s in symbols
                )
                say(f"[{time.strftime('%H:%M:%S')}] {ws.state.value:<9} {prices}")
                _wait(1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic())))
            health = ws.health()
            say(f"Done: {health.messages} messages, {health.reconnects} reconnects.")
    return 0


def _wait(seconds: float | None) -> None:
    """Block for ``seconds`` (forever if None), interruptible by Ctrl-C."""
    threading.Event().wait(seconds)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentx-sync", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("sim", "run the AgentExchange simulator until Ctrl-C"),
        ("demo", "start the simulator and show live prices, orders and the portfolio"),
    ):
        cmd = commands.add_parser(name, help=text, description=text)
        cmd.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
        cmd.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks one)")
        cmd.add_argument(
            "--symbols",
            type=_symbols,
            default="BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT",
            help="comma-separated symbols, or a count of generated ones",
        )
        cmd.add_argument("--rate", type=float, default=20.0, help="ticker messages per second in all")
        cmd.add_argument("--api-key", action="append", default=None, help="accepted api key (repeatable)")
        cmd.add_argument("--ping-interval", type=float, default=30.0, help="seconds between server pings")
        cmd.add_argument(
            "--auto-trade",
            type=float,
            default=3.0 if name == "demo" else None,
            help="place a random order every N seconds for each connected key",
        )
        cmd.add_argument("--duration", type=float, default=None, help="stop after N seconds")
        if name == "sim":
            cmd.add_argument(
                "--dialect",
                choices=("agentexchange", "nexgent"),
                default="agentexchange",
                help="which server",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if isinstance(args.symbols, str):
        args.symbols = _symbols(args.symbols)
    args.api_key = args.api_key or ["ak_test"]
    try:
        return _run_sim(args) if args.command == "sim" else _run_demo(args)
    except KeyboardInterrupt:
        print("\nStopped.", file=sys.stderr)
        return 0
    except OSError as exc:
        print(f"agentx-sync: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
