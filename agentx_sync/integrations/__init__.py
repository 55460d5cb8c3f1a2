"""Integrations with agent frameworks and notebooks; each imports its framework lazily.

- :mod:`agentx_sync.integrations.langchain` (extra ``[langchain]``)
- :mod:`agentx_sync.integrations.crewai` (extra ``[crewai]``)
- :mod:`agentx_sync.integrations.jupyter` (extra ``[jupyter]``)

Importing this package imports none of them.
"""

__all__: list[str] = []
