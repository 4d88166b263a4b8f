"""Parsing Redis URLs into topologies: one server, a cluster, a sentinel-watched master;
bad URLs fail naming the problem, never showing the password."""

from __future__ import annotations

import pytest

from conveyor.brokers.redis.topology import Kind, parse_topology
from conveyor.errors import ConfigurationError


def test_a_cluster_url_lists_its_startup_nodes_and_prefix() -> None:
    t = parse_topology("redis+cluster://:pw@h1:7000,h2,[::1]:7002/?prefix=shop")
    assert t.kind is Kind.CLUSTER
    assert t.nodes == (("h1", 7000), ("h2", 6379), ("::1", 7002))
    assert t.prefix == "shop"
    assert t.url.startswith("redis://:pw@h1:7000/")


def test_a_sentinel_url_names_its_service_database_and_sentinel_credentials() -> None:
    t = parse_topology("rediss+sentinel://u:pw@s1,s2:26380/mymaster/3?sentinel_password=sp")
    assert (t.kind, t.nodes, t.service, t.db) == (
        Kind.SENTINEL,
        (("s1", 26379), ("s2", 26380)),
        "mymaster",
        3,
    )
    assert t.tls and t.sentinel_auth == {"sentinel_password": "sp"}
    assert "sentinel_password" not in t.url


def test_a_plain_url_keeps_its_options_but_not_the_prefix() -> None:
    t = parse_topology("redis://localhost:6379/2?prefix=a&max_connections=4")
    assert (t.kind, t.prefix) == (Kind.SINGLE, "a")
    assert t.url == "redis://localhost:6379/2?max_connections=4"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://:s3cret@h1:70x0", "the port of h1 is not a number"),
        ("redis+cluster://:s3cret@h1:7000/0", "a Redis Cluster has no databases"),
        ("redis+cluster://:s3cret@h1:7000,", "an empty host"),
        ("redis+cluster://:s3cret@h1:99999", "out of range"),
        ("redis+sentinel://:s3cret@s1:26379", "name the master's service"),
        ("redis+sentinel://:s3cret@s1/m/x", "the database is not a number"),
        ("redis+shard://:s3cret@h1", "unknown Redis topology 'shard'"),
        ("redis+cluster://:s3/cret@h1:7000?prefix=", "prefix must not be empty"),
    ],
)
def test_a_bad_url_names_its_problem_and_hides_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_topology(url)
    message = str(caught.value)
    assert problem in message
    assert "s3cret" not in message and "cret" not in message
