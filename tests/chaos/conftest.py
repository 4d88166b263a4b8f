"""Fixtures for the chaos suite: the ledger, worker clusters, and Redis and NATS servers.

Everything a test starts (worker process groups, private ``redis-server``s and
``nats-server``s) is killed
in the fixtures' teardown, whatever the test did. A missing service skips locally and
fails with ``CI=true`` (:func:`tests.brokers.conftest.service_unavailable`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.brokers.conftest import REDIS_URL, service_unavailable
from tests.chaos.harness import Cluster
from tests.chaos.ledger import Ledger
from tests.conftest import eventually_blocking


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ledger"
    directory.mkdir()
    return directory


@pytest.fixture
def nemesis(ledger_dir: Path) -> Iterator[Ledger]:
    """The test process's ledger: producer, nemesis and drain records."""
    ledger = Ledger(ledger_dir, "test")
    try:
        yield ledger
    finally:
        ledger.close()


ClusterFactory = Callable[..., Cluster]


@pytest.fixture
def cluster(tmp_path: Path, ledger_dir: Path) -> Iterator[ClusterFactory]:
    """``cluster(url, lease=2, ...)``: worker processes on ``url``; all killed at teardown."""
    made: list[Cluster] = []

    def make(broker_url: str, **settings: float) -> Cluster:
        workdir = tmp_path / f"cluster-{len(made)}"
        workdir.mkdir()
        built = Cluster(broker_url, workdir, ledger_dir, settings)
        made.append(built)
        return built

    try:
        yield make
    finally:
        for built in made:
            built.stop()


def _sync_redis(url: str):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The shared Redis with a key prefix of this test's own; its keys are deleted after."""
    base = REDIS_URL
    prefix = f"chaos-{uuid.uuid4().hex[:12]}"
    client = _sync_redis(base)
    try:
        client.ping()
    except Exception as exc:
        client.close()
        service_unavailable(f"Redis at {base} is unreachable: {exc}")
    try:
        yield f"{base}?prefix={prefix}"
    finally:
        for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A private ``redis-server`` on a free port and a data directory of its own;
    ``durable`` turns on ``appendonly yes`` with ``appendfsync always``."""

    def __init__(self, directory: Path, *, durable: bool) -> None:
        self.directory = directory
        self.durable = durable
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 15.0) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.directory), "--save", "", "--daemonize", "no"]
        argv += ["--appendonly", "yes" if self.durable else "no", "--appendfsync", "always"]
        argv += ["--maxmemory-policy", "noeviction", "--logfile", "redis.log"]
        self.process = subprocess.Popen(
            argv,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = _sync_redis(self.url)
        process = self.process

        def answers() -> bool:
            try:
                return bool(client.ping())  # LOADING (replaying the AOF) raises until done
            except Exception:
                if process.poll() is not None:
                    raise
                return False

        try:
            eventually_blocking(answers, timeout=timeout, what="redis-server to answer")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync, like a crash."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None

    def client(self):  # type: ignore[no-untyped-def]
        return _sync_redis(self.url)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """``redis_server(durable=True)``: a started private Redis, killed at teardown."""
    if shutil.which("redis-server") is None:
        service_unavailable("redis-server is not installed (apt-get install redis-server)")
    servers: list[RedisServer] = []

    def start(*, durable: bool = False) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = RedisServer(directory, durable=durable)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.kill()


NATS_SERVER = os.environ.get("CONVEYOR_TEST_NATS_SERVER", "/usr/sbin/nats-server")


class NatsServer:
    """A private ``nats-server -js`` on a free port, its JetStream store in a directory
    of its own; :meth:`kill` is a SIGKILL, and :meth:`start` again reuses the store."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 15.0) -> None:
        argv = [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        argv += ["-sd", str(self.directory / "store")]
        self.starts += 1
        log = open(self.directory / f"nats-{self.starts}.log", "wb")  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                argv,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own descriptor
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"nats-server exited with {process.returncode}")
            # ready once JetStream has recovered its store and the port answers
            text = (self.directory / f"nats-{self.starts}.log").read_bytes()
            if b"Server is ready" not in text:
                return False
            with socket.socket() as sock:
                sock.settimeout(1.0)
                try:
                    sock.connect(("127.0.0.1", self.port))
                    return sock.recv(4).startswith(b"INFO")
                except OSError:
                    return False

        eventually_blocking(answers, timeout=timeout, what="nats-server to answer")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final flush, like a crash."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[Callable[[], NatsServer]]:
    """``nats_server()``: a started private NATS with JetStream, killed at teardown."""
    if not os.path.exists(NATS_SERVER):
        service_unavailable(f"{NATS_SERVER} is not installed (apt-get install nats-server)")
    servers: list[NatsServer] = []

    def start() -> NatsServer:
        directory = tmp_path / f"nats-{len(servers)}"
        directory.mkdir()
        server = NatsServer(directory)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.kill()
