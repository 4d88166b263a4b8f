"""How we talk to NATS: the URL and its parameters, one client connection that
reconnects through server restarts, and the streams and buckets of a prefix.

URL: ``nats://[user:password@|token@]host:4222[,nats://host2:4222]?prefix=conveyor``.
Parameters (all optional): ``prefix``; the work stream's limits ``max_msgs`` (default
1,000,000) and ``max_bytes`` (default 1 GiB), past which an enqueue is refused loudly
(``discard=new``); ``max_deliver`` (100), the server's bound on deliveries of one
message; ``max_ack_pending`` (100,000), which also bounds the messages waiting on a
delay; ``duplicate_window`` (120 s) for ``Nats-Msg-Id``; ``replicas`` (1).

Credentials never reach a log line: every message names the URL through
:func:`conveyor.brokers.redact_url`, and client errors through ``redact_secrets``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from conveyor.brokers import redact_secrets, redact_url
from conveyor.brokers.nats.names import Names
from conveyor.errors import BrokerUnavailable, ConfigurationError

__all__ = [
    "NatsSettings",
    "connect",
    "ensure_bucket",
    "ensure_stream",
    "latest_values",
    "parse_url",
]

log = logging.getLogger("conveyor.nats")

# errors a call may meet while the connection is down or the server restarts
TRANSIENT: tuple[type[BaseException], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    TimeoutError,
    ConnectionError,
)


_UNREACHABLE: tuple[type[BaseException], ...] = (nats.errors.NoServersError, OSError, *TRANSIENT)


@dataclass(frozen=True, slots=True)
class NatsSettings:
    """What the URL says, beyond where the servers are."""

    servers: tuple[str, ...]
    names: Names
    max_msgs: int = 1_000_000
    max_bytes: int = 1 << 30
    max_deliver: int = 100
    max_ack_pending: int = 100_000
    duplicate_window: float = 120.0
    replicas: int = 1


def parse_url(url: str) -> NatsSettings:
    """Split ``url`` into server URLs (credentials kept, our parameters removed) and
    settings. Raises :class:`ConfigurationError` naming the URL without its secrets."""
    servers: list[str] = []
    params: dict[str, str] = {}
    for piece in url.split(","):
        parts = urlsplit(piece.strip())
        query = dict(parse_qsl(parts.query))
        params.update(query)
        servers.append(urlunsplit(parts._replace(query="", path="")))
    names = Names(params.pop("prefix", "conveyor") or "conveyor")
    numbers: dict[str, Any] = {}
    for name, kind in (
        ("max_msgs", int),
        ("max_bytes", int),
        ("max_deliver", int),
        ("max_ack_pending", int),
        ("duplicate_window", float),
        ("replicas", int),
    ):
        if name in params:
            try:
                numbers[name] = kind(params.pop(name))
            except ValueError:
                raise ConfigurationError(
                    f"invalid NATS URL {redact_url(url)}: {name} must be a number"
                ) from None
    if params:
        unknown = ", ".join(sorted(params))
        raise ConfigurationError(f"invalid NATS URL {redact_url(url)}: unknown parameter {unknown}")
    return NatsSettings(tuple(servers), names, **numbers)


async def connect(
    url: str,
    settings: NatsSettings,
    name: str,
    reconnected: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """A connected client that reconnects forever (G6), logging each disconnect and
    reconnect with the URL redacted; :class:`BrokerUnavailable` if no server answers."""
    shown = redact_url(url)

    async def on_error(exc: Exception) -> None:
        log.warning("NATS %s: %s", shown, redact_secrets(str(exc), url) or type(exc).__name__)

    async def on_disconnected() -> None:
        if nc.is_closed or nc.is_draining:
            return  # we are closing it
        log.warning("NATS %s: disconnected; reconnecting", shown)

    async def on_reconnected() -> None:
        log.info("NATS %s: reconnected", shown)
        if reconnected is not None:
            await reconnected()

    nc = Client()
    try:
        await nc.connect(
            servers=list(settings.servers),
            name=name,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            connect_timeout=5,
            reconnect_time_wait=1,
            max_reconnect_attempts=-1,
            ping_interval=10,
            max_outstanding_pings=3,
        )
        return nc
    except _UNREACHABLE as exc:
        reason = redact_secrets(str(exc), url) or type(exc).__name__
        raise BrokerUnavailable(f"cannot reach NATS at {shown}: {reason}") from None
    except nats.errors.Error as exc:  # authorization and protocol errors
        reason = redact_secrets(str(exc), url) or type(exc).__name__
        raise ConfigurationError(f"NATS at {shown} refused the connection: {reason}") from None


async def ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    """Create the stream, or bring an existing one to ``config``."""
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code != 10058:  # "stream name already in use with a different configuration"
            raise
        await js.update_stream(config)


async def ensure_bucket(js: JetStreamContext, bucket: str, replicas: int) -> KeyValue:
    """The KV bucket (one value per key, file storage), created when missing."""
    try:
        return await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(
            bucket=bucket, history=1, storage=api.StorageType.FILE, replicas=replicas
        )


async def latest_values(
    js: JetStreamContext, bucket: str, timeout: float = 10.0
) -> list[tuple[str, bytes]]:
    """Every live key of a bucket with its value (admin scans: depths, heartbeats).

    One ordered consumer reads the bucket's stream from its start up to the last
    sequence it had when the scan began. Our buckets keep one message per key
    (``history=1``), so that is each key's latest value or delete marker. The end is
    found by sequence, not by the consumer's ``num_pending`` (which ``kv.watchall()``
    trusts): on nats-server 2.9 a last-per-subject consumer over a bucket with many
    deletes, after a restart, reported 0 pending early and a scan missed live records.
    """
    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    state = (await js.stream_info(stream)).state
    if not state.messages or not state.last_seq:
        return []
    last = state.last_seq
    values: dict[str, bytes] = {}
    sub = await js.subscribe(
        f"{prefix}>", ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL, stream=stream
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=timeout)
            key = msg.subject[len(prefix) :]
            op = msg.headers.get("KV-Operation") if msg.headers else None
            if op in ("DEL", "PURGE") or not msg.data:
                values.pop(key, None)
            else:
                values[key] = msg.data
            if msg.metadata.sequence.stream >= last:
                return list(values.items())
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
