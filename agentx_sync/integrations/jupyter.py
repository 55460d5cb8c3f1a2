"""A live view for notebooks (extra ``[jupyter]``: IPython).

    from agentx_sync.integrations.jupyter import live_view
    view = live_view(ws)          # refreshes in place a few times a second
    view.stop()                   # or it stops by itself when ws closes

The refresh runs on a daemon thread (``agentx-sync-live``) and updates the
output through its display id, so the kernel stays free for other cells. A
client has at most one live view: running the cell again (for that client, or
one re-created with the same credentials) stops the previous view first.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

try:
    from IPython.display import HTML, DisplayHandle
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "agentx_sync.integrations.jupyter needs IPython: pip install 'agentx_sync[jupyter]'"
    ) from exc

from ..client import BaseClient
from ..models import ConnectionState

__all__ = ["LiveView", "live_view"]

# The live view of each client identity: a re-run cell replaces it.
_views: weakref.WeakValueDictionary[tuple[str, str, str], LiveView] = weakref.WeakValueDictionary()
_views_lock = threading.Lock()


class LiveView:
    """A display of a client that refreshes itself until stopped or the client ends."""

    def __init__(self, ws: BaseClient, interval: float = 0.5) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.ws = ws
        self.interval = interval
        self.updates = 0
        self._stop = threading.Event()
        with _views_lock:
            previous = _views.get(ws._identity())
            _views[ws._identity()] = self
        if previous is not None:
            previous.stop()
        self._handle: Any = DisplayHandle()  # outside IPython too (display() then returns None)
        self._handle.display(HTML(ws._repr_html_()))
        self._thread = threading.Thread(target=self._run, name="agentx-sync-live", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ended = (ConnectionState.CLOSED, ConnectionState.FAILED, ConnectionState.REPLACED)
        while not self._stop.wait(self.interval):
            self._handle.update(HTML(self.ws._repr_html_()))
            self.updates += 1
            if self.ws.state in ended:
                return

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop refreshing (blocks up to ``timeout``); True when the thread ended."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


def live_view(ws: BaseClient, interval: float = 0.5) -> LiveView:
    """Show ``ws`` in the notebook and keep it fresh every ``interval`` seconds."""
    return LiveView(ws, interval)
