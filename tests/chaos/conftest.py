"""Fixtures for the chaos suite: the ledger, worker clusters, and Redis and NATS servers.

Everything a test starts (worker process groups, private ``redis-server``s and
``nats-server``s) is killed
in the fixtures' teardown, whatever the test did. A missing service skips locally and
fails with ``CI=true`` (:func:`tests.brokers.conftest.service_unavailable`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
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


def _rabbitmq_script(name: str) -> str | None:
    """A RabbitMQ script, the package's own: the /usr/sbin wrappers switch to the rabbitmq
    user, dropping the environment (and the Erlang cookie) that makes the node private."""
    for candidate in (f"/usr/lib/rabbitmq/bin/{name}", shutil.which(name)):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class RabbitNode:
    """A private RabbitMQ node: its own node name, AMQP and distribution ports, data and
    log directories and Erlang cookie, so killing it touches nothing else. Restarted on
    the same data directory, it recovers its durable queues and messages."""

    def __init__(self, directory: Path, script: str, ctl: str) -> None:
        self.directory = directory
        self.script = script
        self.ctl = ctl
        self.port = _free_port()
        self.name = f"conveyor-chaos-{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        (directory / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        (directory / "enabled_plugins").write_text("[].\n")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin:/usr/sbin"),
            "HOME": str(directory),  # the node's Erlang cookie, which rabbitmqctl reads
            "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),  # none
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(_free_port()),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.directory / "node.log", "ab")  # noqa: SIM115 - the node writes to it
        self.process = subprocess.Popen(
            [self.script],
            cwd=self.directory,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    f"rabbitmq-server exited: {(self.directory / 'node.log').read_text()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
            except OSError:
                return False
            return True

        eventually_blocking(listening, timeout=timeout, what="the RabbitMQ node to listen")

    def kill(self) -> None:
        """SIGKILL the node's whole process group: no shutdown, like a crash."""
        if self.process is not None:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def write_queue_registry(self) -> None:
        """Restart the RabbitMQ application gracefully (``stop_app``, ``start_app``).

        RabbitMQ writes the registry of its quorum queues' Raft servers to disk lazily: a
        quorum queue declared moments before a SIGKILL can come back without a leader,
        publishes never confirmed (rabbitmq-server #15725; seen here as "running pre init
        for 3 registered servers" with 4 queues). A graceful restart writes it, so that a
        kill test proves the broker's recovery rather than that window of RabbitMQ's."""
        for command in ("stop_app", "start_app"):
            subprocess.run(
                [self.ctl, "-n", self.name, command],
                env=self.env,
                check=True,
                capture_output=True,
                timeout=60,
            )

    def memory_alarm(self, on: bool) -> None:
        """Raise (or clear) a memory alarm: RabbitMQ blocks every publishing connection
        until it clears, as when the node runs out of memory."""
        mark = "0.0000001" if on else "0.4"
        subprocess.run(
            [self.ctl, "-n", self.name, "set_vm_memory_high_watermark", mark],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=30,
        )

    def close_connections(self) -> None:
        """``rabbitmqctl close_all_connections``: every client is cut, as by a network."""
        subprocess.run(
            [self.ctl, "-n", self.name, "close_all_connections", "chaos: cut"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=30,
        )


@pytest.fixture(scope="module")
def rabbit_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    """A started private RabbitMQ node for the module's tests; killed at teardown."""
    script, ctl = _rabbitmq_script("rabbitmq-server"), _rabbitmq_script("rabbitmqctl")
    if script is None or ctl is None:
        service_unavailable("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        raise AssertionError("unreachable")
    node = RabbitNode(tmp_path_factory.mktemp("rabbit"), script, ctl)
    try:
        node.start()
    except AssertionError as exc:
        node.kill()
        service_unavailable(f"a private RabbitMQ node did not start: {exc}")
    try:
        yield node
    finally:
        node.kill()


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
