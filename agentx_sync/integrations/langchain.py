"""LangChain tools over a running client (extra ``[langchain]``: langchain-core).

from agentx_sync.integrations.langchain import make_tools
tools = make_tools(ws)            # StructuredTool objects, with argument schemas
tools[0].invoke({"symbol": "BTCUSDT"})
"""

from __future__ import annotations

from typing import Any

try:
    from langchain_core.tools import StructuredTool
    from pydantic import Field, create_model
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "agentx_sync.integrations.langchain needs langchain-core: pip install 'agentx_sync[langchain]'"
    ) from exc

from ..client import BaseClient
from .tools import ToolSpec, tools_for

__all__ = ["make_tools", "to_langchain"]


def to_langchain(spec: ToolSpec) -> StructuredTool:
    """One framework-free tool as a LangChain ``StructuredTool``."""
    fields: dict[str, Any] = {
        name: (kind, Field(default=default, description=text))
        for name, (kind, text, default) in spec.args.items()
    }
    schema = create_model(f"{spec.name.title().replace('_', '')}Input", **fields)
    return StructuredTool.from_function(
        func=spec.run, name=spec.name, description=spec.description, args_schema=schema
    )


def make_tools(ws: BaseClient, *, wait: float = 3.0) -> list[StructuredTool]:
    """The tools that fit ``ws`` (AgentExchangeWS or NexgentWS), for LangChain."""
    return [to_langchain(spec) for spec in tools_for(ws, wait=wait)]
