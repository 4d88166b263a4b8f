"""``nats://``: the NATS JetStream broker, result store, schedule store and event log.

A stream per prefix with work-queue retention holds the messages; one durable pull
consumer per queue, shared by every worker, hands them out, and its AckWait is the lease
(renewed with ``+WPI`` from the lease thread). A job record per task in a KV bucket,
changed only by compare-and-set, counts attempts, fences zombies and carries abort
marks. Results, progress, heartbeats, schedules and idempotency keys live in KV buckets;
dead letters in a stream of their own. docs/nats.md tells the whole story.

URL: ``nats://[user:password@]host:4222?prefix=conveyor`` (parameters: connection.py).
"""

from conveyor.brokers.nats.broker import NatsBroker as NatsBroker
from conveyor.brokers.nats.results import NatsResultStore as NatsResultStore
from conveyor.brokers.nats.schedules import NatsScheduleStore as NatsScheduleStore

__all__ = ["NatsBroker", "NatsResultStore", "NatsScheduleStore"]
