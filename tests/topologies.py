"""Private Redis topologies the tests start themselves: a 3-master, 3-replica Redis
Cluster and a Sentinel-watched master with one replica and three sentinels.

Each node is a ``redis-server`` on a private loopback port, in a temporary directory of
its own, in a session of its own (so a test's signals never reach it), with persistence
off and short failure timeouts (``cluster-node-timeout``, ``down-after-milliseconds``) so
a failover takes seconds. :meth:`stop` kills every process; it also runs at interpreter
exit, whatever happened to the test session.

A topology counts as ready only once every master has a replica that finished its full
sync (``state=online`` on the master, ``master_link_status:up`` on the replica). A
replica that merely *connected* is not a copy: Redis delays a diskless full sync
(``repl-diskless-sync-delay``, 5 s by default), and a master killed in that window is
replaced by an empty replica, which loses every write the master acknowledged (the
failover tests lost 105 and 395 tasks that way before these checks). The nodes here
sync at once (delay 0); the checks still wait for the sync.

Ports: a cluster node needs its port and port + 10000 (the cluster bus); both are taken
from 21000-25999, which the other suites' private servers (ephemeral ports, 32768 and
up) never use; sentinels and sentinel-watched nodes take ephemeral free ports.
"""

from __future__ import annotations

import atexit
import contextlib
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

__all__ = [
    "Node",
    "RedisCluster",
    "SentinelGroup",
    "redis_cluster",
    "redis_sentinel",
    "redis_server_available",
    "replicas_in_sync",
]

NODE_TIMEOUT_MS = 1000
DOWN_AFTER_MS = 1000


def redis_server_available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(count: int) -> list[int]:
    ports: list[int] = []
    candidates = list(range(21000, 26000))
    random.shuffle(candidates)
    for port in candidates:
        if port not in ports and _bindable(port) and _bindable(port + 10000):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free port pairs for a private Redis Cluster")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=3.0, socket_connect_timeout=1.0)


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (redis.RedisError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)  # sleep: polling other processes' state


def replicas_in_sync(master_port: int, wanted: int = 1) -> bool:
    """``master_port`` is a master with at least ``wanted`` replicas that finished their
    full sync (``state=online``: from then on they get every write as it is made),
    acknowledged within the last second, and report their link up."""
    with _client(master_port) as client:
        info = client.info("replication")
    if info.get("role") != "master":
        return False
    synced = []
    for name, value in info.items():
        online = isinstance(value, dict) and value.get("state") == "online"
        if name.startswith("slave") and online and int(value.get("lag", 99)) <= 1:
            synced.append(int(value["port"]))
    if len(synced) < wanted:
        return False
    for port in synced:
        with _client(port) as client:
            if client.info("replication").get("master_link_status") != "up":
                return False
    return True


