"""Nexgent's Python example, threaded: no asyncio, the same output.

    agentx-sync sim --dialect nexgent      # prints the URL, a token and an agent id
    NEXGENT_API_URL=http://127.0.0.1:8000 NEXGENT_TOKEN=... NEXGENT_AGENT_ID=... \\
        python examples/nexgent_positions.py
"""

import os
import threading

from agentx_sync import NexgentWS

ws = NexgentWS(
    api_url=os.environ.get("NEXGENT_API_URL", "https://your-instance.com"),
    token=os.environ.get("NEXGENT_TOKEN", "your-jwt-token"),
    agent_id=os.environ.get("NEXGENT_AGENT_ID", "your-agent-id"),
)


@ws.on_connect()
def on_connected(event):
    print(f"Connected to agent: {ws.agent_id}")


@ws.on_positions()
def on_positions_update(positions):
    """Called with the whole list after every change (one call per price batch)."""
    for p in positions:
        pnl = p.get("profitLossPercent") or 0
        print(f"  {p['tokenSymbol']}: {pnl:.2f}%")


@ws.on_error()
def on_error(error):
    print(f"Server error: {error}")


if __name__ == "__main__":
    ws.start()
    positions = ws.wait_for_positions(timeout=10)
    print(f"Received {len(positions)} positions")
    duration = os.environ.get("DURATION")
    if duration:
        threading.Timer(float(duration), ws.close).start()
    ws.run_forever()  # until Ctrl-C (or DURATION seconds)
