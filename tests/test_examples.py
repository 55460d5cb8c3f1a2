"""Every example runs against the simulator, as a subprocess, and says what it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agentx_sync.sim import Simulator

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(script: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_seed_price_stream_example_with_only_the_import_changed() -> None:
    seed_import = "from agentx_sync import AgentExchangeWS"
    assert seed_import in (EXAMPLES / "price_stream.py").read_text()
    with Simulator(rate=100) as sim:
        done = run("agent_setup.py", {"AGENTEXCHANGE_API_KEY": "ak_test", "AGENTEXCHANGE_WS_URL": sim.url})
    assert done.returncode == 0, done.stderr
    assert "BTC (from cache): $" in done.stdout
    assert "BTC (library cache): $" in done.stdout
    assert "Traceback" not in done.stderr
