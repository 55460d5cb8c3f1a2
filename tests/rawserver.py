"""A raw TCP server on 127.0.0.1 for servers that misbehave below the WebSocket layer.

Each accepted connection runs ``handler(conn)`` on its own thread. The server
and every handler stop by themselves: handlers are bounded by ``deadline``
(and by the client going away), and ``close()`` ends everything.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class RawServer:
    def __init__(self, handler: Callable[[RawConn], None], *, limit: float = 20.0, rcvbuf: int | None = None):
        self.handler = handler
        self.deadline = time.monotonic() + limit
        self.listener = socket.socket()
        if rcvbuf is not None:  # inherited by accepted sockets: a peer that reads little
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self.accepted = 0
        self.stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="rawserver", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set() and time.monotonic() < self.deadline:
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._conns.append(sock)
            conn = RawConn(sock, self)
            thread = threading.Thread(target=self._serve, args=(conn,), name="rawserver-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: RawConn) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass  # the client went away
        finally:
            conn.sock.close()

    def close(self) -> None:
        self.stopped.set()
        self._thread.join(5)
        for sock in self._conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(5)
        self.listener.close()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class RawConn:
    def __init__(self, sock: socket.socket, server: RawServer) -> None:
        self.sock = sock
        self.server = server
        sock.settimeout(1.0)

    @property
    def running(self) -> bool:
        return not self.server.stopped.is_set() and time.monotonic() < self.server.deadline

    def read_request(self) -> str:
        """The client's HTTP upgrade request (up to the blank line)."""
        data = b""
        while b"\r\n\r\n" not in data and self.running:
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                raise OSError("closed")
            data += chunk
        return data.decode("latin-1")

    def accept_upgrade(self) -> None:
        request = self.read_request()
        key = next(
            line.split(":", 1)[1].strip()
            for line in request.split("\r\n")
            if line.lower().startswith("sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.sock.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )


def text_frame(text: str) -> bytes:
    """An unmasked (server to client) text frame."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        head = bytes([0x81, n])
    elif n < 65536:
        head = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 127]) + n.to_bytes(8, "big")
    return head + payload
