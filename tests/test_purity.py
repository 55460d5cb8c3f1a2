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
        ROOT / "session.py",
    ]
)
#: The sans-IO core proper: no threads and no clock either (the caller passes the time in).
CORE = sorted(
    [
        *ROOT.glob("dialects/*.py"),
        ROOT / "frames.py",
        ROOT / "session.py",
        ROOT / "backoff.py",
        ROOT / "models.py",
        ROOT / "numbers.py",
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


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_has_no_threads_and_reads_no_clock(path: Path) -> None:
    for name in _imports(path):
        assert name.split(".")[0] not in {"threading", "time", "_thread"}, f"{path.name} imports {name}"
    clocks = {"now", "utcnow", "today", "monotonic", "time", "perf_counter"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in clocks, f"{path.name} reads the clock (.{node.func.attr}())"


def test_the_cache_imports_no_dialect() -> None:
    names = _imports(ROOT / "state.py")
    assert not [n for n in names if "dialects" in n], names
