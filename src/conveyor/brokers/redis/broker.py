"""The Redis Streams broker: each Delivery transition is one Lua script in ``lua/``.

============  ==============================================================
transition    script (one call per queue, batched in one pipeline)
============  ==============================================================
publish       publish.lua
fetch         fetch.lua, else XREADGROUP BLOCK then start.lua
ack           ack.lua (stores the result too)
retry         retry.lua
dead_letter   dead_letter.lua
release       release.lua
extend_lease  extend_lease.lua (here, or from the lease keeper's thread)
reap          reap.lua (an XAUTOCLAIM cursor loop)
abort         abort.lua
workflows     a Follow applied by ack.lua / dead_letter.lua in the settlement's
              script; open_workflow.lua, seal_barrier.lua, follow.lua,
              abort_workflow.lua (workflows.py, lua/workflows.lua)
============  ==============================================================

The header of each script states its contract; the key layout is in ``keys.py``.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

import redis

from conveyor.brokers import redact_url
from conveyor.brokers.base import (
    AbortResult,
    AbortSignalBuffer,
    Ack,
    Barrier,
    BarrierState,
    BrokerOptions,
    Capability,
    DeadLetter,
    DeadLetterEntry,
    Delivery,
    Follow,
    Outgoing,
    Place,
    QueueDepth,
    Retry,
    Settlement,
    StoredResult,
    TaskCounts,
    TaskLocation,
    WorkerInfo,
    WorkflowRecord,
)
from conveyor.brokers.redis.connection import Scripts, new_client, reachable_client, split_url
from conveyor.brokers.redis.counts import RedisCounters
from conveyor.brokers.redis.events import RedisEventStore
from conveyor.brokers.redis.keys import Keys
from conveyor.brokers.redis.lease import RedisLeaseKeeper, idle_ms
from conveyor.brokers.redis.pubsub import ChannelListener
from conveyor.brokers.redis.results import RedisResultStore
from conveyor.brokers.redis.schedules import RedisScheduleStore
from conveyor.brokers.redis.wakeup import FetchWaker
from conveyor.brokers.redis.workflows import RedisWorkflows, follow_args
from conveyor.errors import BrokerUnavailable, SettlementRefused
from conveyor.result import AbortOutcome

__all__ = ["RedisBroker"]

log = logging.getLogger("conveyor.redis")

_PLACE = {b"running": Place.LEASED, b"dead": Place.DEAD}


class RedisBroker:
    """Redis Streams broker: ``Conveyor("redis://localhost:6379/0")``."""

    capabilities = frozenset(Capability)
    claim_checks_aborted_workflows = True  # lib.lua's start() marks such a task aborted

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        self.url = url
        self._options = options or BrokerOptions()
        self._topology, prefix = split_url(url)
        self.keys = Keys(prefix)
        # what fetch.lua and start.lua read a task's workflow record under: a task of an
        # aborted workflow starts aborted (lib.lua's start); none on a cluster
        self._workflow_prefix = prefix if Capability.WORKFLOWS in self.capabilities else ""
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._client: Any = None  # redis-py's reply types are too loose to narrow usefully
        self._blocking: Any = None
        self._scripts: Scripts | None = None
        self._known_queues: set[str] = set()
        self._results = RedisResultStore(url, self._options, broker=self)
        self._aborts = AbortSignalBuffer()
        self._abort_listener = ChannelListener(
            "conveyor-redis-aborts",
            lambda: self.client,
            self.keys.aborts_channel,
            lambda payload: self._aborts.add([payload.decode(errors="replace")]),
            self._abort_resubscribed,
        )
        self._schedules = RedisScheduleStore(self)
        self._events = RedisEventStore(self, self._options.events_max)
        self._counters = RedisCounters(self, self._options.counts_kept)
        self._workflows = RedisWorkflows(self)
        self._waker = FetchWaker(lambda: self.client, lambda: self._blocking, self.keys.delays)

    # -- lifecycle -----------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            raise BrokerUnavailable(f"the Redis broker {redact_url(self.url)} is not connected")
        return self._client

    @property
    def scripts(self) -> Scripts:
        assert self._scripts is not None, "connect() first"
        return self._scripts

    async def connect(self) -> None:
        if self._client is not None:
            return
        client = await reachable_client(self.url, self._topology, self._options)
        self._client = client
        self._blocking = new_client(self._topology, self._options, blocking=True)
        self._scripts = Scripts(client)
        await self._check_server()
        for queue in self._options.queues:
            await self._register_queue(queue)

    async def close(self) -> None:
        await self._abort_listener.close()
        await self._waker.close()
        self._aborts = AbortSignalBuffer()  # its event may be bound to this event loop
        await self._results.close()
        for client in (self._client, self._blocking):
            if client is not None:
                await client.aclose()
        self._client = self._blocking = None

    def clone(self) -> RedisBroker:
        return type(self)(self.url, self._options)

    def result_store(self) -> RedisResultStore:
        return self._results

    def schedule_store(self) -> RedisScheduleStore:
        return self._schedules

    def event_store(self) -> RedisEventStore:
        return self._events

    async def _check_server(self) -> None:
        """Warn about settings that lose tasks (reliability.md §4.1, operational checks)."""
        try:
            config = await self.client.config_get("maxmemory-policy")
            policy = config.get(b"maxmemory-policy", config.get("maxmemory-policy", b""))
            if policy not in (b"noeviction", "noeviction", b"", "") and _first_time(
                "eviction", self.url
            ):
                log.warning(
                    "Redis %s evicts keys (maxmemory-policy=%s): queued tasks can be lost; "
                    "set maxmemory-policy noeviction",
                    redact_url(self.url),
                    policy,
                )
            persistence = await self.client.config_get("appendonly")
            save = await self.client.config_get("save")
            aof = persistence.get(b"appendonly", persistence.get("appendonly"))
            snapshots = save.get(b"save", save.get("save"))
            if aof in (b"no", "no") and not snapshots and _first_time("persistence", self.url):
                log.warning(
                    "Redis %s has persistence off (appendonly no, no save points): a Redis "
                    "restart loses every queued task; use appendonly yes with appendfsync always "
                    "for durable enqueues",
                    redact_url(self.url),
                )
        except redis.ResponseError:
            log.debug("CONFIG is not available on %s; skipping checks", redact_url(self.url))

    async def _register_queue(self, queue: str) -> None:
        if queue in self._known_queues:
            return
        # priority 0 and the front stream exist from the start, so a blocking read that
        # begins on an empty queue already watches the stream recovered work lands in
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.sadd(self.keys.queues, queue)
            pipe.zadd(self.keys.priorities(queue), {"0": 0, "front": float("inf")}, nx=True)
            for level in (0, "front"):
                pipe.xgroup_create(
                    self.keys.stream(queue, level), self.keys.group, id="0", mkstream=True
                )
            results = await pipe.execute(raise_on_error=False)
        for error in results[2:]:
            if isinstance(error, Exception) and "BUSYGROUP" not in str(error):
                raise error
        self._known_queues.add(queue)

    async def _all_queues(self) -> list[str]:
        members = await self.client.smembers(self.keys.queues)
        return sorted(m.decode() for m in members)

    # -- publish -------------------------------------------------------------------

    async def publish(self, batch: Sequence[Outgoing]) -> list[str]:
        by_queue: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(batch):
            by_queue[item.queue].append(index)
        for queue in by_queue:
            await self._register_queue(queue)
        ids: list[str] = [""] * len(batch)
        if len(by_queue) == 1:  # one EVALSHA: a pipeline's execute() asks SCRIPT EXISTS first
            ((queue, indexes),) = by_queue.items()
            args = self._publish_args(batch, indexes)
            order, answers = (
                [indexes],
                [await self.scripts.call("publish", self.keys.tag(queue), args)],
            )
        else:
            order = list(by_queue.values())
            answers = await self._call_scripts(
                [
                    ("publish", self.keys.tag(queue), self._publish_args(batch, indexes))
                    for queue, indexes in by_queue.items()
                ]
            )
        for indexes, answer in zip(order, answers, strict=True):
            for i, task_id in zip(indexes, answer, strict=True):
                ids[i] = task_id.decode() if isinstance(task_id, bytes) else str(task_id)
        return ids

    def _publish_args(self, batch: Sequence[Outgoing], indexes: Sequence[int]) -> list[Any]:
        args: list[Any] = [self.keys.group, self.keys.prefix]
        for i in indexes:
            item = batch[i]
            args += [
                item.task_id,
                item.body,
                item.priority,
                math.ceil(item.not_before * 1000),  # never before it is due
                item.key or "",
                int(item.key_ttl * 1000),
                1 if item.reused_id else 0,
                item.workflow or "",
            ]
        return args

    async def _call_scripts(self, calls: Sequence[tuple[str, str, Sequence[Any]]]) -> list[Any]:
        """Each (script, tag, args) call, in one pipeline; their answers, in order. The
        first error is raised."""
        async with self.client.pipeline(transaction=False) as pipe:
            for name, tag, args in calls:
                await self.scripts.call(name, tag, args, client=pipe)
            answers: list[Any] = await pipe.execute()
        return answers

    # -- fetch ---------------------------------------------------------------------

    async def fetch(self, queues: Sequence[str], count: int, wait: float) -> list[Delivery]:
        deadline = time.monotonic() + wait
        while True:
            out = await self._claim(queues, count)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0.001:
                return out
            out = await self._wait_for_work(queues, count, remaining)
            if out or self._fetch_interrupted():
                return out
            # the read ended empty: a delayed message fell due, or the wait is over

    async def _claim(self, queues: Sequence[str], count: int) -> list[Delivery]:
        """fetch.lua per queue: promote due delayed messages, claim new ones."""
        out: list[Delivery] = []
        for queue in queues:
            remaining = count - len(out)
            if remaining <= 0:
                break
            await self._register_queue(queue)
            flat = await self.scripts.call(
                "fetch",
                self.keys.tag(queue),
                [self.keys.group, self.consumer, remaining, self._workflow_prefix],
            )
            rows = [flat[i : i + 7] for i in range(0, len(flat), 7)]
            out += await self._admit(queue, rows)
        return out

    async def _admit(self, queue: str, rows: Sequence[Sequence[Any]]) -> list[Delivery]:
        """Deliveries from claimed rows (stream, entry id, task id, body, attempt, crashes,
        abort mark). A row whose task id is not UTF-8 (an entry written by hand) is
        dead-lettered alone, with its raw bytes, so the rest of the batch runs."""
        out: list[Delivery] = []
        broken: list[Any] = []
        for stream, entry_id, raw_id, body, attempt, crashes, aborted in rows:
            try:
                task_id = raw_id.decode()
            except UnicodeDecodeError:
                reason = "malformed entry: its task id is not UTF-8 text"
                log.error("dead-lettering entry %s of %s: %s", entry_id, queue, reason)
                broken += [stream, entry_id, raw_id, body, reason, b"", 0, 0]
                continue
            out.append(
                Delivery(
                    self,
                    queue,
                    task_id,
                    body,
                    int(attempt),
                    (stream, entry_id),
                    crashes=int(crashes),
                    abort_requested=aborted == 1,
                )
            )
        if broken:
            args = [self.keys.group, self.consumer, self.keys.prefix, *broken]
            await self.scripts.call("dead_letter", self.keys.tag(queue), args)
        return out

    def interrupt_fetch(self) -> None:
        self._waker.interrupt()

    def _fetch_interrupted(self) -> bool:
        """interrupt_fetch() was called since the last look (and is taken)."""
        return self._waker.take_interrupt()

    async def _wait_for_work(
        self, queues: Sequence[str], count: int, wait: float
    ) -> list[Delivery]:
        """Wait in XREADGROUP BLOCK until a message arrives, ``wait`` passes, or the
        earliest delayed message is due (a new earlier one ends the wait: wakeup.py)."""
        waker = self._waker
        if waker.interrupted:
            return []
        await waker.start()  # listening before the look below, so no announcement is missed
        waker.look()
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.time()
            for queue in queues:
                pipe.zrevrange(self.keys.priorities(queue), 0, -1)
                pipe.zrange(self.keys.delayed(queue), 0, 0, withscores=True)
            answers = await pipe.execute()
        seconds, micros = answers[0]
        server_now = int(seconds) + int(micros) / 1e6  # delays are due by the server's clock
        streams: dict[bytes | str, str] = {}
        stream_queue: dict[bytes | str, tuple[str, bytes]] = {}
        tags = {self.keys.tag(queue) for queue in queues}
        due_ms = [waker.heard(tags)]
        rest = answers[1:]
        for queue, prios, first_due in zip(queues, rest[::2], rest[1::2], strict=True):
            for prio in prios:
                key = self.keys.stream(queue, prio.decode())
                streams[key] = ">"
                stream_queue[key.encode()] = (queue, prio)
            if first_due:
                due_ms.append(int(first_due[0][1]))
        known = [due for due in due_ms if due is not None]
        due_at = min(known) / 1000.0 if known else None
        if (due_at is not None and due_at - server_now <= 0.001) or not streams:
            return []
        if waker.interrupted:
            return []
        assert self._blocking is not None
        try:
            # the server ends a BLOCK only on its cron tick (up to 100 ms late at hz 10),
            # so the waker ends it at the due time; the server's timeout is the fallback
            with waker.blocking(tags, wait, server_now - time.time(), due_at):
                reply = await self._blocking.xreadgroup(
                    self.keys.group,
                    self.consumer,
                    streams,
                    count=count,
                    block=max(int(wait * 1000), 1),
                )
        except redis.ResponseError as exc:
            # NOGROUP: the group is gone; UNBLOCKED: the stream was deleted while we waited.
            # Both mean the server lost data (restart without persistence, FLUSHALL):
            # recreate the groups at 0 and carry on (reliability.md S9)
            if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                raise
            log.error(
                "Redis %s lost queue state (%s); recreating consumer groups at 0",
                redact_url(self.url),
                exc,
            )
            self._known_queues.clear()
            for queue in queues:
                await self._register_queue(queue)
            return []
        if not reply:
            return []
        return await self._start(reply, stream_queue)

    async def _start(
        self, reply: list[Any], stream_queue: dict[bytes | str, tuple[str, bytes]]
    ) -> list[Delivery]:
        per_queue: dict[str, list[tuple[bytes, bytes, bytes]]] = defaultdict(list)
        for stream, entries in reply:
            queue, prio = stream_queue[stream]
            for entry_id, _fields in entries:
                per_queue[queue].append((stream, entry_id, prio))
        out: list[Delivery] = []
        for queue, rows in per_queue.items():
            args = [self._workflow_prefix, *(value for row in rows for value in row)]
            flat = await self.scripts.call("start", self.keys.tag(queue), args)
            started = [
                (stream, entry_id, *flat[i : i + 5])
                for (stream, entry_id, _), i in zip(rows, range(0, len(flat), 5), strict=True)
            ]
            out += await self._admit(queue, started)
        return out

    # -- settle --------------------------------------------------------------------

    async def settle(self, batch: Sequence[Settlement]) -> list[bool]:
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for index, (delivery, outcome) in enumerate(batch):
            groups[(type(outcome).__name__, delivery.queue)].append(index)
        keys = self.keys
        done = [False] * len(batch)
        if len(groups) == 1:  # the usual batch (acks of one queue): one EVALSHA, no
            # pipeline, whose execute() would ask SCRIPT EXISTS first, a round trip more
            ((kind, queue), indexes) = next(iter(groups.items()))
            args = self._settle_args(kind, batch)
            try:
                answer = await self.scripts.call(_SCRIPT_FOR[kind], keys.tag(queue), args)
            except redis.ResponseError as exc:
                _raise_settle_error(exc)
            return [ok == 1 for ok in answer]
        order = list(groups.values())
        calls = [
            (
                _SCRIPT_FOR[kind],
                keys.tag(queue),
                self._settle_args(kind, [batch[i] for i in indexes]),
            )
            for (kind, queue), indexes in groups.items()
        ]
        try:
            answers = await self._call_scripts(calls)
        except redis.ResponseError as exc:
            _raise_settle_error(exc)
        for indexes, answer in zip(order, answers, strict=True):
            for i, ok in zip(indexes, answer, strict=True):
                done[i] = ok == 1
        return done

    def _settle_args(self, kind: str, items: Sequence[Settlement]) -> list[Any]:
        group, consumer, prefix = self.keys.group, self.consumer, self.keys.prefix
        args: list[Any]
        if kind == "Ack":
            args = [group, consumer, prefix]
            for delivery, outcome in items:
                assert isinstance(outcome, Ack)
                stream, entry = delivery.token
                data, ttl = _result_args(outcome.result)
                args += [stream, entry, delivery.task_id, data, ttl]
                if outcome.follow is None:  # the hot path: no workflow
                    args.append(0)
                else:
                    args += follow_args(outcome.follow)
        elif kind == "Retry":
            args = [group, consumer, prefix]
            for delivery, outcome in items:
                assert isinstance(outcome, Retry)
                stream, entry = delivery.token
                delay_ms = math.ceil(max(outcome.delay, 0.0) * 1000)
                uncharge = 0 if outcome.charge else 1
                args += [stream, entry, delivery.task_id, delay_ms, delivery.body, uncharge]
        elif kind == "DeadLetter":
            args = [group, consumer, prefix]
            for delivery, outcome in items:
                assert isinstance(outcome, DeadLetter)
                stream, entry = delivery.token
                data, ttl = _result_args(outcome.result)
                args += [stream, entry, delivery.task_id, delivery.body, outcome.reason, data, ttl]
                args += follow_args(outcome.follow)
        else:
            args = [group, consumer]
            for delivery, _ in items:
                stream, entry = delivery.token
                args += [stream, entry, delivery.task_id, delivery.body]
        return args

    # -- flow control ----------------------------------------------------------------

    async def take_token(self, key: str, rate: float, burst: int) -> float:
        return float(await self.scripts.call("take_token", self.keys.bucket(key), [rate, burst]))

    async def acquire_permit(self, key: str, limit: int, holder: str, lease: float) -> bool:
        args = [limit, holder, math.ceil(lease * 1000)]
        return bool(await self.scripts.call("acquire_permit", self.keys.permits(key), args))

    async def renew_permits(self, permits: Sequence[tuple[str, str]], lease: float) -> None:
        holders: dict[str, list[str]] = {}
        for key, holder in permits:
            holders.setdefault(key, []).append(holder)
        lease_ms = math.ceil(lease * 1000)
        await self._call_scripts(
            [
                ("renew_permits", self.keys.permits(key), [lease_ms, *some])
                for key, some in holders.items()
            ]
        )

    async def release_permits(self, permits: Sequence[tuple[str, str]]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for key, holder in permits:
                pipe.zrem(self.keys.permits(key), holder)
            await pipe.execute()

    async def put_marks(self, marks: Mapping[str, str], ttl: float) -> None:
        ttl_ms = max(math.ceil(ttl * 1000), 1)
        async with self.client.pipeline(transaction=False) as pipe:
            for name, value in marks.items():
                pipe.set(self.keys.mark(name), value, px=ttl_ms)
            await pipe.execute()

    async def get_marks(self, names: Sequence[str]) -> list[str | None]:
        async with self.client.pipeline(transaction=False) as pipe:  # split by node on a cluster
            for name in names:
                pipe.get(self.keys.mark(name))
            values = await pipe.execute()
        return [None if v is None else v.decode() for v in values]

    # -- leases --------------------------------------------------------------------

    async def extend_leases(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        by_queue: dict[str, list[int]] = defaultdict(list)
        for i, delivery in enumerate(deliveries):
            by_queue[delivery.queue].append(i)
        out = [False] * len(deliveries)
        order = list(by_queue.values())
        calls = []
        for queue, indexes in by_queue.items():
            args: list[Any] = [
                self.keys.group,
                self.consumer,
                idle_ms(self._options.lease, seconds),
            ]
            for i in indexes:
                args += list(deliveries[i].token)
            calls.append(("extend_lease", self.keys.tag(queue), args))
        answers = await self._call_scripts(calls)
        for indexes, answer in zip(order, answers, strict=True):
            for i, ok in zip(indexes, answer, strict=True):
                out[i] = ok == 1
        return out

    def lease_keeper(self) -> RedisLeaseKeeper:
        return RedisLeaseKeeper(self._topology, self.keys, self.consumer, self._options.lease)

    async def reap(self) -> int:
        lease_ms = max(int(self._options.lease * 1000), 1)
        moved = 0
        for queue in await self._all_queues():
            answer = await self.scripts.call(
                "reap", self.keys.tag(queue), [self.keys.group, self.consumer, lease_ms, 1000]
            )
            moved += int(answer[0]) + int(answer[1])
            lost = [x.decode() for x in answer[2:]]
            if lost:
                log.error(
                    "queue %s: %d leased message(s) were deleted from the stream by someone "
                    "else (XTRIM/XDEL?) and are lost: %s",
                    queue,
                    len(lost),
                    ", ".join(lost),
                )
        return moved

    # -- abort ---------------------------------------------------------------------

    async def abort(self, task_id: str, result: AbortResult) -> AbortOutcome:
        """Read where the task is (and its body, for the result), then run abort.lua, which
        re-checks that nothing moved; a move between the two (a fetch, a retry) is rare
        and just means another round."""
        for _ in range(10):
            found = await self._find_job(task_id, ("s", "a", "e", "b", "p"))
            if found is None:
                return AbortOutcome.UNKNOWN
            queue, (state, attempts, entry, body, prio) = found
            expected: bytes = b""
            data, ttl = b"", 0
            if state == b"queued":
                if entry is not None:
                    expected = entry
                    body = await self._entry_body(queue, prio or b"0", entry, task_id)
                data, ttl = _result_args(result(body or b"", int(attempts or 0)))
            answer = await self._run_abort(queue, task_id, expected, data, ttl)
            if answer != b"changed":
                return AbortOutcome(answer.decode())
        raise BrokerUnavailable(
            f"could not abort task {task_id}: it kept moving between queue states; try again"
        )

    async def _run_abort(
        self, queue: str, task_id: str, expected: bytes, data: bytes, ttl: int
    ) -> bytes:
        """abort.lua, which stores the aborted result when it dequeues the message."""
        answer: bytes = await self.scripts.call(
            "abort",
            self.keys.tag(queue),
            [self.keys.group, self.keys.prefix, task_id, expected, data, ttl],
        )
        return answer

    async def _entry_body(self, queue: str, prio: bytes, entry: bytes, task_id: str) -> bytes:
        """The body of a queued message's stream entry (its priority's stream, or the
        front stream); b"" when it is gone (abort.lua then sees the change)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for level in (prio.decode(), "front"):
                pipe.xrange(self.keys.stream(queue, level), entry, entry)
            answers = await pipe.execute()
        for rows in answers:
            for _, fields in rows:
                if fields.get(b"i") == task_id.encode():
                    return bytes(fields.get(b"b", b""))
        return b""

    async def abort_marks(self, deliveries: Sequence[Delivery]) -> list[bool]:
        if not deliveries:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for delivery in deliveries:
                pipe.hget(self.keys.job(delivery.queue, delivery.task_id), "x")
            marks = await pipe.execute()
        return [mark is not None for mark in marks]

    async def wait_abort_signal(self, timeout: float) -> list[str]:
        await self._abort_listener.start()
        return await self._aborts.take(timeout)

    async def _abort_resubscribed(self) -> None:
        self._aborts.wake()  # anything published while we were away: the worker re-checks

    # -- inspection ----------------------------------------------------------------

    async def _find_job(
        self, task_id: str, fields: Sequence[str] = ("s", "a", "d")
    ) -> tuple[str, list[Any]] | None:
        """The queue holding the task's job record and ``fields`` of it, or None."""
        queues = await self._all_queues()
        async with self.client.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.hmget(self.keys.job(queue, task_id), list(fields))
            answers = await pipe.execute()
        for queue, values in zip(queues, answers, strict=True):
            if values[0] is not None:
                return queue, values
        return None

    async def locate(self, task_id: str) -> TaskLocation | None:
        found = await self._find_job(task_id)
        if found is None:
            return None
        state, attempts = found[1][0], int(found[1][1] or 0)
        return TaskLocation(_PLACE.get(state, Place.WAITING), attempts)

    async def queue_depths(self) -> list[QueueDepth]:
        queues = await self._all_queues()
        async with self.client.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.zrevrange(self.keys.priorities(queue), 0, -1)
            prios = await pipe.execute()
        async with self.client.pipeline(transaction=False) as pipe:
            for queue, levels in zip(queues, prios, strict=True):
                for prio in levels:
                    stream = self.keys.stream(queue, prio.decode())
                    pipe.xlen(stream)
                    pipe.xpending(stream, self.keys.group)
                pipe.zcard(self.keys.delayed(queue))
                pipe.xlen(self.keys.dlq(queue))
            answers = iter(await pipe.execute(raise_on_error=False))
        depths = []
        for queue, levels in zip(queues, prios, strict=True):
            length = pending = 0
            for _ in levels:
                xlen, summary = next(answers), next(answers)
                length += xlen if isinstance(xlen, int) else 0
                pending += summary["pending"] if isinstance(summary, dict) else 0
            delayed, dead = next(answers), next(answers)
            depths.append(
                QueueDepth(
                    queue, ready=length - pending, delayed=delayed, running=pending, dead=dead
                )
            )
        return depths

    # -- dead letters --------------------------------------------------------------

    async def dead_letters(
        self, queue: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterEntry]:
        queues = [queue] if queue else await self._all_queues()
        entries: list[DeadLetterEntry] = []
        for name in queues:
            rows = await self.client.xrevrange(self.keys.dlq(name), count=offset + limit)
            entries += [_dead_entry(name, fields) for _, fields in rows]
        entries.sort(key=lambda e: e.failed_at, reverse=True)
        return entries[offset : offset + limit]

    async def get_dead_letter(self, entry_id: str) -> DeadLetterEntry | None:
        found = await self._find_job(entry_id)
        if found is None or found[1][0] != b"dead" or found[1][2] is None:
            return None
        queue, fields = found
        rows = await self.client.xrange(self.keys.dlq(queue), fields[2], fields[2])
        return _dead_entry(queue, rows[0][1]) if rows else None

    async def requeue_dead(self, entry_ids: Sequence[str]) -> int:
        moved = 0
        for queue, ids in (await self._group_by_queue(entry_ids)).items():
            moved += int(
                await self.scripts.call(
                    "requeue_dead", self.keys.tag(queue), [self.keys.group, self.keys.prefix, *ids]
                )
            )
        return moved

    async def delete_dead(self, entry_ids: Sequence[str] | None, queue: str | None = None) -> int:
        if entry_ids is None:
            grouped: dict[str, list[str]] = {}
            for name in [queue] if queue else await self._all_queues():
                rows = await self.client.xrange(self.keys.dlq(name))
                grouped[name] = [_dead_entry(name, fields).id for _, fields in rows]
        else:
            grouped = await self._group_by_queue(entry_ids)
        deleted = 0
        for name, ids in grouped.items():
            if ids:
                deleted += int(await self.scripts.call("delete_dead", self.keys.tag(name), ids))
        return deleted

    async def _group_by_queue(self, task_ids: Sequence[str]) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = defaultdict(list)
        for task_id in task_ids:
            found = await self._find_job(task_id)
            if found is not None:
                grouped[found[0]].append(task_id)
        return grouped

    # -- workers -------------------------------------------------------------------

    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        from conveyor.message import encode_value

        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.workers, info.worker_id, encode_value(info))
            pipe.zadd(self.keys.workers_expiry, {info.worker_id: time.time() + ttl})
            await pipe.execute()

    async def workers(self) -> list[WorkerInfo]:
        import msgspec

        now = time.time()
        expired = await self.client.zrangebyscore(self.keys.workers_expiry, "-inf", now)
        if expired:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hdel(self.keys.workers, *expired)
                pipe.zrem(self.keys.workers_expiry, *expired)
                await pipe.execute()
        alive = await self.client.zrangebyscore(self.keys.workers_expiry, now, "+inf")
        if not alive:
            return []
        records = await self.client.hmget(self.keys.workers, alive)
        return [msgspec.msgpack.decode(r, type=WorkerInfo) for r in records if r is not None]

    # -- workflows (workflows.py) ----------------------------------------------------

    async def open_workflow(
        self, record: WorkflowRecord | None, barriers: Sequence[Barrier] = ()
    ) -> None:
        await self._workflows.open(record, barriers)

    async def seal_barrier(self, barrier_id: str, size: int) -> None:
        await self._workflows.seal(barrier_id, size)

    async def apply_follow(self, follow: Follow) -> None:
        await self._workflows.follow(follow)

    async def barrier(self, barrier_id: str) -> BarrierState | None:
        return await self._workflows.barrier(barrier_id)

    async def barrier_results(self, barrier_id: str, start: int, stop: int) -> list[bytes | None]:
        return await self._workflows.results(barrier_id, start, stop)

    async def abort_workflow(self, workflow_id: str) -> tuple[WorkflowRecord | None, list[str]]:
        return await self._workflows.abort(workflow_id)

    async def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        return await self._workflows.get(workflow_id)

    async def workflows(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[WorkflowRecord]:
        return await self._workflows.listed(state, limit, offset)

    async def workflow_counts(self) -> dict[str, int]:
        return await self._workflows.counts()

    # -- counts (counts.py) ----------------------------------------------------------

    async def record_counts(self, counts: Mapping[tuple[int, str, str, str], int]) -> None:
        await self._counters.record(counts, self._options.clock.now())

    async def counts(self, since: float) -> TaskCounts:
        return await self._counters.read(since, self._options.clock.now())


# (warning, server) pairs already logged by this process: every connection checks the
# server (the app's, the sync portal's, each clone's), but a warning is said once
_WARNED: set[tuple[str, str]] = set()


def _first_time(warning: str, url: str) -> bool:
    parts = urlsplit(url)  # hosts as written: a cluster's or sentinels' list is one key
    server = f"{parts.netloc.rpartition('@')[2]}{parts.path}"
    if (warning, server) in _WARNED:
        return False
    _WARNED.add((warning, server))
    return True


# Redis errors that pass (memory freed, a replica promoted, a script finished): a
# settlement that met one is retried, not refused
_TRANSIENT_ERRORS = frozenset(
    {"OOM", "BUSY", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS"}
)

_SCRIPT_FOR = {"Ack": "ack", "Retry": "retry", "DeadLetter": "dead_letter", "Release": "release"}


def _result_args(result: StoredResult | None) -> tuple[bytes, int]:
    if result is None:
        return b"", 0
    return result.data, -1 if result.ttl is None else max(int(result.ttl * 1000), 1)


def _dead_entry(queue: str, fields: dict[bytes, bytes]) -> DeadLetterEntry:
    return DeadLetterEntry(
        id=fields[b"i"].decode(errors="backslashreplace"),  # a hand-written entry's id
        queue=queue,
        body=fields[b"b"],
        reason=fields[b"r"].decode(errors="replace"),
        attempts=int(fields.get(b"a", b"0")),
        failed_at=int(fields.get(b"t", b"0")) / 1000.0,
    )


def _raise_settle_error(exc: redis.ResponseError) -> NoReturn:
    if str(exc).split(" ", 1)[0] in _TRANSIENT_ERRORS:
        raise exc
    # e.g. "Protocol error: invalid bulk length" for a result over the server's
    # proto-max-bulk-len: the same call would be refused again
    raise SettlementRefused(f"Redis refused it: {exc}") from exc
