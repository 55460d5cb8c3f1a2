"""Every module's ``__all__`` is sorted, names only what exists, and lists every public definition."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import agentx_sync
from agentx_sync import errors


def modules() -> list[ModuleType]:
    found = [agentx_sync]
    for info in pkgutil.walk_packages(agentx_sync.__path__, "agentx_sync."):
        found.append(importlib.import_module(info.name))
    return found


def ruff_order(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""
    if name.isupper() and len(name) > 1:
        return (0, name)
    return (1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize("module", modules(), ids=lambda m: m.__name__)
def test_all_is_sorted_real_and_complete(module: ModuleType) -> None:
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{module.__name__} has no __all__"
    assert list(exported) == sorted(exported, key=ruff_order)
    assert len(set(exported)) == len(exported)
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{module.__name__}.__all__ names what does not exist: {missing}"
    public = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    ]
    unlisted = sorted(set(public) - set(exported))
    assert not unlisted, f"{module.__name__} defines public names missing from __all__: {unlisted}"


def test_the_package_exports_every_error() -> None:
    raised = {name for name in errors.__all__ if isinstance(getattr(errors, name), type)}
    assert raised <= set(agentx_sync.__all__), sorted(raised - set(agentx_sync.__all__))
