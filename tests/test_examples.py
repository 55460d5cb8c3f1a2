"""Every example runs against the simulator, as a subprocess, and says what it should."""

from __future__ import annotations

import pytest

from agentx_sync.sim import NexgentSimulator, Simulator

from .conftest import EXAMPLES, run_example


def test_seed_price_stream_example_with_only_the_import_changed() -> None:
    seed_import = "from agentx_sync import AgentExchangeWS"
    assert seed_import in (EXAMPLES / "price_stream.py").read_text()
    with Simulator(rate=100) as sim:
        done = run_example(
            "agent_setup.py", {"AGENTEXCHANGE_API_KEY": "ak_test", "AGENTEXCHANGE_WS_URL": sim.url}
        )
    assert done.returncode == 0, done.stderr
    assert "BTC (from cache): $" in done.stdout
    assert "BTC (library cache): $" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("script", ["nexgent_positions.py", "nexgent_positions_async.py"])
def test_nexgent_positions_example_runs_threaded_and_under_asyncio(script: str) -> None:
    with NexgentSimulator(price_interval=0.2) as sim:
        agent = sim.add_agent()
        sim.open_position(agent, symbol="BONK", purchase_price=0.00002, amount=10_000, notify=False)
        sim.open_position(agent, symbol="WIF", purchase_price=0.012, amount=10, notify=False)
        done = run_example(
            script,
            {
                "NEXGENT_API_URL": sim.url.replace("ws://", "http://"),
                "NEXGENT_TOKEN": sim.issue_token(),
                "NEXGENT_AGENT_ID": agent,
                "DURATION": "1.5",
            },
        )
    assert done.returncode == 0, done.stderr
    assert f"Connected to agent: {agent}" in done.stdout
    assert "Received 2 positions" in done.stdout
    assert done.stdout.count("  BONK: ") >= 3  # initial data, then price batches
    assert "Traceback" not in done.stderr
    assert "never awaited" not in done.stderr
