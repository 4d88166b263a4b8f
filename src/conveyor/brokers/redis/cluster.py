"""The Redis broker on a Redis Cluster: ``Conveyor("redis+cluster://h1:7000,h2:7001/")``.

Every key of one queue shares the hash tag ``{prefix:queue}`` (``keys.py``), so each
queue lives in one slot, queues spread over the masters, and every queue transition
(publish, fetch, start, ack, retry, dead-letter, release, renew, reap, abort) stays one
atomic script in that slot. What lives outside a queue's slot, and how its write is
ordered so that nothing is lost (G1):

- **Results and progress** (``<prefix>:result:<id>``, one slot per task): stored *before*
  the settlement script that acknowledges the task, and only for deliveries whose lease
  this worker still holds (renewed, owner-checked, one round trip before). A
  crash between the two leaves the task leased with its result stored; it runs again
  after its lease (G2) and its new result replaces the first. A zombie is fenced by the
  renewal, except in the milliseconds between the renewal and the result write: a lease
  reaped exactly then lets a late result of a real run be stored, then its ack refused.
- **An abort's result**: stored after abort.lua dequeued the message (storing it first
  would answer waiters of a task that turns out to be running). A crash between the two
  leaves the task aborted without a stored result; ``abort()`` raised, so the caller knows.
- **A reused task id's old result** and **a requeued dead letter's result**: deleted
  before the script that writes the new run, so an old outcome never answers the new run.
- **Worker heartbeats, schedules, the event log, counts**: each one key or one hash tag,
  written outside any queue transition.

Workflows are not offered here: a workflow step publishes to other queues in the same
script as the acknowledgement, which a cluster cannot do atomically across slots
(``capabilities`` leaves out ``WORKFLOWS``; the app refuses them with a clear error).

Fetching: the free slots are shared among the queues and every queue's ``fetch.lua``
goes out in one pipeline, which redis-py splits by node, so a worker on several queues
pays one round trip per node, not per queue. An idle worker cannot block in one
``XREADGROUP`` across queues of different slots; it sets ``{prefix:queue}:idle`` on its
queues, listens on their sharded channels ``{prefix:queue}:wake`` (``SSUBSCRIBE``, served
by the queue's own master), and waits until a script that adds work announces it with
``SPUBLISH`` (``wake`` in ``lua/lib.lua``), the earliest delayed message is due, or
``fetch_wait`` passes. Wake-ups are hints: a lost one costs at most ``fetch_wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import msgspec
import redis

from conveyor.brokers.base import (
    Ack,
    Barrier,
    BrokerOptions,
    Capability,
    DeadLetter,
    Delivery,
    Outgoing,
    Settlement,
    StoredResult,
    WorkflowRecord,
)
from conveyor.brokers.redis.broker import RedisBroker, _raise_settle_error
from conveyor.clock import FaultPause, SystemClock
from conveyor.errors import ConfigurationError, SettlementRefused
from conveyor.result import AbortOutcome

__all__ = ["RedisClusterBroker", "ShardWaker"]

log = logging.getLogger("conveyor.redis")

_NO_WORKFLOWS = (
    "workflows are not supported on Redis Cluster: a step's follow-up spans queues in "
    "other slots; use a redis:// or redis+sentinel:// broker for workflows"
)


class RedisClusterBroker(RedisBroker):
    """Redis Streams broker on a Redis Cluster; see the module docstring."""

    capabilities = frozenset(Capability) - {Capability.WORKFLOWS}

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        super().__init__(url, options)
        self._shards = ShardWaker(lambda: self.client)
        self._turn = 0  # which queue gets the odd free slots next (fairness)

    async def close(self) -> None:
        await self._shards.close()
        await super().close()

    async def _check_server(self) -> None:
        """The single-server checks, on every master."""
        try:
            replies = await self.client.execute_command(
                "CONFIG", "GET", "maxmemory-policy", target_nodes=self.client.PRIMARIES
            )
        except redis.ResponseError:
            return
        for node, reply in replies.items() if isinstance(replies, dict) else []:
            policy = reply.get("maxmemory-policy", reply.get(b"maxmemory-policy", b""))
            if policy not in (b"noeviction", "noeviction", b"", ""):
                log.warning(
                    "Redis Cluster node %s evicts keys (maxmemory-policy=%s): queued tasks "
                    "can be lost; set maxmemory-policy noeviction",
                    node,
                    policy,
                )

    # -- script calls --------------------------------------------------------------

    async def _call_scripts(self, calls: Sequence[tuple[str, str, Sequence[Any]]]) -> list[Any]:
        """One pipeline, split by node. A node that lost its script cache (a replica
        promoted by a failover has none) answers NOSCRIPT without running the call: those
        calls, and only those, run again one by one, which loads the script there."""
        async with self.client.pipeline(transaction=False) as pipe:
            for name, tag, args in calls:
                await self.scripts.call(name, tag, args, client=pipe)
            answers: list[Any] = await pipe.execute(raise_on_error=False)
        for i, answer in enumerate(answers):
            if isinstance(answer, redis.exceptions.NoScriptError):
                name, tag, args = calls[i]
                answers[i] = await self.scripts.call(name, tag, args)
            elif isinstance(answer, Exception):
                raise answer
        return answers

    # -- publish -------------------------------------------------------------------

    async def publish(self, batch: Sequence[Outgoing]) -> list[str]:
        if any(item.workflow for item in batch):
            raise ConfigurationError(_NO_WORKFLOWS)
        reused = [item.task_id for item in batch if item.reused_id]
        if reused:
            # the old run's result and progress go first (another slot): see the docstring
            await self._forget_results(reused)
            batch = [msgspec.structs.replace(item, reused_id=False) for item in batch]
        return await super().publish(batch)

    async def _forget_results(self, task_ids: Sequence[str]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.delete(self.keys.result(task_id))
                pipe.delete(self.keys.progress(task_id))
            await pipe.execute()

    # -- fetch ---------------------------------------------------------------------

    async def _claim(self, queues: Sequence[str], count: int) -> list[Delivery]:
        """fetch.lua for every queue in one pipeline (one round trip per node), the free
        slots shared among the queues, the odd ones in turn."""
        for queue in queues:
            await self._register_queue(queue)
        if not queues or count <= 0:
            return []
        share, odd = divmod(count, len(queues))
        start = self._turn % len(queues)
        self._turn += 1
        order = [*queues[start:], *queues[:start]]
        asks = [(queue, share + (1 if i < odd else 0)) for i, queue in enumerate(order)]
        asks = [(queue, n) for queue, n in asks if n > 0]
        answers = await self._call_scripts(
            [
                ("fetch", self.keys.tag(queue), [self.keys.group, self.consumer, n, ""])
                for queue, n in asks
            ]
        )
        out: list[Delivery] = []
        for (queue, _), flat in zip(asks, answers, strict=True):
            rows = [flat[i : i + 7] for i in range(0, len(flat), 7)]
            out += await self._admit(queue, rows)
        return out

    def interrupt_fetch(self) -> None:
        self._shards.interrupt()

    def _fetch_interrupted(self) -> bool:
        return self._shards.take_interrupt()

    async def _wait_for_work(
        self, queues: Sequence[str], count: int, wait: float
    ) -> list[Delivery]:
        """Mark the queues idle, listen on their wake channels, claim once more (work
        that came before the mark), then wait for a wake-up, the earliest due delayed
        message, or ``wait``."""
        shards = self._shards
        if shards.interrupted:
            return []
        tags = [self.keys.tag(queue) for queue in queues]
        await shards.listen({f"{tag}:wake" for tag in tags})
        shards.clear()
        mark_ms = max(int((wait + 5.0) * 1000), 1)
        async with self.client.pipeline(transaction=False) as pipe:
            for queue, tag in zip(queues, tags, strict=True):
                pipe.set(f"{tag}:idle", 1, px=mark_ms)
                pipe.zrange(self.keys.delayed(queue), 0, 0, withscores=True)
            answers = await pipe.execute()
        out = await self._claim(queues, count)
        if out:
            return out
        dues = [int(first[0][1]) for first in answers[1::2] if first]
        if dues:
            seconds, micros = await self.client.time()
            server_now = int(seconds) + int(micros) / 1e6  # due times are server times
            wait = min(wait, min(dues) / 1000.0 - server_now)
        if wait > 0.001:
            await shards.wait(wait)
        return []

    # -- settle --------------------------------------------------------------------

    async def settle(self, batch: Sequence[Settlement]) -> list[bool]:
        """Results first (of the deliveries this worker still leases: a renewal is the
        ownership check), then the settlement scripts; see the module docstring."""
        carrying: list[tuple[Delivery, StoredResult]] = []
        stripped: list[Settlement] = []
        for delivery, outcome in batch:
            if isinstance(outcome, Ack | DeadLetter):
                if outcome.follow is not None:
                    raise SettlementRefused(_NO_WORKFLOWS)
                if outcome.result is not None:
                    carrying.append((delivery, outcome.result))
                    outcome = msgspec.structs.replace(outcome, result=None)
            stripped.append((delivery, outcome))
        if carrying:
            try:
                owned = await self.extend_leases([d for d, _ in carrying], self._options.lease)
                results = [r for (_, r), ok in zip(carrying, owned, strict=True) if ok]
                if results:
                    await self._results.put(results)
            except redis.ResponseError as exc:
                _raise_settle_error(exc)
        return await super().settle(stripped)

    # -- abort ---------------------------------------------------------------------

    async def _run_abort(
        self, queue: str, task_id: str, expected: bytes, data: bytes, ttl: int
    ) -> bytes:
        answer = await super()._run_abort(queue, task_id, expected, b"", 0)
        if answer == AbortOutcome.DEQUEUED.value.encode() and data:
            result_ttl = None if ttl < 0 else ttl / 1000.0
            await self._results.put([StoredResult(task_id, data, result_ttl)])
        return answer

    # -- dead letters --------------------------------------------------------------

    async def requeue_dead(self, entry_ids: Sequence[str]) -> int:
        moved = 0
        for queue, ids in (await self._group_by_queue(entry_ids)).items():
            await self._forget_results(ids)  # before the new run can store its own
            moved += int(
                await self.scripts.call(
                    "requeue_dead", self.keys.tag(queue), [self.keys.group, "", *ids]
                )
            )
        return moved

    # -- workflows -----------------------------------------------------------------

    async def open_workflow(
        self, record: WorkflowRecord | None, barriers: Sequence[Barrier] = ()
    ) -> None:
        raise ConfigurationError(_NO_WORKFLOWS)


class ShardWaker:
    """Sharded pub/sub wake-ups for an idle cluster worker: one listening task holds a
    ``ClusterPubSub`` (one connection per master it listens to), subscribes the channels
    :meth:`listen` asks for, and sets an event on any message; after a lost connection
    it subscribes again (a wake-up missed meanwhile costs at most ``fetch_wait``)."""

    _POLL = 0.05  # seconds each node's connection is polled in turn

    def __init__(self, client: Any) -> None:
        self._client = client
        self._wanted: set[str] = set()
        self._subscribed: set[str] = set()
        self._synced = asyncio.Event()
        self._woken = asyncio.Event()
        self._interrupted = False
        self._task: asyncio.Task[None] | None = None

    async def listen(self, channels: set[str]) -> None:
        """Listen on ``channels`` too; returns once they are subscribed (10 s at most:
        past that the wait falls back to its timeout)."""
        if channels <= self._subscribed:
            return
        self._wanted |= channels
        self._synced.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name="conveyor-redis-shards")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), 10.0)

    def clear(self) -> None:
        self._woken.clear()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), timeout)

    def interrupt(self) -> None:
        self._interrupted = True
        self._woken.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    def take_interrupt(self) -> bool:
        interrupted, self._interrupted = self._interrupted, False
        return interrupted

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._subscribed.clear()

    async def _listen(self) -> None:
        pause = FaultPause(SystemClock(), first=0.05, cap=2.0)
        while True:
            pubsub = self._client().pubsub()
            self._subscribed = set()
            try:
                while True:
                    missing = self._wanted - self._subscribed
                    if missing:
                        await pubsub.ssubscribe(*sorted(missing))
                        self._subscribed |= missing
                        self._synced.set()
                        self._woken.set()  # anything announced before: look again
                    message = await pubsub.get_sharded_message(
                        ignore_subscribe_messages=True, timeout=self._POLL
                    )
                    if message is not None:
                        self._woken.set()
                    pause.reset()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("sharded wake-up listener lost its connection", exc_info=True)
                await pause.wait()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
