"""How we talk to Redis: clients for the topology a URL names (``topology.py``: one
server, a Redis Cluster, a Sentinel-watched master), with hiredis command packing, and
the Lua scripts registered on them.

A blocking client (for ``XREADGROUP ... BLOCK``) gets a socket timeout longer than
``fetch_wait``; every other client times out after 10 s and retries a lost connection
with exponential backoff. A Sentinel client asks the sentinels for the master on every
new connection, so after a failover reconnects reach the promoted replica; a cluster
client follows MOVED and refreshes its slot map. The lease keeper's synchronous client
is :func:`sync_client`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import hiredis
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.asyncio.sentinel as aiosentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff

from conveyor.brokers import redact_secrets, redact_url
from conveyor.brokers.base import BrokerOptions
from conveyor.brokers.redis.scripts import SCRIPT_NAMES, load_sources
from conveyor.brokers.redis.topology import Kind, Topology, parse_topology
from conveyor.errors import BrokerUnavailable, ConfigurationError

__all__ = [
    "SOURCES",
    "HiredisPackConnection",
    "HiredisPackSSLConnection",
    "Scripts",
    "blocked_client_id",
    "new_client",
    "reachable_client",
    "split_url",
    "sync_client",
]

SOURCES = load_sources()

# connections per client (the app's, each portal's, each clone's), and how long a call
# waits for one when all are busy before BrokerUnavailable-like ConnectionError
DEFAULT_POOL_SIZE = 50
POOL_WAIT = 30.0


def split_url(url: str) -> tuple[Topology, str]:
    """(the topology ``url`` names, key prefix); :class:`ConfigurationError` for a URL
    that names none."""
    topology = parse_topology(url)
    return topology, topology.prefix


class HiredisPackConnection(aioredis.Connection):
    """Packs commands with hiredis' C packer: redis-py's asyncio connection packs in Python,
    which cost ~35 µs per task (11 arguments) in profiles of the hot path."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # e.g. "CONFIG GET"
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


class HiredisPackSSLConnection(aioredis.SSLConnection, HiredisPackConnection):
    pass


class HiredisPackSentinelConnection(aiosentinel.SentinelManagedConnection):
    pack_command = HiredisPackConnection.pack_command


class HiredisPackSentinelSSLConnection(aiosentinel.SentinelManagedSSLConnection):
    pack_command = HiredisPackConnection.pack_command


def new_client(topology: Topology | str, options: BrokerOptions, *, blocking: bool = False) -> Any:
    """A client for ``topology``. A ``blocking`` one (for ``XREADGROUP ... BLOCK``) holds
    a single connection whose ``client_id`` (see :func:`blocked_client_id`) another
    connection can pass to ``CLIENT UNBLOCK``, to end its wait early; a cluster has none
    (its reads block on no connection: see ``cluster.py``)."""
    if isinstance(topology, str):
        topology = parse_topology(topology)
    if topology.kind is Kind.CLUSTER:
        if blocking:
            return None
        return _cluster_client(topology)
    url = topology.url
    # a blocking XREADGROUP must finish within the socket timeout (redis-py #2807)
    timeout = options.fetch_wait + 10.0 if blocking else 10.0
    secure = topology.tls
    client_options: dict[str, Any] = {
        "connection_class": HiredisPackSSLConnection if secure else HiredisPackConnection,
        "socket_timeout": timeout,
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry": RedisRetry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    query = dict(parse_qsl(urlsplit(url).query))
    size = int(query.get("max_connections", DEFAULT_POOL_SIZE))
    if topology.kind is Kind.SENTINEL:
        return _sentinel_client(topology, client_options, size, blocking=blocking)
    if blocking:
        return aioredis.Redis.from_url(
            url,
            single_connection_client=True,
            redis_connect_func=_connect_keeping_id,
            **client_options,
        )
    # A pool of a known size that queues callers beyond it: a thousand concurrent
    # status() or wait_result() calls wait their turn instead of failing with
    # MaxConnectionsError (`?max_connections=` in the URL sizes it)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=size, timeout=POOL_WAIT, **client_options
    )
    return aioredis.Redis.from_pool(pool)  # the client owns and closes its pool


def _node_kwargs(topology: Topology) -> dict[str, Any]:
    """What every data node's connection takes from the URL: credentials, TLS options,
    the database (host and port are the topology's)."""
    kwargs: dict[str, Any] = dict(parse_url(topology.url))
    for name in ("host", "port", "connection_class", "max_connections"):
        kwargs.pop(name, None)
    return kwargs


