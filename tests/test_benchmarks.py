"""The benchmark suite runs: each worker against its own loopback feed, briefly.

These check that benchmarks/ works and counts what it says, never how fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        env={**os.environ, "AGENTX_SYNC_JSON": "stdlib"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def worker(name: str, messages: int) -> dict[str, Any]:
    return dict(json.loads(run("run.py", "--worker", name, "--messages", str(messages)).splitlines()[-1]))


@pytest.mark.parametrize("name", ["B", "websockets", "agentx", "agentx-cb", "contention", "cpu-agentx-co"])
def test_each_receive_loop_takes_in_every_message(name: str) -> None:
    result = worker(name, 5_000)
    assert result["msgs"] >= 5_000 and result["wall"] > 0 and result["cpu"] > 0
    if name == "agentx-cb":
        assert result["dropped_callbacks"] == 0
    if name == "contention":
        assert result["reads"] > 0 and result["stall"] > 0


def test_latency_is_measured_per_message() -> None:
    result = worker("latency-each", 3_000)
    assert len(result["cache"]) >= 3_000 and len(result["callback"]) >= 3_000
    assert all(0 < x < 5 for x in result["cache"])


def test_breakdown_prints_every_stage() -> None:
    out = run("breakdown.py")
    assert "the whole read, under the batch lock" in out
    assert out.count("\n|") == 7  # header, rule, five stages
