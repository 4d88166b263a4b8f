"""Lease renewal: a lease is the idle time of a message in the consumer group's pending
entries list, renewed by ``extend_lease.lua`` (an owner-checked ``XCLAIM ... JUSTID``).

:class:`RedisLeaseKeeper` renews from the worker's lease thread over a synchronous
connection of its own, so renewals go on while the event loop is busy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from conveyor.brokers.base import Delivery
from conveyor.brokers.redis.connection import SOURCES, sync_client
from conveyor.brokers.redis.keys import Keys
from conveyor.brokers.redis.topology import Kind, Topology

__all__ = ["RedisLeaseKeeper", "idle_ms"]


def idle_ms(lease: float, seconds: float) -> int:
    """The PEL idle time that makes a lease of ``lease`` s expire ``seconds`` from now
    (an extension beyond one lease length is capped at one lease)."""
    return int(max(lease - seconds, 0.0) * 1000)


class RedisLeaseKeeper:
    """Renews leases from the worker's lease thread over its own synchronous connection."""

    def __init__(self, topology: Topology, keys: Keys, consumer: str, lease: float) -> None:
        self._lease = lease
        self._client = sync_client(topology)
        # a cluster pipeline does not carry scripts: one call per queue (each one slot)
        self._pipelined = topology.kind is not Kind.CLUSTER
        self._script = self._client.register_script(SOURCES["extend_lease"])
        self._keys = keys
        self._consumer = consumer

    def renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        by_queue: dict[str, list[int]] = defaultdict(list)
        for i, delivery in enumerate(deliveries):
            by_queue[delivery.queue].append(i)
        out = [False] * len(deliveries)
        calls: list[tuple[str, list[Any]]] = []
        for queue, indexes in by_queue.items():
            args: list[Any] = [self._keys.group, self._consumer, idle_ms(self._lease, seconds)]
            for i in indexes:
                args += list(deliveries[i].token)
            calls.append((self._keys.tag(queue), args))
        order = list(by_queue.values())
        if not self._pipelined:
            answers = [self._script(keys=[tag], args=args) for tag, args in calls]
        else:
            with self._client.pipeline(transaction=False) as pipe:
                for tag, args in calls:
                    self._script(keys=[tag], args=args, client=pipe)
                answers = pipe.execute()
        for indexes, answer in zip(order, answers, strict=True):
            for i, ok in zip(indexes, answer, strict=True):
                out[i] = ok == 1
        return out

    def close(self) -> None:
        self._client.close()
