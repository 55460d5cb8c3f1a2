"""Nexgent's Python example, asyncio form: ``await ws.connect()`` and ``async def`` handlers.

The document's example is a class around ``websockets``; with agentx_sync the
same program is a client and three handlers. The handlers run on this event
loop, one at a time, while the client's IO thread keeps the connection.

    agentx-sync sim --dialect nexgent      # prints the URL, a token and an agent id
    NEXGENT_API_URL=http://127.0.0.1:8000 NEXGENT_TOKEN=... NEXGENT_AGENT_ID=... \\
        python examples/nexgent_positions_async.py
"""

import asyncio
import os

from agentx_sync import NexgentWS

ws = NexgentWS(
    api_url=os.environ.get("NEXGENT_API_URL", "https://your-instance.com"),
    token=os.environ.get("NEXGENT_TOKEN", "your-jwt-token"),
    agent_id=os.environ.get("NEXGENT_AGENT_ID", "your-agent-id"),
)
received = False


@ws.on_connect()
async def on_connected(event):
    print(f"Connected to agent: {ws.agent_id}")


@ws.on_positions()
async def on_positions_update(positions):
    """Called with the whole list after every change (one call per price batch)."""
    global received
    if not received:
        received = True
        print(f"Received {len(positions)} positions")
    for p in positions:
        pnl = p.get("profitLossPercent") or 0
        print(f"  {p['tokenSymbol']}: {pnl:.2f}%")


@ws.on_error()
async def on_error(error):
    print(f"Server error: {error}")


async def main():
    duration = os.environ.get("DURATION")
    if duration:
        asyncio.get_running_loop().call_later(float(duration), ws.close)
    await ws.connect()  # until Ctrl-C (or DURATION seconds)


if __name__ == "__main__":
    asyncio.run(main())
