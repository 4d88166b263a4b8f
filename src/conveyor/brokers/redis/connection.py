"""How we talk to Redis: the URL (and its ``prefix`` parameter), the asyncio client with
hiredis command packing, and the Lua scripts registered on it.

A blocking client (for ``XREADGROUP ... BLOCK``) gets a socket timeout longer than
``fetch_wait``; every other client times out after 10 s and retries a lost connection
with exponential backoff. The lease keeper's synchronous client is in ``lease.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff

from conveyor.brokers import redact_secrets, redact_url
from conveyor.brokers.base import BrokerOptions
from conveyor.brokers.redis.scripts import SCRIPT_NAMES, load_sources
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
]

SOURCES = load_sources()

# connections per client (the app's, each portal's, each clone's), and how long a call
# waits for one when all are busy before BrokerUnavailable-like ConnectionError
DEFAULT_POOL_SIZE = 50
POOL_WAIT = 30.0


def split_url(url: str) -> tuple[str, str]:
    """(url without our own query parameters, key prefix)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    prefix = query.pop("prefix", "conveyor")
    return urlunsplit(parts._replace(query=urlencode(query))), prefix


class HiredisPackConnection(aioredis.Connection):
    """Packs commands with hiredis' C packer: redis-py's asyncio connection packs in Python,
    which cost ~35 µs per task (11 arguments) in profiles of the hot path."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # e.g. "CONFIG GET"
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


class HiredisPackSSLConnection(aioredis.SSLConnection, HiredisPackConnection):
    pass


def new_client(url: str, options: BrokerOptions, *, blocking: bool = False) -> aioredis.Redis:
    """A client for ``url``. A ``blocking`` one (for ``XREADGROUP ... BLOCK``) holds a
    single connection whose ``client_id`` (see :func:`blocked_client_id`) another
    connection can pass to ``CLIENT UNBLOCK``, to end its wait early."""
    # a blocking XREADGROUP must finish within the socket timeout (redis-py #2807)
    timeout = options.fetch_wait + 10.0 if blocking else 10.0
    secure = urlsplit(url).scheme == "rediss"
    client_options: dict[str, Any] = {
        "connection_class": HiredisPackSSLConnection if secure else HiredisPackConnection,
        "socket_timeout": timeout,
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry": RedisRetry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
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
    query = dict(parse_qsl(urlsplit(url).query))
    size = int(query.get("max_connections", DEFAULT_POOL_SIZE))
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=size, timeout=POOL_WAIT, **client_options
    )
    return aioredis.Redis.from_pool(pool)  # the client owns and closes its pool


async def _connect_keeping_id(connection: Any) -> None:
    """The usual handshake, then ``CLIENT ID`` kept on the connection (again after every
    reconnect, which gives the connection a new id)."""
    await connection.on_connect()
    await connection.send_command("CLIENT", "ID")
    connection.conveyor_client_id = int(await connection.read_response())


def blocked_client_id(client: aioredis.Redis) -> int | None:
    """The server-side id of a blocking client's connection, once it has connected."""
    return getattr(client.connection, "conveyor_client_id", None)


async def reachable_client(url: str, redis_url: str, options: BrokerOptions) -> aioredis.Redis:
    """A client that answered PING, or :class:`BrokerUnavailable` naming ``url`` without
    its password (:class:`ConfigurationError` for a URL redis-py cannot use)."""
    # redis-py's messages may quote a piece of a password that its URL parser cut
    try:
        client = new_client(redis_url, options)
    except ValueError as exc:  # a bad port, an invalid option value
        reason = redact_secrets(str(exc), url)
        raise ConfigurationError(f"invalid Redis URL {redact_url(url)}: {reason}") from None
    try:
        await client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
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
