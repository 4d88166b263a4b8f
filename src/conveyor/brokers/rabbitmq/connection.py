"""The connection to RabbitMQ, made again after every fault.

A :class:`Link` hands out the current :class:`Session` (a connection with a publishing
channel in confirm mode and one consuming channel), connecting when there is none. Every
session has a new *generation*: delivery tags are valid only on the channel that
delivered them, so a delivery from an older generation is never acked or nacked (it was
requeued when its channel died; taskiq-aio-pika #46 crashed workers doing that).

Anything that ends a session (the server closing a channel, a lost socket, a missed
heartbeat, a broker restart) marks it dead; the next call connects again, with a pause
that doubles up to ``fault_pause_max``, so a worker resumes within seconds of the fault
healing (G6). URLs in messages and logs are shown without their password.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection

from conveyor.brokers import redact_secrets
from conveyor.clock import FaultPause
from conveyor.errors import BrokerUnavailable, ConfigurationError

if TYPE_CHECKING:
    from conveyor.brokers.base import Delivery

__all__ = ["Link", "Session", "unavailable"]

log = logging.getLogger("conveyor.rabbitmq")

CONNECT_TIMEOUT = 10.0
_generations = itertools.count(1)


def unavailable(what: str, exc: BaseException, url: str, shown: str) -> BrokerUnavailable:
    """A :class:`BrokerUnavailable` for ``exc``, with no credential of ``url`` in it."""
    reason = redact_secrets(str(exc) or type(exc).__name__, url)
    return BrokerUnavailable(f"{what} RabbitMQ at {shown}: {reason}")


@dataclass(eq=False)
class Session:
    """One live connection: ``channel`` declares and publishes (publisher confirms,
    unroutable messages raise), ``consumer`` consumes and acknowledges."""

    connection: AbstractConnection
    channel: AbstractChannel
    publisher: aiormq.abc.AbstractChannel
    consumer: aiormq.abc.AbstractChannel
    generation: int = field(default_factory=lambda: next(_generations))
    alive: bool = True
    deliveries: weakref.WeakSet[Delivery] = field(default_factory=weakref.WeakSet)
    """What its consuming channel delivered and this process still holds."""

    def end(self) -> None:
        """Mark it dead. RabbitMQ requeues what its channel delivered, so the leases of
        the deliveries still in hand end now: one fetched ahead and not started yet is
        checked before it would start, and does not run (its redelivery does)."""
        self.alive = False
        for delivery in list(self.deliveries):
            delivery.lease_until = float("-inf")

    @property
    def server_version(self) -> tuple[int, ...]:
        """The server's version, from its connection properties ((0,) if unknown)."""
        transport = self.connection.transport
        if transport is None:
            return (0,)
        properties: dict[str, Any] = dict(transport.connection.server_properties or {})
        raw = properties.get("version", b"0")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        parts = []
        for piece in text.split("."):
            digits = "".join(itertools.takewhile(str.isdigit, piece))
            if not digits:
                break
            parts.append(int(digits))
        return tuple(parts) or (0,)


class Link:
    """Owns the connection of one broker instance (one event loop): connects on demand,
    after a fault too."""

    def __init__(
        self, server_url: str, url: str, shown: str, fault_pause: FaultPause | None = None
    ) -> None:
        self._server_url = server_url
        self._url = url  # the URL as given, to find its credentials in error messages
        self.shown = shown
        self._session: Session | None = None
        self._lock: asyncio.Lock | None = None
        self._pause = fault_pause
        self._failed = False
        self._connects = 0
        self._closing: set[asyncio.Task[None]] = set()
        self.closed = False

    @property
    def current(self) -> Session | None:
        """The live session, if there is one."""
        session = self._session
        return session if session is not None and session.alive else None

    async def session(self) -> Session:
        """The live session, connecting first if there is none; raises
        :class:`BrokerUnavailable` when RabbitMQ cannot be reached."""
        session = self.current
        if session is not None:
            return session
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            session = self.current
            if session is not None:
                return session
            if self._failed and self._pause is not None:
                await self._pause.wait()  # the previous try failed: back off
            session = await self._connect()
            self._failed = False
            if self._pause is not None:
                self._pause.reset()
            return session

    async def _connect(self) -> Session:
        if self.closed:
            raise BrokerUnavailable(f"the RabbitMQ broker at {self.shown} is closed")
        old, self._session = self._session, None
        if old is not None:
            self._retire(old.connection)
        try:
            connection = await aio_pika.connect(self._server_url, timeout=CONNECT_TIMEOUT)
        except aio_pika.exceptions.ProbableAuthenticationError as exc:
            self._failed = True
            raise ConfigurationError(
                f"RabbitMQ at {self.shown} refused the login: {redact_secrets(str(exc), self._url)}"
            ) from None
        except (OSError, TimeoutError, aiormq.exceptions.AMQPError, ValueError) as exc:
            self._failed = True
            raise unavailable("cannot reach", exc, self._url, self.shown) from None
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            consuming = await connection.channel(publisher_confirms=False)
            session = Session(
                connection,
                channel,
                await channel.get_underlay_channel(),
                await consuming.get_underlay_channel(),
            )
        except BaseException as exc:
            self._failed = True
            await _quietly_close(connection)
            if isinstance(exc, Exception):
                raise unavailable("cannot open channels on", exc, self._url, self.shown) from None
            raise

        def lost(_sender: Any, exc: BaseException | None = None) -> None:
            if session.alive and not self.closed:
                log.warning(
                    "RabbitMQ connection to %s lost (%s); reconnecting on next use",
                    self.shown,
                    redact_secrets(str(exc) or type(exc).__name__, self._url) if exc else "closed",
                )
            session.end()
            # a channel the server closed (PRECONDITION_FAILED, a consumer timeout...)
            # ends the whole session: its deliveries are being requeued
            if not connection.is_closed:
                with contextlib.suppress(RuntimeError):  # the loop is closing
                    self._retire(connection)

        connection.close_callbacks.add(lost)
        channel.close_callbacks.add(lost)
        consuming.close_callbacks.add(lost)
        self._session = session
        self._connects += 1
        if self._connects > 1:
            log.info("reconnected to RabbitMQ at %s", self.shown)
        return session

    def drop(self, session: Session) -> None:
        """End ``session`` after an error on it: the next call reconnects. Its connection
        is closed, so that RabbitMQ requeues what it delivered (an open connection would
        keep those messages unacknowledged, and stuck, for as long as it lives)."""
        if session.alive:
            session.end()
            if not session.connection.is_closed:
                with contextlib.suppress(RuntimeError):  # the loop is closing
                    self._retire(session.connection)

    def _retire(self, connection: AbstractConnection) -> None:
        """Close a dead session's connection in the background, owned by this link: a
        server that blocks a connection (a memory alarm) stops reading it, so its close
        handshake can take the whole close timeout, which no caller should wait out."""
        task = asyncio.get_running_loop().create_task(_quietly_close(connection))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close the connection: RabbitMQ requeues every unacknowledged delivery."""
        self.closed = True
        session, self._session = self._session, None
        if session is not None:
            session.end()
            await _quietly_close(session.connection)
        if self._closing:
            await asyncio.wait(list(self._closing))


async def _quietly_close(connection: AbstractConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(connection.close(), 5.0)
