"""CrewAI tools over a running client (extra ``[crewai]``).

from agentx_sync.integrations.crewai import make_tools
agent = Agent(role=..., tools=make_tools(ws))
"""

from __future__ import annotations

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

    class Tool(BaseTool):
        name: str = spec.name
        description: str = spec.description
        args_schema: type[BaseModel] = schema

        def _run(self, **kwargs: Any) -> str:
            return run(**kwargs)

    Tool.__name__ = Tool.__qualname__ = schema.__name__.removesuffix("Input") + "Tool"
    return Tool()


def make_tools(ws: BaseClient, *, wait: float = 3.0) -> list[BaseTool]:
    """The tools that fit ``ws`` (AgentExchangeWS or NexgentWS), for CrewAI."""
    return [to_crewai(spec) for spec in tools_for(ws, wait=wait)]
