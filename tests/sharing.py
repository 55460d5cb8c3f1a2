"""Helpers for the shared-feed tests: a real redis-server, and member processes.

Each member is an OS process (``python -m tests.share_member``) running one
client with ``share=``; it prints its state as one JSON line every 50 ms,
which :class:`Member` keeps and lets a test wait on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A ``redis-server`` on a free loopback port, persistence off; restartable on the same port."""

    def __init__(self, *extra: str) -> None:
        found = shutil.which("redis-server")
        if found is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.binary = found
        self.port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.proc = subprocess.Popen(
            [*args, *self.extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)  # a fresh process: poll its port until it listens (bounded above)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)


class Member:
    """One member process of a shared feed."""

    def __init__(self, **config: Any) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.share_member", json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env,
            text=True,
        )
        self.status: dict[str, Any] = {}
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                status = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.status = status
                self._cond.notify_all()
        with self._cond:
            self.status = {**self.status, "exited": True}
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 20.0, what: str = "") -> Any:
        """Block until ``predicate(status)`` is truthy; return the status."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.status and predicate(self.status):
                    return self.status
                left = deadline - time.monotonic()
                if left <= 0 or self.status.get("exited"):
                    raise AssertionError(
                        f"member {self.pid}: {what or 'condition'} not met; last: {self.status}"
                    )
                self._cond.wait(min(left, 0.5))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.kill(self.pid, sig)

    def stop(self) -> str:
        """End the member (SIGTERM: it closes its client); return what it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.proc.stderr.close()
        return err


def leader_of(members: list[Member]) -> Member:
    for member in members:
        if member.status.get("role") == "leader":
            return member
    raise AssertionError(f"no leader among {[m.status.get('role') for m in members]}")
