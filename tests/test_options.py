"""The options record: validated once, at construction, and never shows a proxy's password."""

from __future__ import annotations

import pytest

from agentx_sync import AgentExchangeWS, NexgentWS
from agentx_sync.options import Options


@pytest.mark.parametrize(
    "bad",
    [
        {"stale_timeout": 0},
        {"connect_timeout": -1},
        {"event_queue_size": 0},
        {"callback_queue_size": 1.5},
        {"max_message_size": 0},
        {"coalesce": 2},
        {"coalesce": 11, "stale_timeout": 40},
        {"proxy": "socks5://127.0.0.1:1080"},
    ],
)
def test_bad_options_fail_the_constructor_of_either_client(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Options(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AgentExchangeWS(api_key="ak_test", base_url="ws://127.0.0.1:1", **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        NexgentWS(api_url="http://127.0.0.1:1", token="t", agent_id="a", **bad)  # type: ignore[arg-type]


def test_the_record_reaches_the_connection_and_hides_the_proxy() -> None:
    ws = NexgentWS(
        api_url="http://127.0.0.1:1",
        token="t",
        agent_id="a",
        coalesce=0.02,
        proxy="http://u:s3cret@127.0.0.1:3128",
    )
    assert ws.options.stale_timeout == 70.0 and ws.options.coalesce == 0.02
    assert ws._conn.stale_timeout == 70.0 and ws._conn.coalesce == 0.02
    assert "s3cret" not in repr(ws.options) and "s3cret" not in repr(ws)
