"""The sans-IO core imports no sockets, websocket, select, ssl, and never sleeps."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import agentx_sync

ROOT = Path(agentx_sync.__file__).parent
PURE = sorted(
    [
        *ROOT.glob("dialects/*.py"),
        ROOT / "models.py",
        ROOT / "numbers.py",
        ROOT / "state.py",
        ROOT / "backoff.py",
        ROOT / "frames.py",
    ]
)
FORBIDDEN = {"socket", "websocket", "websockets", "select", "selectors", "ssl", "asyncio", "logging"}


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            if isinstance(node, ast.Attribute) and node.attr == "sleep":
                raise AssertionError(f"{path.name} calls sleep")
            continue
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
