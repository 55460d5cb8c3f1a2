"""LangChain: the stream runs in the background, the agent's tools read the cache.

    pip install 'agentx_sync[langchain]'
    AGENTEXCHANGE_API_KEY=ak_test AGENTEXCHANGE_WS_URL=ws://127.0.0.1:8000 python examples/langchain_agent.py

No LLM key is needed to run it: the tools are called the way an agent
executor calls them (a tool call in, a ToolMessage out). With a real model,
pass ``tools`` to ``create_react_agent`` or ``model.bind_tools(tools)``.
"""

import os

from agentx_sync import AgentExchangeWS
from agentx_sync.integrations.langchain import make_tools

ws = AgentExchangeWS(
    api_key=os.environ["AGENTEXCHANGE_API_KEY"],
    base_url=os.environ.get("AGENTEXCHANGE_WS_URL", "ws://localhost:8000"),
)

if __name__ == "__main__":
    ws.start()  # the stream, in the background, before the agent loop
    ws.wait_connected(timeout=10)
    tools = {tool.name: tool for tool in make_tools(ws)}
    for tool in tools.values():
        print(f"tool {tool.name}({', '.join(tool.args)}): {tool.description[:60]}...")

    # What an agent executor does with the model's tool calls:
    calls = [
        {"name": "get_price", "args": {"symbol": "BTCUSDT"}, "id": "call-1", "type": "tool_call"},
        {"name": "get_price", "args": {"symbol": "ethusdt"}, "id": "call-2", "type": "tool_call"},
        {"name": "get_portfolio", "args": {}, "id": "call-3", "type": "tool_call"},
        {"name": "get_orders", "args": {}, "id": "call-4", "type": "tool_call"},
    ]
    for call in calls:
        message = tools[call["name"]].invoke(call)
        print(f"{call['name']}{call['args']} -> {message.content}")
    ws.close()
