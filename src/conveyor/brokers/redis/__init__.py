"""``redis://`` and ``rediss://``: Redis Streams broker, result store and schedule store.

Every state change is one Lua script in ``lua/`` (its header states the contract); the
key layout is in :mod:`keys`. Publishes and settlements are batched into one pipeline
per call. Leases are the consumer group's pending-entry idle time: renewed with an
owner-checked ``XCLAIM ... JUSTID`` from the worker's lease thread, and reaped with an
``XAUTOCLAIM`` cursor loop whose min-idle is the only guard. Results are written by the
same script that acknowledges, and waiters are woken by pub/sub, never by polling. An
abort of a running task sets a mark on its job and is announced on a pub/sub channel that
workers listen to; the mark itself is what they check (pub/sub drops messages while a
connection is down).

URLs (``topology.py``): ``redis://[:password@]host:port/db?prefix=conveyor``;
``redis+cluster://host:port,host:port/?prefix=conveyor`` (``cluster.py``: the layout per
slot); ``redis+sentinel://host:26379,host:26379/service/db?prefix=conveyor``.
"""

from conveyor.brokers.redis.broker import RedisBroker as RedisBroker
from conveyor.brokers.redis.cluster import RedisClusterBroker as RedisClusterBroker
from conveyor.brokers.redis.results import RedisResultStore as RedisResultStore
from conveyor.brokers.redis.schedules import RedisScheduleStore as RedisScheduleStore

__all__ = ["RedisBroker", "RedisClusterBroker", "RedisResultStore", "RedisScheduleStore"]
