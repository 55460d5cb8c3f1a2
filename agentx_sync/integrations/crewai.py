"""CrewAI tools over a running client (extra ``[crewai]``).

from agentx_sync.integrations.crewai import make_tools
agent = Agent(role=..., tools=make_tools(ws))
"""

from __future__ import annotations

import json
from typing import Any

try:
    from crewai.tools import BaseTool
    from pydantic import BaseModel, Field, create_model
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "agentx_sync.integrations.crewai needs crewai: pip install 'agentx_sync[crewai]'"
    ) from exc

from ..client import BaseClient
from .tools import ToolSpec, tools_for

__all__ = ["make_tools", "to_crewai"]


def to_crewai(spec: ToolSpec) -> BaseTool:
    """One framework-free tool as a CrewAI ``BaseTool``."""
    fields: dict[str, Any] = {
        name: (kind, Field(default=default, description=text))
        for name, (kind, text, default) in spec.args.items()
    }
    schema: type[BaseModel] = create_model(f"{spec.name.title().replace('_', '')}Input", **fields)
    run = spec.run
    names = list(spec.args)

    class Tool(BaseTool):
        name: str = spec.name
        description: str = spec.description
        args_schema: type[BaseModel] = schema

        def _run(self, *args: Any, **kwargs: Any) -> str:
            # CrewAI agents also call tool.run("BTCUSDT") or tool.run('{"symbol": "BTCUSDT"}').
            if len(args) == 1 and isinstance(args[0], str) and args[0].lstrip().startswith("{"):
                try:
                    given = json.loads(args[0])
                except ValueError:
                    given = None
                if isinstance(given, dict):
                    args, kwargs = (), {**given, **kwargs}
            if len(args) > len(names):
                return f"{spec.name} takes {len(names)} argument(s): {', '.join(names) or 'none'}."
            kwargs = {**dict(zip(names, args, strict=False)), **kwargs}
            unknown = ", ".join(sorted(set(kwargs) - set(names)))
            if unknown:
                return f"{spec.name} has no argument {unknown}; it takes: {', '.join(names) or 'none'}."
            return run(**kwargs)

    Tool.__name__ = Tool.__qualname__ = schema.__name__.removesuffix("Input") + "Tool"
    return Tool()


def make_tools(ws: BaseClient, *, wait: float = 3.0) -> list[BaseTool]:
    """The tools that fit ``ws`` (AgentExchangeWS or NexgentWS), for CrewAI."""
    return [to_crewai(spec) for spec in tools_for(ws, wait=wait)]
