"""Brokers and result stores, found by URL scheme and imported only when used.

>>> broker_class_for("redis://localhost:6379/0")  # doctest: +SKIP
<class 'conveyor.brokers.redis.broker.RedisBroker'>
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from conveyor.errors import ConfigurationError

__all__ = [
    "broker_class_for",
    "redact_secrets",
    "redact_url",
    "register_broker",
    "result_store_class_for",
    "shown_url",
    "sqlite_path",
]

# scheme -> ("module:BrokerClass", "module:ResultStoreClass", extra to install)
_REGISTRY: dict[str, tuple[str, str, str | None]] = {
    "memory": (
        "conveyor.brokers.memory:MemoryBroker",
        "conveyor.brokers.memory:MemoryResultStore",
        None,
    ),
    "sqlite": (
        "conveyor.brokers.sqlite:SqliteBroker",
        "conveyor.brokers.sqlite:SqliteResultStore",
        None,
    ),
    "redis": (
        "conveyor.brokers.redis:RedisBroker",
        "conveyor.brokers.redis:RedisResultStore",
        "redis",
    ),
    "rediss": (
        "conveyor.brokers.redis:RedisBroker",
        "conveyor.brokers.redis:RedisResultStore",
        "redis",
    ),
    "redis+cluster": (
        "conveyor.brokers.redis:RedisClusterBroker",
        "conveyor.brokers.redis:RedisResultStore",
        "redis",
    ),
    "rediss+cluster": (
        "conveyor.brokers.redis:RedisClusterBroker",
        "conveyor.brokers.redis:RedisResultStore",
        "redis",
    ),
    "redis+sentinel": (
        "conveyor.brokers.redis:RedisBroker",
        "conveyor.brokers.redis:RedisResultStore",
        "redis",
    ),
    "rediss+sentinel": (
        "conveyor.brokers.redis:RedisBroker",
        "conveyor.brokers.redis:RedisResultStore",
        "redis",
    ),
    "amqp": (
        "conveyor.brokers.rabbitmq:RabbitMQBroker",
        "conveyor.brokers.rabbitmq:RabbitMQResultStore",
        "amqp",
    ),
    "amqps": (
        "conveyor.brokers.rabbitmq:RabbitMQBroker",
        "conveyor.brokers.rabbitmq:RabbitMQResultStore",
        "amqp",
    ),
    "postgresql": (
        "conveyor.brokers.postgres:PostgresBroker",
        "conveyor.brokers.postgres:PostgresResultStore",
        "postgres",
    ),
    "postgres": (
        "conveyor.brokers.postgres:PostgresBroker",
        "conveyor.brokers.postgres:PostgresResultStore",
        "postgres",
    ),
    "nats": (
        "conveyor.brokers.nats:NatsBroker",
        "conveyor.brokers.nats:NatsResultStore",
        "nats",
    ),
}


def register_broker(scheme: str, broker: str, result_store: str, extra: str | None = None) -> None:
    """Make ``scheme://`` URLs use your broker: ``register_broker("kafka",
    "mypkg.kafka:KafkaBroker", "mypkg.kafka:KafkaResultStore")``. Classes are imported
    lazily, on first use; they take ``(url, options)``: the URL and a
    :class:`~conveyor.brokers.base.BrokerOptions` (docs/write-a-broker.md)."""
    _REGISTRY[scheme.lower()] = (broker, result_store, extra)


# a lone userinfo (``scheme://word@host``) is a user name for these schemes, and shown;
# for any other (``nats://TOKEN@host``, schemes registered later) it may be a token
_USER_NAMED_SCHEMES = frozenset(
    {
        "amqp",
        "amqps",
        "mongodb",
        "mongodb+srv",
        "mysql",
        "postgres",
        "postgresql",
        "redis",
        "rediss",
        "redis+cluster",
        "rediss+cluster",
        "redis+sentinel",
        "rediss+sentinel",
        "unix",
    }
)
_HIDDEN = "***"
# URLs joined by commas (NATS server lists): each one is redacted on its own
_NEXT_URL = re.compile(r"(,\s*)(?=[A-Za-z][A-Za-z0-9+.-]*://)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# what follows the '@' that ends a userinfo: hosts (IPv6, ports, comma lists), then the
# path, query or fragment
_HOSTS = re.compile(r"[\w.~%\[\]:,-]*(?:[/?#]|$)")
# name= in a query, fragment, ;-parameters or a libpq "key=value key=value" string
_PARAM = re.compile(r"(?:^|(?<=[?&;#\s]))(?P<name>[^=&;?#\s]+)=")
# a secret value runs to the next '&' (parse_qs splits on '&' only: ';' and '#' may be
# part of a password), and over '&...' pieces without '=' (a password's unencoded '&')
_VALUE = re.compile(r"'(?:[^'\\]|\\.)*'|[^&\s]*(?:&[^&=\s]*(?=[&\s]|$))*")
# a parameter name that carries a credential: password, passwd, pwd, pass, secret,
# token, auth..., credentials, api_key, apikey, key, AccessKey, sig, signature, ...
# (not prefix, not ssl_keyfile: a path)
_SECRET_NAME = re.compile(
    r"pass|pwd|secret|token|auth|credential|signature|private|key$|keys$"
    r"|(?:^|[^a-z])(?:pw|sig|jwt|nkey|seed)(?:$|[^a-z])"
)


def redact_url(url: str) -> str:
    """``url`` with every credential replaced by ``***``, for messages and logs: the
    password of its userinfo (``user:***@``, ``:***@``), a lone token there (``nats://
    ***@host``; kept where the scheme puts a user name there: redis, amqp, postgresql),
    and the value of every parameter whose name looks like one (``password``,
    ``sentinel_password``, ``token``, ``api_key``, ``secret``..., any case). Several
    hosts, several comma-joined URLs and libpq ``key=value`` strings are handled; it
    never raises.

    >>> redact_url("redis://:s3cret@h1:6379/0?prefix=app&password=s3cret")
    'redis://:***@h1:6379/0?prefix=app&password=***'
    """
    return _redact(url, [])


def redact_secrets(text: str, url: str) -> str:
    """``text`` (an error message about ``url``, from a client library) with each
    credential of ``url`` replaced by ``***``, whole, percent-decoded, or in pieces: a
    parser that cut a password at an unencoded '/' quotes a piece of it as a port.

    >>> redact_secrets("invalid port 'Zm9v'", "redis://:Zm9v/YmFy@host:6379")
    "invalid port '***'"
    """
    hidden: list[str] = []
    _redact(url, hidden)
    forms = {form for secret in hidden for form in (secret, unquote(secret))}
    # pieces of 3 characters or more: shorter ones would blank out the whole message
    forms |= {p for form in forms for p in re.split(r"[^\w.~%+=-]+", form) if len(p) >= 3}
    for form in sorted(forms, key=len, reverse=True):
        if form and form != _HIDDEN:
            text = text.replace(form, _HIDDEN)
    return text


def _redact(url: str, hidden: list[str]) -> str:
    """``url`` redacted; what was hidden is appended to ``hidden``."""
    pieces = _NEXT_URL.split(url)
    # odd items are the separators that split() kept
    return "".join(p if i % 2 else _redact_one(p, hidden) for i, p in enumerate(pieces))


def _redact_one(url: str, hidden: list[str]) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return _redact_params(url, hidden)
    at = _userinfo_end(rest)
    if at is None:
        return f"{scheme}://{_redact_params(rest, hidden)}"
    userinfo = _redact_userinfo(scheme, rest[:at], hidden)
    return f"{scheme}://{userinfo}@{_redact_params(rest[at + 1 :], hidden)}"


def _userinfo_end(rest: str) -> int | None:
    """Where the userinfo ends: the last '@' followed by hosts then a path, query or the
    end. The last, not the first: a password with an unencoded '@', '/', '?' or '#' is
    then hidden whole rather than cut where a URL parser would cut it."""
    if rest.startswith("/"):  # no authority (sqlite:///path)
        return None
    found = None
    at = rest.find("@")
    while at != -1:
        if _HOSTS.match(rest, at + 1):
            found = at
        at = rest.find("@", at + 1)
    return found


def _redact_userinfo(scheme: str, userinfo: str, hidden: list[str]) -> str:
    user, colon, password = userinfo.partition(":")
    if colon:
        hidden.append(password)
        return f"{user}:{_HIDDEN}"
    if not userinfo or scheme.lower() in _USER_NAMED_SCHEMES:
        return userinfo
    hidden.append(userinfo)
    return _HIDDEN


def _redact_params(text: str, hidden: list[str]) -> str:
    kept: list[str] = []
    done = 0
    for param in _PARAM.finditer(text):
        if param.start() < done:
            continue
        value = _VALUE.match(text, param.end())
        assert value is not None  # it matches the empty string
        if _SECRET_NAME.search(unquote(param["name"]).lower()):
            hidden.append(value[0].strip("'"))
            kept += [text[done : param.end()], _HIDDEN]
            done = value.end()
        elif "://" in unquote(value[0]):  # a URL in a parameter (amqp's ?results=redis://...)
            kept += [text[done : param.end()], _redact_nested(value[0], hidden)]
            done = value.end()
    return "".join([*kept, text[done:]])


def _redact_nested(value: str, hidden: list[str]) -> str:
    """A URL given as a parameter's value, redacted, in the encoding it came in."""
    plain = unquote(value)
    redacted = _redact(plain, hidden)
    return quote(redacted, safe="*") if plain != value else redacted


