"""Agent tools through the frameworks' own interfaces, Jupyter, and lazy imports."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from agentx_sync import AgentExchangeWS, ConnectionState, NexgentWS
from agentx_sync.client import PreviousClientClosedWarning
from agentx_sync.sim import NexgentSimulator, Simulator

from .conftest import EXAMPLES, FAST, eventually, run_example

Make = Callable[..., AgentExchangeWS]


def test_frameworks_are_imported_only_with_their_module() -> None:
    code = (
        "import sys, agentx_sync, agentx_sync.integrations, agentx_sync.integrations.tools; "
        "print(sorted(m for m in ('langchain_core', 'crewai', 'IPython', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_langchain_tools_through_invoke(sim: Simulator, client: Make) -> None:
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import BaseTool

    from agentx_sync.integrations.langchain import make_tools

    ws = client()
    ws.start().wait_connected(5)
    tools = {t.name: t for t in make_tools(ws, wait=2)}
    assert set(tools) == {"get_price", "get_orders", "get_portfolio"}
    assert all(isinstance(t, BaseTool) and t.description for t in tools.values())
    assert tools["get_price"].args["symbol"]["description"].startswith("The trading pair")

    answer = tools["get_price"].invoke({"symbol": "btcusdt"})  # waits briefly for a first price
    assert answer.startswith("BTCUSDT: ") and " old)" in answer
    assert str(ws.get_cached_price("BTCUSDT"))[:3] in answer
    unknown = tools["get_price"].invoke({"symbol": "NOPEUSDT"})
    assert unknown.startswith("No price for NOPEUSDT yet")

    assert tools["get_portfolio"].invoke({}).startswith("No portfolio snapshot yet")
    ws.wait_for_order(sim.place_order("ETHUSDT", "buy", "0.5"), timeout=5)
    order_id = sim.place_order("ETHUSDT", "sell", "0.3")
    ws.wait_for_order(order_id, timeout=5)
    eventually(lambda: ws.get_portfolio() is not None)
    assert "Total equity" in tools["get_portfolio"].invoke({})
    assert f"{order_id}: sell 0.3 ETHUSDT filled at" in tools["get_orders"].invoke({})
    assert tools["get_orders"].invoke({"order_id": "missing"}).startswith("No update for order missing")

    # The way an agent executor calls a tool: a tool call in, a ToolMessage out.
    message = tools["get_price"].invoke(
        {"name": "get_price", "args": {"symbol": "ETHUSDT"}, "id": "c1", "type": "tool_call"}
    )
    assert (
        isinstance(message, ToolMessage)
        and message.tool_call_id == "c1"
        and isinstance(message.content, str)
        and message.content.startswith("ETHUSDT: ")
    )
    with pytest.raises(Exception, match="symbol"):
        tools["get_price"].invoke({})  # the schema requires a symbol


def test_langchain_positions_tool_for_nexgent(
    nsim: NexgentSimulator, agent: str, nclient: Callable[..., NexgentWS]
) -> None:
    from agentx_sync.integrations.langchain import make_tools

    raw = nsim.open_position(agent, symbol="BONK", purchase_price=0.0001, amount=1000, notify=False)
    ws = nclient()
    ws.start().wait_for_positions(5)
    tools = {t.name: t for t in make_tools(ws, wait=5)}
    assert set(tools) == {"get_positions", "get_token_price"}
    nsim.send_prices(agent, {raw["tokenAddress"]: 0.00015})
    eventually(lambda: ws.get_cached_price(raw["tokenAddress"]) == Decimal("0.00015"))
    positions = tools["get_positions"].invoke({})
    # Both names of the token: the symbol an LLM reads, the address the price tool takes.
    assert positions.startswith(f"BONK ({raw['tokenAddress']}): holding 1000") and "P/L 50.00%" in positions
    price = tools["get_token_price"].invoke({"token_address": raw["tokenAddress"].upper()})
    assert "0.00015 SOL" in price
    # The symbol the positions tool shows works as well (it said "not held" before).
    by_symbol = tools["get_token_price"].invoke({"token_address": "bonk"})
    assert by_symbol.startswith(f"BONK ({raw['tokenAddress']}): 0.00015 SOL"), by_symbol
    assert "prices come only for tokens the agent holds" in tools["get_token_price"].invoke(
        {"token_address": "WIF"}
    )


def test_tools_say_when_the_connection_is_down(sim: Simulator, client: Make) -> None:
    from agentx_sync.integrations.tools import tools_for

    ws = client()
    ws.start().wait_connected(5)
    get_price = next(t for t in tools_for(ws) if t.name == "get_price").run
    assert "connection" not in get_price(symbol="BTCUSDT")
    sim.stop_listening()
    eventually(lambda: ws.state is not ConnectionState.CONNECTED)
    assert "may be stale" in get_price(symbol="BTCUSDT")


def test_close_previous_closes_the_previous_client_for_the_same_key(sim: Simulator) -> None:
    first = AgentExchangeWS(api_key="ak_test", base_url=sim.url, close_previous=True).start()
    first.wait_connected(5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = AgentExchangeWS(api_key="ak_test", base_url=sim.url, close_previous=True).start()
    try:
        assert first.state is ConnectionState.CLOSED
        assert any(issubclass(w.category, PreviousClientClosedWarning) for w in caught)
        assert "ak_test" not in str(caught[0].message)
        second.wait_connected(5)
        other_key = AgentExchangeWS(api_key="ak_other", base_url=sim.url, close_previous=True)
        sim.allow_key("ak_other")
        other_key.start().wait_connected(5)
        assert second.connected  # a different key is a different client
        assert other_key.close(2)
    finally:
        assert second.close(2) and first.close(2)


def test_two_clients_for_one_key_in_a_plain_script_both_keep_running(sim: Simulator) -> None:
    # Regression: close_previous was on by default everywhere, so two CrewAI
    # tools (or two threads) with the same key closed each other.
    first = AgentExchangeWS(api_key="ak_test", base_url=sim.url, backoff=FAST)
    second = AgentExchangeWS(api_key="ak_test", base_url=sim.url, backoff=FAST)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no PreviousClientClosedWarning either
            first.start().wait_connected(5)
            second.start().wait_connected(5)
        assert first.wait_for_price("BTCUSDT", 5) > 0 and second.wait_for_price("BTCUSDT", 5) > 0
        assert first.connected and second.connected
    finally:
        assert first.close(2) and second.close(2)


def test_importing_the_library_leaves_the_warning_filters_alone() -> None:
    code = (
        "import warnings; before = list(warnings.filters); import agentx_sync, agentx_sync.client; "
        "assert warnings.filters == before, warnings.filters[:3]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_inside_ipython_the_default_replaces_a_rerun_cell(sim: Simulator) -> None:
    code = f"""
