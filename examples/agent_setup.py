"""The seed's "Then in your agent setup" part, runnable against the simulator.

agentx-sync sim &          # or any AgentExchange server
AGENTEXCHANGE_API_KEY=ak_test AGENTEXCHANGE_WS_URL=ws://127.0.0.1:8000 python examples/agent_setup.py
"""

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from price_stream import get_cached_price, start_stream, ws

# Start the feed before the agent loop
start_stream()

# Later, in any tool function:
tick = threading.Event()
for _ in range(50):
    price = get_cached_price("BTCUSDT")
    if price:
        print(f"BTC (from cache): ${price}")
        break
    tick.wait(0.1)
else:
    print("no BTC price yet", ws.health().last_error)
    sys.exit(1)

# The library's own cache needs no hand-written lock or dict:
print(f"BTC (library cache): ${ws.wait_for_price('BTCUSDT', timeout=5)}")
ws.close()