def shown_url(url: str) -> str:
    """``url`` as logs and the CLI show it: without its password, and with a ``sqlite://``
    path made absolute, since a relative one depends on the directory of each process.

    >>> shown_url("sqlite:///conveyor.db")  # doctest: +SKIP
    'sqlite:////srv/app/conveyor.db'
    """
    path = sqlite_path(url)
    return redact_url(f"sqlite:///{path}" if path is not None else url)


def sqlite_path(url: str) -> Path | None:
    """The absolute database path of a ``sqlite://`` URL; None for any other URL, or one
    the broker will refuse with its own message."""
    if urlsplit(url).scheme.lower() != "sqlite":
        return None
    from conveyor.brokers.sqlite.connection import path_from_url

    try:
        return path_from_url(url)
    except ConfigurationError:
        return None


def _load(url: str, which: int) -> Any:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _REGISTRY:
        known = ", ".join(f"{s}://" for s in sorted(_REGISTRY))
        raise ConfigurationError(
            f"unknown broker URL scheme in {redact_url(url)!r}; known: {known}"
        )
    target = _REGISTRY[scheme][which]
    assert target is not None
    extra = _REGISTRY[scheme][2]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'conveyor-tasks[{extra}]'" if extra else "reinstall conveyor-tasks"
        raise ConfigurationError(
            f"the {scheme}:// backend could not be imported ({exc}); {hint}"
        ) from exc
    return getattr(module, attr)


def broker_class_for(url: str) -> Any:
    """The broker class that serves ``url``'s scheme."""
    return _load(url, 0)


def result_store_class_for(url: str) -> Any:
    """The result store class that serves ``url``'s scheme."""
    return _load(url, 1)