import warnings
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
cell = "ws = AgentExchangeWS(api_key='ak_test', base_url={sim.url!r}).start(); ws.wait_connected(5)"
shell.run_cell("from agentx_sync import AgentExchangeWS")
shell.run_cell(cell)
first = shell.user_ns["ws"]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    shell.run_cell(cell)
second = shell.user_ns["ws"]
assert first is not second and first.state.value == "closed", first.state
assert second.connected and any("closed the running" in str(w.message) for w in caught)
assert second.close(2)
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_repr_and_html_show_state_prices_and_errors(sim: Simulator, client: Make) -> None:
    ws = client()
    ws.subscribe_ticker("BTCUSDT")
    ws.start().wait_for_price("BTCUSDT", 5)
    sim.send_raw("junk")
    eventually(lambda: ws.health().last_error)
    text = repr(ws)
    assert "state=connected" in text and "prices=" in text and "ProtocolError" in text
    page = ws._repr_html_()
    assert "<table>" in page and "BTCUSDT" in page and "connected" in page and "ProtocolError" in page
    assert "ak_test" not in text + page


@pytest.mark.foreign_sockets  # jupyter_client's ZeroMQ sockets outlive the kernel; threads are still checked
def test_notebook_runs_top_to_bottom_with_a_real_kernel() -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    env_path = os.environ.get("PATH", "")
    os.environ["PATH"] = (
        f"{Path(sys.executable).parent}{os.pathsep}{env_path}"  # the kernel: this venv's python
    )
    try:
        NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    finally:
        os.environ["PATH"] = env_path
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {})) for o in outputs)
    assert not [o for o in outputs if o.output_type == "error"]
    assert "AgentExchangeWS" in text and "<table>" in text  # the rich repr
    assert "PreviousClientClosedWarning" in text and "previous client: closed" in text
    assert "filled" in text
    assert "previous view running: False" in text
    updates = int(text.split("live view refreshed ")[1].split()[0])
    assert updates >= 2


