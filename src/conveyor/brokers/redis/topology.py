"""Which Redis deployment a URL names: one server, a Redis Cluster, or a Sentinel-watched
master, parsed once into a :class:`Topology`.

==========================================================================  ==============
URL                                                                         topology
==========================================================================  ==============
``redis://[[user]:password@]host[:port][/db][?prefix=app]``                 one server
``redis+cluster://[[user]:password@]host:port[,host:port...][?prefix=app]`` Redis Cluster
``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`` Sentinel
==========================================================================  ==============

``rediss`` in place of ``redis`` (``rediss+cluster``, ``rediss+sentinel``) means TLS.
The cluster's hosts are startup nodes: any reachable one is enough, the client learns the
rest. The sentinels' ``service`` is the master's name in their configuration (``sentinel
monitor <service> ...``); the userinfo is the data nodes' credentials, and
``sentinel_password`` (and ``sentinel_username``) in the query authenticates to the
sentinels when they require it. The default port is 6379 for data nodes, 26379 for
sentinels. A cluster has no databases: a path there is refused.
"""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import msgspec

from conveyor.brokers import redact_url
from conveyor.errors import ConfigurationError

__all__ = ["Kind", "Topology", "parse_topology"]


class Kind(StrEnum):
    SINGLE = "single"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


class Topology(msgspec.Struct, frozen=True):
    """A parsed Redis URL. ``url`` is a plain ``redis://`` URL for redis-py (one server:
    the URL itself without our parameters; a cluster or sentinel: the first host, carrying
    the credentials, TLS and connection options every node shares)."""

    kind: Kind
    url: str
    prefix: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    sentinel_auth: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.url.startswith("rediss:")


_DEFAULT_PORTS = {Kind.CLUSTER: 6379, Kind.SENTINEL: 26379}


def parse_topology(url: str) -> Topology:
    """The topology ``url`` names, or :class:`ConfigurationError` naming what is wrong
    with it (never quoting its password).

    >>> parse_topology("redis+cluster://h1:7000,h2:7001/?prefix=shop").nodes
    (('h1', 7000), ('h2', 7001))
    >>> t = parse_topology("redis+sentinel://s1,s2:26380/mymaster/2")
    >>> t.nodes, t.service, t.db
    ((('s1', 26379), ('s2', 26380)), 'mymaster', 2)
    """
    scheme, sep, rest = url.partition("://")
    base, _, variant = scheme.partition("+")
    if not sep or base not in ("redis", "rediss"):
        raise _bad(url, "the scheme must be redis, rediss, redis+cluster or redis+sentinel")
    # the userinfo first: a password may hold '/' or '?', which must not cut the hosts
    userinfo, at, rest = rest.rpartition("@")
    netloc, _, tail = rest.partition("/")
    path, _, query_text = tail.partition("?")
    if "?" in netloc:  # redis+cluster://h:1?prefix=x (no slash before the query)
        netloc, _, query_text = netloc.partition("?")
    query = dict(parse_qsl(query_text, keep_blank_values=True))
    prefix = query.pop("prefix", "conveyor")
    if not prefix:
        raise _bad(url, "prefix must not be empty")
    if variant == "":
        parts = urlsplit(url)
        query_plain = dict(parse_qsl(parts.query))
        query_plain.pop("prefix", None)
        plain = urlunsplit(parts._replace(query=urlencode(query_plain)))
        return Topology(Kind.SINGLE, plain, prefix)
    try:
        kind = Kind(variant)
    except ValueError:
        raise _bad(url, f"unknown Redis topology {variant!r}: use +cluster or +sentinel") from None
    nodes = tuple(_node(url, host, _DEFAULT_PORTS[kind]) for host in netloc.split(","))
    segments = [unquote(s) for s in path.split("/") if s]
    service, db = "", 0
    if kind is Kind.CLUSTER:
        if segments:
            raise _bad(url, "a Redis Cluster has no databases: remove the path")
    else:
        if not segments or len(segments) > 2:
            raise _bad(url, "name the master's service after the hosts: /mymaster[/db]")
        service = segments[0]
        if len(segments) == 2:
            db = _integer(url, segments[1], "the database")
    sentinel_auth: dict[str, str] = {
        name: query.pop(name)
        for name in ("sentinel_username", "sentinel_password")
        if name in query
    }
    host, port = nodes[0]
    shown_host = f"[{host}]" if ":" in host else host
    plain = urlunsplit((base, f"{userinfo}{at}{shown_host}:{port}", f"/{db}", urlencode(query), ""))
    return Topology(kind, plain, prefix, nodes, service, db, sentinel_auth)


def _node(url: str, text: str, default_port: int) -> tuple[str, int]:
    text = text.strip()
    if not text:
        raise _bad(url, "an empty host in the host list")
    if text.startswith("["):  # [::1]:7000
        host, _, after = text[1:].partition("]")
        port_text = after.removeprefix(":")
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            host, port_text = text, ""
    if not host:
        raise _bad(url, f"no host in {text!r}")
    port = _integer(url, port_text, f"the port of {host}") if port_text else default_port
    if not 0 < port < 65536:
        raise _bad(url, f"the port of {host} is out of range")
    return host, port


def _integer(url: str, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _bad(url, f"{what} is not a number") from None


def _bad(url: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"invalid Redis URL {redact_url(url)}: {problem}")
