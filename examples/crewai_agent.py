"""CrewAI: the same tools as CrewAI tools over the background stream.

    pip install 'agentx_sync[crewai]'
    AGENTEXCHANGE_API_KEY=ak_test AGENTEXCHANGE_WS_URL=ws://127.0.0.1:8000 python examples/crewai_agent.py

No LLM key is needed to run it: the tools are run the way a crew's agent
runs them. With a real model: ``Agent(role=..., goal=..., tools=tools)``.
"""

import os

from agentx_sync import AgentExchangeWS
from agentx_sync.integrations.crewai import make_tools

ws = AgentExchangeWS(
    api_key=os.environ["AGENTEXCHANGE_API_KEY"],
    base_url=os.environ.get("AGENTEXCHANGE_WS_URL", "ws://localhost:8000"),
)

if __name__ == "__main__":
    ws.start()
    ws.wait_connected(timeout=10)
    tools = {tool.name: tool for tool in make_tools(ws)}
    for tool in tools.values():
        print(f"tool {tool.name}: {tool.description[:60]}...")
    print("get_price ->", tools["get_price"].run(symbol="BTCUSDT"))
    print("get_portfolio ->", tools["get_portfolio"].run())
    print("get_orders ->", tools["get_orders"].run())
    ws.close()
