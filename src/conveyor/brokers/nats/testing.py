"""Test support: delete everything one prefix created on a NATS server."""

from __future__ import annotations

import contextlib

import nats.js.errors

from conveyor.brokers.nats.connection import connect, parse_url

__all__ = ["delete_namespace"]

_BUCKETS = (
    "jobs",
    "keys",
    "results",
    "workers",
    "schedules",
    "levels",
    "counts",
    "count_minutes",
    "workflows",
    "barriers",
    "slots",
    "flow",
)


async def delete_namespace(url: str) -> None:
    """Delete the streams and KV buckets of the URL's prefix (a test's fresh namespace)."""
    settings = parse_url(url)
    names = settings.names
    nc = await connect(url, settings, "conveyor-cleanup")
    try:
        js = nc.jetstream()
        for stream in (names.tasks, names.dlq, names.events):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(stream)
        for role in _BUCKETS:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_key_value(names.bucket(role))
    finally:
        await nc.close()
