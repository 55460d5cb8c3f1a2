"""A loopback WebSocket feed for benchmarks: pre-encoded frames, as fast as asked.

It runs in its own process (so it never competes with the client for the
GIL), accepts one connection at a time on 127.0.0.1, performs the HTTP
upgrade by hand, then writes pre-encoded ticker frames in large ``sendall``
blocks. It is bounded: ``total`` messages in all, then it stops. It can pace
itself (``rate``), stamp each message with its send time on the system-wide
monotonic clock (for latency), and close each connection after
``per_connection`` messages (for the soak), reporting what it sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing as mp
import socket
import time
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ticker_frame(symbol: str, price: str, quantity: str = "0.012") -> bytes:
    """One unmasked server text frame holding an AgentExchange ticker message (~150 bytes)."""
    return frame(ticker_text(symbol, price, quantity).encode())


def ticker_text(symbol: str, price: str, quantity: str = "0.012") -> str:
    """An AgentExchange ticker message, as the server writes it."""
    return json.dumps(
        {
            "channel": "ticker",
            "symbol": symbol,
            "data": {
                "price": price,
                "quantity": quantity,
                "timestamp": "2026-11-21T12:00:00.123Z",
                "is_buyer_maker": False,
            },
        },
        separators=(",", ":"),
    )


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def symbols(count: int = 600) -> list[str]:
    return [f"S{i:03d}USDT" for i in range(count)]


def _handshake(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("client went away during the upgrade")
        data += chunk
    key = next(
        line.split(b":", 1)[1].strip()
        for line in data.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def _serve(
    ports: Any,
    stats: Any,
    total: int,
    count: int,
    rate: float | None,
    stamped: bool,
    per_connection: int | None,
    connections: int,
    tick: float,
) -> None:
    names = symbols(count)
    # A paced feed writes every `tick` seconds what is due: 1 ms ticks batch
    # like a live server's event loop; tick=0 writes each message on its own.
    block = 200 if rate is None else max(1, round(rate * tick))
    static = b"".join(ticker_frame(names[i % count], f"{60000 + i % 997}.25") for i in range(count))
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(60)
        ports.put(listener.getsockname()[1])
        sent_total = 0
        served = 0
        while sent_total < total and served < connections:
            conn, _ = listener.accept()
            served += 1
            with conn:
                _handshake(conn)
                conn.setblocking(True)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sent = 0
                start = time.monotonic()
                cursor = 0
                limit = min(total - sent_total, per_connection or total)
                frame_len = len(static) // count
                while sent < limit:
                    n = min(block, limit - sent)
                    if stamped:  # the send time, on the system-wide monotonic clock, as "quantity"
                        now = f"{time.monotonic():.6f}"
                        payload = b"".join(
                            ticker_frame(names[(cursor + k) % count], f"{60000 + k}.25", now)
                            for k in range(n)
                        )
                    elif n < count:
                        first = (cursor % count) * frame_len
                        payload = (static * 2)[first : first + n * frame_len]
                    else:
                        payload = static * (n // count)
                        n = len(payload) // frame_len
                    try:
                        conn.sendall(payload)
                    except OSError:
                        break
                    cursor += n
                    sent += n
                    if rate:
                        ahead = sent / rate - (time.monotonic() - start)
                        if ahead > 0:
                            time.sleep(ahead)
                try:
                    conn.sendall(frame((1000).to_bytes(2, "big") + b"bye", 0x8))
                    conn.settimeout(2)
                    while conn.recv(65536):  # until the client's close and FIN
                        pass
                except OSError:
                    pass
                sent_total += sent
                stats.put(("connection", sent))
    stats.put(("done", sent_total))


class Feed:
    """Start a feed process; ``feed.url`` once started. Use as a context manager."""

    def __init__(
        self,
        total: int,
        *,
        count: int = 600,
        rate: float | None = None,
        stamped: bool = False,
        per_connection: int | None = None,
        connections: int = 1,
        tick: float = 0.001,
    ) -> None:
        ctx = mp.get_context("spawn")
        self._ports: Any = ctx.Queue()
        self.stats: Any = ctx.Queue()
        self._process = ctx.Process(
            target=_serve,
            args=(self._ports, self.stats, total, count, rate, stamped, per_connection, connections, tick),
            daemon=True,
        )
        self.url = ""

    def __enter__(self) -> Feed:
        self._process.start()
        self.url = f"ws://127.0.0.1:{self._ports.get(timeout=30)}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
