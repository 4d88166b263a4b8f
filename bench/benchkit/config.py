"""Benchmark configuration, passed from the orchestrator to peer processes by environment."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    redis_url: str
    """Redis URL including the dedicated DB index, e.g. redis://127.0.0.1:6379/15."""
    results: bool
    """Store task results ("results stored" mode) where the library can choose."""
    concurrency: int | None
    """Per-process concurrency; None means the library's default."""
    workdir: str
    """A fresh directory for this run (SQLite files and the like)."""
    pg_dsn: str
    """PostgreSQL DSN for the PostgreSQL peers (a dedicated database)."""
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """RabbitMQ for the RabbitMQ peers."""
    nats_url: str = "nats://127.0.0.1:4222"
    """NATS with JetStream for the NATS peers."""

    @classmethod
    def from_env(cls) -> Config:
        conc = os.environ.get("BENCH_CONCURRENCY", "")
        return cls(
            redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
            results=os.environ.get("BENCH_RESULTS", "0") == "1",
            concurrency=int(conc) if conc else None,
            workdir=os.environ.get("BENCH_WORKDIR", "."),
            pg_dsn=os.environ.get(
                "BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/conveyor_bench"
            ),
            amqp_url=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            nats_url=os.environ.get("BENCH_NATS_URL", "nats://127.0.0.1:4222"),
        )

    @property
    def redis_db(self) -> int:
        tail = self.redis_url.rsplit("/", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    @property
    def redis_host(self) -> str:
        hostport = self.redis_url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
        return hostport.rsplit(":", 1)[0]

    @property
    def redis_port(self) -> int:
        hostport = self.redis_url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
        return int(hostport.rsplit(":", 1)[1]) if ":" in hostport else 6379


CONFIG = Config.from_env()
