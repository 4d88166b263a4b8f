"""A tiny synchronous RESP2 client: all the orchestrator needs (FLUSHDB, INFO, MONITOR).

The orchestrator runs on whatever Python launches ``bench/run.py`` and must not depend on
redis-py, which each peer pins to a different version inside its own venv.
"""

from __future__ import annotations

import socket
from typing import Any


class RedisError(Exception):
    pass


class Redis:
    def __init__(self, host: str = "127.0.0.1", port: int = 6379, db: int = 0,
                 timeout: float | None = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        if db:
            self.execute("SELECT", str(db))

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Redis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, *args: str | bytes) -> None:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a.encode() if isinstance(a, str) else a
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))

    def read(self) -> Any:
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RedisError(f"bad reply: {line!r}")

    def execute(self, *args: str | bytes) -> Any:
        self.send(*args)
        return self.read()

    def info(self, section: str = "") -> dict[str, str]:
        raw = self.execute("INFO", section) if section else self.execute("INFO")
        out: dict[str, str] = {}
        for line in raw.decode().splitlines():
            if line and not line.startswith("#") and ":" in line:
                k, v = line.split(":", 1)
                out[k] = v
        return out
