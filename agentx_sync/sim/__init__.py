"""Local simulators of the platforms' servers, for tests, demos and benchmarks.

Needs the ``[sim]`` extra (the ``websockets`` library). Each runs on its own
thread and binds 127.0.0.1 unless told otherwise::

    with Simulator(symbols=["BTCUSDT"], rate=50) as sim:
        ws = AgentExchangeWS(api_key="ak_test", base_url=sim.url)
"""

from __future__ import annotations

from ._server import PreviousSimulatorStoppedWarning
from .agentexchange import DEFAULT_SYMBOLS, AgentExchangeSimulator
from .nexgent import NexgentSimulator

#: The AgentExchange simulator, under the short name the docs use.
Simulator = AgentExchangeSimulator

__all__ = [
    "DEFAULT_SYMBOLS",
    "AgentExchangeSimulator",
    "NexgentSimulator",
    "PreviousSimulatorStoppedWarning",
    "Simulator",
]
