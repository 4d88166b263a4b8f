"""A ``postgresql://`` URL taken apart: what asyncpg connects to, and our own knobs.

URL parameters of ours (the rest goes to asyncpg / libpq, e.g. ``sslmode``):

=================  ======================================================================
``prefix``         the schema that holds every table (default ``conveyor``); ``schema``
                   is an alias. Several apps, or tests, share one database this way.
``migrate``        ``true`` (default): apply missing migrations at connect; ``false``:
                   refuse to start on an older schema (``conveyor db upgrade APP``)
``pool_min``       connections the pool keeps open (default 1)
``pool_max``       the most it opens (default 10)
``connect_timeout``  seconds to open a connection (default 5)
``retry_for``      seconds an operation retries a lost connection before it raises
                   :class:`~conveyor.errors.BrokerUnavailable` (default 10)
=================  ======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from conveyor.brokers import redact_secrets, redact_url
from conveyor.brokers.postgres.queries import SCHEMA_NAME
from conveyor.errors import BrokerUnavailable, ConfigurationError

__all__ = ["CONNECTION_ERRORS", "PostgresTarget", "parse_url"]

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.exceptions.AdminShutdownError,  # pg_terminate_backend, fast shutdown
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,  # starting up, in recovery
    asyncpg.exceptions.TooManyConnectionsError,
    # the protocol was left mid-operation by a connection killed under it
    asyncpg.exceptions.InternalClientError,
)
"""What a lost or refused connection raises: the operation is retried, then reported
as :class:`~conveyor.errors.BrokerUnavailable`."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """A parsed ``postgresql://`` URL: what to connect to and our own knobs."""

    url: str  # as given (shown redacted)
    dsn: str  # for asyncpg, without our parameters
    schema: str
    migrate: bool
    pool_min: int
    pool_max: int
    connect_timeout: float
    retry_for: float

    @property
    def shown(self) -> str:
        """The URL without its password, for messages."""
        return redact_url(self.url)

    async def connect(self) -> asyncpg.Connection:
        """One connection of our own (the listener's, the lease keeper's, an upgrade's)."""
        try:
            return await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
        except CONNECTION_ERRORS as exc:
            raise self.unavailable(exc) from None

    def unavailable(self, exc: BaseException) -> BrokerUnavailable:
        reason = redact_secrets(f"{type(exc).__name__}: {exc}", self.url)
        return BrokerUnavailable(f"cannot reach PostgreSQL at {self.shown}: {reason}")


def parse_url(url: str) -> PostgresTarget:
    """Split ``url`` into asyncpg's DSN and our parameters; ConfigurationError naming the
    URL (without its password) for a value we cannot use.

    >>> parse_url("postgresql://u:pw@db/app?prefix=jobs").schema
    'jobs'
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"postgres", "postgresql"}:
        raise ConfigurationError(f"not a PostgreSQL URL: {redact_url(url)}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = query.pop("prefix", None) or query.pop("schema", None) or "conveyor"
    query.pop("schema", None)
    if not SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(
            f"{redact_url(url)}: prefix {schema!r} must be a letter or '_' then letters, "
            "digits or '_' (at most 63): it names the schema"
        )

    def number(name: str, default: float) -> float:
        raw = query.pop(name, None)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value < 0:
            raise ConfigurationError(f"{redact_url(url)}: {name} must be a number >= 0")
        return value

    migrate_raw = query.pop("migrate", "true").lower()
    if migrate_raw not in _TRUE | _FALSE:
        raise ConfigurationError(f"{redact_url(url)}: migrate must be true or false")
    pool_min = int(number("pool_min", 1))
    pool_max = max(int(number("pool_max", 10)), 1, pool_min)
    dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))
    return PostgresTarget(
        url=url,
        dsn=dsn,
        schema=schema,
        migrate=migrate_raw in _TRUE,
        pool_min=pool_min,
        pool_max=pool_max,
        connect_timeout=number("connect_timeout", 5.0),
        retry_for=number("retry_for", 10.0),
    )
