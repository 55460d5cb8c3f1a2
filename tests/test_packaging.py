"""The sdist and the wheel: what a user downloads holds what the README promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy: setuptools leaves build/ behind, and a stale build/lib
    # of the checkout could slip removed modules into the wheel.
    tree = tmp_path_factory.mktemp("tree") / "src"
    junk = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache")
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*junk, ".pytest_cache", ".hypothesis"))
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation", "--outdir", str(out)]
    subprocess.run([*command, str(tree)], check=True, capture_output=True, timeout=300)
    return out


def tracked(*folders: str) -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", *folders], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name for name in listed if not name.endswith(".gitignore")}


def test_the_sdist_holds_the_tests_examples_and_every_file_the_readme_links(dist: Path) -> None:
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    folders = ("tests", "examples", "benchmarks", "agentx_sync")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the list of tracked files is unknown")
    missing = tracked(*folders) - names
    assert not missing, f"tracked files missing from the sdist: {sorted(missing)}"
    readme = (ROOT / "README.md").read_text()
    links = {m for m in re.findall(r"\]\(([^)#\s]+)\)", readme) if "://" not in m}
    assert links and not links - names, f"README links to files the sdist lacks: {sorted(links - names)}"
    for name in ("LICENSE", "CHANGELOG.md", "README.md", "setup.cfg", "setup.py", "pyproject.toml"):
        assert name in names


def test_the_wheel_has_the_package_and_its_metadata(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert "agentx_sync/py.typed" in names and "agentx_sync/sim/_account.py" in names
    assert not any(n.startswith("tests/") for n in names)
    assert "License-File: LICENSE" in metadata or "License: MIT" in metadata
    assert "Requires-Dist: websocket-client<2,>=1.9.1" in metadata
    assert re.search(r"Provides-Extra: sim", metadata)