@dataclass(eq=False)
class Node:
    port: int
    directory: Path
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                log = self.directory / "redis.log"
                text = log.read_text()[-2000:] if log.exists() else ""
                raise AssertionError(f"redis-server on {self.port} exited: {text}")
            with _client(self.port) as client:
                return bool(client.ping())

        _wait(answers, 15.0, f"redis-server on port {self.port}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, like a crash."""
        if self.process is not None:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None


def _server_argv(port: int, *extra: str) -> list[str]:
    return [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--maxmemory-policy",
        "noeviction",
        # a new replica's full sync starts at once, not after the default 5 s (the
        # readiness checks wait for it either way: see the module docstring)
        "--repl-diskless-sync-delay",
        "0",
        "--logfile",
        "redis.log",
        *extra,
    ]


@dataclass(eq=False)
class RedisCluster:
    """A Redis Cluster of ``masters`` masters with one replica each."""

    directory: Path
    masters: int = 3
    nodes: list[Node] = field(default_factory=list)

    def start(self) -> None:
        atexit.register(self.stop)
        ports = _cluster_ports(self.masters * 2)
        for port in ports:
            argv = _server_argv(
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                # a replica may always take over, however long it was cut off
                "--cluster-replica-validity-factor",
                "0",
            )
            self.nodes.append(Node(port, self.directory / str(port), argv))
        for node in self.nodes:
            node.start()
        create = ["redis-cli", "--cluster", "create"]
        create += [f"127.0.0.1:{port}" for port in ports]
        create += ["--cluster-replicas", "1", "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise AssertionError(f"redis-cli --cluster create failed: {done.stdout!r}")
        self.wait_healthy()

    @property
    def url(self) -> str:
        """The cluster URL without a prefix (add ``?prefix=...``); all nodes as startup
        nodes, so a client can start while any one of them is down."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis+cluster://{hosts}/"

    def live(self) -> list[Node]:
        return [node for node in self.nodes if node.alive]

    def master_of(self, key: str) -> Node:
        """The node serving ``key``'s slot now."""
        live = self.live()
        with _client(live[0].port) as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(node for node in self.nodes if node.port == port)
        raise AssertionError(f"no master serves {key}")

    def master_ports(self) -> set[int]:
        with _client(self.live()[0].port) as client:
            return {int(m[1]) for _, _, m, *_ in client.execute_command("CLUSTER", "SLOTS")}

    def wait_healthy(self, timeout: float = 30.0, *, replicated: bool = True) -> None:
        """Every live node reports ``cluster_state:ok``, and ``masters`` masters serve the
        slots, each of them live; with ``replicated``, each master also has a replica in
        sync (:func:`replicas_in_sync`): every node is up again and copied."""

        def healthy() -> bool:
            for node in self.live():
                with _client(node.port) as client:
                    if client.cluster("info")["cluster_state"] != "ok":
                        return False
            live = {node.port for node in self.live()}
            masters = self.master_ports()
            if len(masters) != self.masters or not masters <= live:
                return False
            return not replicated or all(replicas_in_sync(port) for port in masters)

        _wait(healthy, timeout, "the Redis Cluster to be healthy")

    def restart(self, node: Node) -> None:
        """Start a killed node again on its data directory: it rejoins (as a replica of
        whichever node took its slots)."""
        node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


@dataclass(eq=False)
class SentinelGroup:
    """A master, one replica and three sentinels watching them as ``service``."""

    directory: Path
    service: str = "conveyor"
    master: Node | None = None
    replica: Node | None = None
    sentinels: list[Node] = field(default_factory=list)

    def start(self) -> None:
        atexit.register(self.stop)
        master_port, replica_port = _free_port(), _free_port()
        self.master = Node(master_port, self.directory / "a", _server_argv(master_port))
        self.replica = Node(
            replica_port,
            self.directory / "b",
            _server_argv(replica_port, "--replicaof", "127.0.0.1", str(master_port)),
        )
        self.master.start()
        self.replica.start()
        for i in range(3):
            port = _free_port()
            directory = self.directory / f"sentinel-{i}"
            directory.mkdir(parents=True)
            config = directory / "sentinel.conf"  # sentinel rewrites it: one each
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\nlogfile redis.log\n"
                f"sentinel monitor {self.service} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {self.service} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            node = Node(port, directory, ["redis-server", str(config), "--sentinel"])
            self.sentinels.append(node)
            node.start()
        self.wait_replicating()

    @property
    def url(self) -> str:
        """The Sentinel URL without a prefix (add ``?prefix=...``)."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def current_master(self) -> Node:
        """The node the sentinels name as master now."""
        with _client(self.sentinels[0].port) as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        port = int(port)
        return next(node for node in (self.master, self.replica) if node and node.port == port)

    def wait_replicating(self, timeout: float = 30.0) -> None:
        """The sentinels agree on a live master, which has a replica in sync
        (:func:`replicas_in_sync`), and all three sentinels know each other."""

        def ready() -> bool:
            master = self.current_master()
            if not master.alive or not replicas_in_sync(master.port):
                return False
            for sentinel in self.sentinels:
                with _client(sentinel.port) as client:
                    state = client.sentinel_master(self.service)  # parsed by redis-py
                    if int(state["num-other-sentinels"]) < 2:
                        return False
                    if int(state["port"]) != master.port:
                        return False
            return True

        _wait(ready, timeout, "the Sentinel group to agree on a replicated master")

    def stop(self) -> None:
        for node in [*self.sentinels, self.master, self.replica]:
            if node is not None:
                node.kill()


def _unavailable(reason: str) -> None:
    from tests.brokers.conftest import service_unavailable

    service_unavailable(reason)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A started 3-master, 3-replica Redis Cluster for the session; killed at its end.
    Tests share it: each uses a prefix of its own and leaves every node up (a test that
    kills one restarts it and waits for :meth:`RedisCluster.wait_healthy`)."""
    if not redis_server_available():
        _unavailable("redis-server and redis-cli are not installed (apt-get install redis)")
    directory = tmp_path_factory.mktemp("redis-cluster")
    cluster = RedisCluster(directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A started master, replica and three sentinels for the session; killed at its end."""
    if not redis_server_available():
        _unavailable("redis-server and redis-cli are not installed (apt-get install redis)")
    directory = tmp_path_factory.mktemp("redis-sentinel")
    group = SentinelGroup(directory)
    try:
        group.start()
        yield group
    finally:
        group.stop()
        shutil.rmtree(directory, ignore_errors=True)