def test_langchain_example_runs_without_an_llm_key() -> None:
    with Simulator(rate=100, auto_trade=0.2) as sim:
        done = run_example(
            "langchain_agent.py", {"AGENTEXCHANGE_API_KEY": "ak_test", "AGENTEXCHANGE_WS_URL": sim.url}
        )
    assert done.returncode == 0, done.stderr
    assert "get_price{'symbol': 'BTCUSDT'} -> BTCUSDT: " in done.stdout
    assert "get_price{'symbol': 'ethusdt'} -> ETHUSDT: " in done.stdout


def test_strategy_and_order_tracking_examples() -> None:
    with Simulator(rate=200, auto_trade=0.2) as sim:
        env = {"AGENTEXCHANGE_API_KEY": "ak_test", "AGENTEXCHANGE_WS_URL": sim.url}
        strategy = run_example(
            "strategy_loop.py", {**env, "ITERATIONS": "3", "INTERVAL": "0.2", "THRESHOLD": "1000000"}
        )
        orders = run_example("order_tracking.py", {**env, "ORDERS": "2"})
    assert strategy.returncode == 0, strategy.stderr
    assert strategy.stdout.count("holding") == 3 and "pairs in the cache" in strategy.stdout
    assert orders.returncode == 0, orders.stderr
    assert orders.stdout.count("filled: ") + orders.stdout.count("not filled: ") == 2
    assert "→ pending" in orders.stdout and "tracked 2 orders" in orders.stdout


def test_crewai_tools_throughrun_example(sim: Simulator, client: Make) -> None:
    from crewai.tools import BaseTool

    from agentx_sync.integrations.crewai import make_tools

    ws = client()
    ws.start().wait_connected(5)
    tools = {t.name: t for t in make_tools(ws, wait=2)}
    assert all(isinstance(t, BaseTool) for t in tools.values())
    assert tools["get_price"].run(symbol="BTCUSDT").startswith("BTCUSDT: ")
    # CrewAI agents also pass the argument positionally, or as a JSON string.
    assert tools["get_price"].run("BTCUSDT").startswith("BTCUSDT: ")
    assert tools["get_price"].run('{"symbol": "BTCUSDT"}').startswith("BTCUSDT: ")
    assert tools["get_price"].run("BTCUSDT", "ETHUSDT") == "get_price takes 1 argument(s): symbol."
    assert tools["get_portfolio"].run().startswith("No portfolio snapshot yet")
    done = run_example(
        "crewai_agent.py", {"AGENTEXCHANGE_API_KEY": "ak_test", "AGENTEXCHANGE_WS_URL": sim.url}
    )
    assert done.returncode == 0, done.stderr
    assert "get_price -> BTCUSDT: " in done.stdout