class _SentinelRedis(aioredis.Redis):
    """A client of a Sentinel-watched master that closes its sentinel connections too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = cast(aiosentinel.SentinelConnectionPool, self.connection_pool)
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def _sentinel_client(
    topology: Topology, client_options: dict[str, Any], size: int, *, blocking: bool
) -> aioredis.Redis:
    node = _node_kwargs(topology)
    sentinel = aiosentinel.Sentinel(
        list(topology.nodes),
        sentinel_kwargs={
            "socket_timeout": 5.0,
            "socket_connect_timeout": 5.0,
            **{k.removeprefix("sentinel_"): v for k, v in topology.sentinel_auth.items()},
        },
    )
    options = dict(client_options)
    options["connection_class"] = (
        HiredisPackSentinelSSLConnection if topology.tls else HiredisPackSentinelConnection
    )
    if blocking:
        pool = aiosentinel.SentinelConnectionPool(  # type: ignore[no-untyped-call]
            topology.service,
            sentinel,
            is_master=True,
            redis_connect_func=_connect_keeping_id,
            **options,
            **node,
        )
        client = _SentinelRedis(connection_pool=pool, single_connection_client=True)
        client.auto_close_connection_pool = True
        return client
    pool = aiosentinel.SentinelConnectionPool(  # type: ignore[no-untyped-call]
        topology.service, sentinel, is_master=True, max_connections=size, **options, **node
    )
    return _SentinelRedis.from_pool(pool)


def _cluster_client(topology: Topology) -> aiocluster.RedisCluster:
    node = _node_kwargs(topology)
    node.pop("db", None)
    query = dict(parse_qsl(urlsplit(topology.url).query))
    return aiocluster.RedisCluster(
        startup_nodes=[aiocluster.ClusterNode(host, port) for host, port in topology.nodes],
        max_connections=int(query.get("max_connections", DEFAULT_POOL_SIZE)),
        socket_timeout=10.0,
        socket_connect_timeout=5.0,
        socket_keepalive=True,
        health_check_interval=30,
        ssl=topology.tls,
        **node,
    )


def sync_client(topology: Topology) -> Any:
    """A synchronous client (the lease keeper's, on its own thread) for ``topology``."""
    timeouts: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
    if topology.kind is Kind.SINGLE:
        return redis.Redis.from_url(topology.url, **timeouts)
    node = _node_kwargs(topology)
    if topology.kind is Kind.CLUSTER:
        node.pop("db", None)
        return redis.cluster.RedisCluster(
            startup_nodes=[
                redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                for h, p in topology.nodes
            ],
            ssl=topology.tls,
            **timeouts,
            **node,
        )
    auth = {k.removeprefix("sentinel_"): v for k, v in topology.sentinel_auth.items()}
    sentinel = redis.sentinel.Sentinel(
        list(topology.nodes), sentinel_kwargs={**timeouts, **auth}, **timeouts
    )
    if topology.tls:
        node["connection_class"] = redis.sentinel.SentinelManagedSSLConnection
    return sentinel.master_for(topology.service, **node)


async def _connect_keeping_id(connection: Any) -> None:
    """The usual handshake, then ``CLIENT ID`` kept on the connection (again after every
    reconnect, which gives the connection a new id)."""
    await connection.on_connect()
    await connection.send_command("CLIENT", "ID")
    connection.conveyor_client_id = int(await connection.read_response())


def blocked_client_id(client: aioredis.Redis) -> int | None:
    """The server-side id of a blocking client's connection, once it has connected."""
    return getattr(client.connection, "conveyor_client_id", None)


async def reachable_client(url: str, topology: Topology, options: BrokerOptions) -> Any:
    """A client that answered PING, or :class:`BrokerUnavailable` naming ``url`` without
    its password (:class:`ConfigurationError` for a URL redis-py cannot use)."""
    # redis-py's messages may quote a piece of a password that its URL parser cut
    try:
        client = new_client(topology, options)
    except ValueError as exc:  # a bad port, an invalid option value
        reason = redact_secrets(str(exc), url)
        raise ConfigurationError(f"invalid Redis URL {redact_url(url)}: {reason}") from None
    try:
        await client.ping()
    except (redis.ConnectionError, redis.TimeoutError, redis.RedisClusterException, OSError) as exc:
        await client.aclose()
        reason = redact_secrets(str(exc), url)
        raise BrokerUnavailable(f"cannot reach Redis at {redact_url(url)}: {reason}") from None
    except (ValueError, TypeError) as exc:  # an unknown option (?PASSWORD=) reaches here
        await client.aclose()
        reason = redact_secrets(str(exc), url)
        raise ConfigurationError(f"invalid Redis URL {redact_url(url)}: {reason}") from None
    return client


class Scripts:
    """The registered scripts, callable on a client or a pipeline."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.by_name = {name: client.register_script(SOURCES[name]) for name in SCRIPT_NAMES}

    async def call(self, name: str, tag: str, args: Sequence[Any], client: Any = None) -> Any:
        return await self.by_name[name](keys=[tag], args=list(args), client=client)