def test_an_llm_guessing_symbols_never_holds_or_widens_subscriptions(sim: Simulator, client: Make) -> None:
    # Toward "tools an LLM cannot misuse": an unknown symbol cost a slot for good,
    # and about ten guesses moved the whole connection to ticker_all.
    from agentx_sync.integrations.tools import agentexchange_tools

    ws = client()
    ws.subscribe_ticker(*[f"S{i}USDT" for i in range(9)], "BTCUSDT")  # every slot taken
    ws.start().wait_connected(5)
    eventually(lambda: len(ws.health().subscriptions) == 10, what="ten subscriptions")
    tools = {t.name: t for t in agentexchange_tools(ws, wait=0.3)}
    answer = tools["get_price"].run(symbol="NOPEUSDT")
    assert answer.startswith("No price for NOPEUSDT") and "10 subscriptions" in answer
    ws.unsubscribe_ticker("S0USDT")  # one slot free: a guess may use it, then gives it back
    eventually(lambda: len(ws.health().subscriptions) == 9, what="a free slot")
    assert "none arrived within" in tools["get_price"].run(symbol="NOPEUSDT")
    eventually(lambda: "ticker:NOPEUSDT" not in ws.health().subscriptions, what="the guess to be dropped")
    assert "NOPEUSDT" not in ws.subscriptions()
    sent = len(sim.received())
    assert "just now" in tools["get_price"].run(symbol="nopeusdt")  # answered at once, from memory
    assert len(sim.received()) == sent
    for i in range(12):
        tools["get_price"].run(symbol=f"GUESS{i}USDT")
    assert all(m.get("channel") != "ticker_all" for m in sim.received() if isinstance(m, dict))
    assert tools["get_price"].run(symbol="BTCUSDT").startswith("BTCUSDT: ")


def test_the_replace_warning_points_at_the_users_line(sim: Simulator) -> None:
    first = AgentExchangeWS(api_key="ak_test", base_url=sim.url, close_previous=True).start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = AgentExchangeWS(api_key="ak_test", base_url=sim.url, close_previous=True).start()
    try:
        replaced = [w for w in caught if issubclass(w.category, PreviousClientClosedWarning)]
        assert replaced and replaced[0].filename == __file__, replaced[0].filename
    finally:
        assert second.close(2) and first.close(2)


def test_rerunning_a_notebook_cell_with_a_simulator_and_a_client_leaves_neither_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cell ``sim = Simulator().start(); ws = AgentExchangeWS(..., base_url=sim.url).start()``, run twice."""
    import agentx_sync.client
    import agentx_sync.sim._server
    from agentx_sync.sim import PreviousSimulatorStoppedWarning

    monkeypatch.setattr(agentx_sync.client, "_interactive", lambda: True)
    monkeypatch.setattr(agentx_sync.sim._server, "_interactive", lambda: True)

    def cell() -> tuple[Simulator, AgentExchangeWS]:
        sim = Simulator(rate=50).start()
        ws = AgentExchangeWS(api_key="ak_test", base_url=sim.url).start()
        ws.wait_connected(5)
        return sim, ws

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old_sim, old_ws = cell()
        new_sim, new_ws = cell()  # a fresh port: a different endpoint, the same credentials
    try:
        assert old_ws.state is ConnectionState.CLOSED  # not left connected, nor retrying
        assert (old_sim.connections() == [] and old_sim.loop is None) or old_sim._thread is None
        assert new_ws.connected and len(new_sim.connections()) == 1
        kinds = {w.category for w in caught}
        assert PreviousSimulatorStoppedWarning in kinds and PreviousClientClosedWarning in kinds
        assert all(
            w.filename == __file__
            for w in caught
            if w.category in (PreviousSimulatorStoppedWarning, PreviousClientClosedWarning)
        )
    finally:
        assert new_ws.close(2) and old_ws.close(2)
        new_sim.stop()
        old_sim.stop()


def test_rerunning_the_live_view_cell_replaces_the_view(sim: Simulator, client: Make) -> None:
    from agentx_sync.integrations.jupyter import live_view

    ws = client()
    ws.start().wait_connected(5)
    first = live_view(ws, interval=0.05)
    eventually(lambda: first.updates >= 1, what="a refresh")
    second = live_view(ws, interval=0.05)  # the cell, run again
    try:
        assert not first.running and second.running
        assert [t.name for t in threading.enumerate()].count("agentx-sync-live") == 1
        eventually(lambda: second.updates >= 1, what="the new view's refresh")
        before = first.updates
        eventually(lambda: second.updates >= 3, what="more refreshes")
        assert first.updates == before  # the old view no longer refreshes
    finally:
        assert second.stop() and first.stop()
