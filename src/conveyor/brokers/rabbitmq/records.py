"""Task records: what RabbitMQ cannot tell (where a task is, its attempts, its key, its
abort mark), kept in Redis beside the results, one Lua script per transition (``lua/``,
each opening with its contract; ``lua/lib.lua`` draws the record).

RabbitMQ holds the messages; the records say which message copy is live, so that every
settlement is fenced (a worker whose lease was taken over changes nothing) and a
redelivered copy of a finished, dead or aborted task is dropped instead of run again.

Without a Redis store (:class:`NoRecords`) a broker runs fire-and-forget: attempts come
from the message's headers and RabbitMQ's delivery count, and there is no status, key or
abort.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from conveyor.brokers.base import (
    AbortResult,
    Barrier,
    Follow,
    Outgoing,
    Place,
    StoredResult,
    TaskLocation,
    WorkflowRecord,
)
from conveyor.brokers.redis.workflows import (
    WorkflowReads,
    abort_answer,
    barrier_args,
    follow_args,
    record_args,
)
from conveyor.errors import BrokerUnavailable, ConfigurationError
from conveyor.result import AbortOutcome

__all__ = ["Claim", "NoRecords", "Pending", "Records", "RedisRecords", "Settle"]

RECORD_TTL_MS = 7 * 86_400_000
"""A waiting or running record lives this long past its due time (renewed at each claim):
a record whose message never reached RabbitMQ (its producer died between the two steps)
frees its idempotency key then."""
FINISHED_TTL_MS = 600_000
"""A finished record is kept at least this long, so that the redelivery of a message whose
AMQP ack was lost (a connection cut right after the result was stored) is dropped."""

_SCRIPTS = (
    "register",
    "unregister",
    "claim",
    "settle",
    "abort",
    "requeue",
    "forget",
    "bury",
    "open_workflow",
    "seal_barrier",
    "follow",
    "republish",
)
_SHARED = ("abort_workflow",)  # the Redis broker's scripts, on these keys as they are
_PLACE = {b"w": Place.WAITING, b"r": Place.LEASED, b"d": Place.DEAD}


def _sources() -> dict[str, str]:
    # importlib.resources, as before: with pkgutil here the RabbitMQ kill-and-restart chaos
    # test failed far more often in one engineer's runs (mechanism not found)
    redis = resources.files("conveyor.brokers.redis") / "lua"
    folder = resources.files("conveyor.brokers.rabbitmq") / "lua"
    lib = "\n".join(
        [
            (redis / "lib.lua").read_text(),
            (redis / "workflows.lua").read_text(),
            (folder / "lib.lua").read_text(),
        ]
    )
    sources = {name: lib + "\n" + (folder / f"{name}.lua").read_text() for name in _SCRIPTS}
    sources.update({name: lib + "\n" + (redis / f"{name}.lua").read_text() for name in _SHARED})
    return sources


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim decided for one delivered message."""

    run: bool
    attempt: int = 0
    crashes: int = 0
    aborted: bool = False
    token: int = 0
    copy: int = 0


@dataclass(frozen=True, slots=True)
class Settle:
    """One settlement for the records: ``kind`` is ack, retry, defer (an uncharged retry),
    dead or release; ``copy`` the new copy a retry published; ``arg`` the retry's delay
    (ms) or the dead letter's reason; ``follow`` a workflow step's follow (ack and
    dead)."""

    task_id: str
    token: int
    kind: str
    copy: int = 0
    body: bytes = b""
    arg: str | int = ""
    result: StoredResult | None = None
    follow: Follow | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """A workflow's message that a script registered (its record waits for it, and the
    outbox keeps it): the broker publishes it to RabbitMQ, then :meth:`RedisRecords.confirm`
    takes it out of the outbox. If that never happens, ``republish.lua`` sends it again."""

    task_id: str
    copy: int
    queue: str
    body: bytes
    priority: int
    due: int


class Records(Protocol):
    """Where a broker keeps task records (:class:`RedisRecords`), or does not
    (:class:`NoRecords`)."""

    async def register(self, batch: Sequence[Outgoing]) -> list[tuple[str, int]]:
        """Admit messages before they are published: per item, the task id that stands
        for it and the copy to publish (0: publish nothing)."""
        ...

    async def unregister(self, published: Sequence[tuple[str, int]]) -> None:
        """Undo :meth:`register` for (task id, copy) pairs whose publish failed."""
        ...

    async def claim(self, rows: Sequence[tuple[str, str, int, int, int]]) -> list[Claim]:
        """Start attempts for (task id, queue, copy, attempts before, priority) rows."""
        ...

    async def settle(self, batch: Sequence[Settle]) -> list[bool]:
        """Apply settlements whose token is current; False for the others."""
        ...


class NoRecords:
    """No record store: fire-and-forget. Every delivered message runs; its attempt is
    the count its headers carry plus RabbitMQ's delivery count; every settlement holds.
    Idempotency keys need records, and are refused."""

    async def register(self, batch: Sequence[Outgoing]) -> list[tuple[str, int]]:
        seen: set[str] = set()
        out = []
        for item in batch:
            if item.key:
                raise ConfigurationError(
                    "idempotency keys (and scheduler ticks) need task records: give the "
                    "amqp:// broker a Redis store with results='redis://...'"
                )
            out.append((item.task_id, 0 if item.task_id in seen else 1))
            seen.add(item.task_id)
        return out

    async def unregister(self, published: Sequence[tuple[str, int]]) -> None:
        pass

    async def claim(self, rows: Sequence[tuple[str, str, int, int, int]]) -> list[Claim]:
        return [Claim(True, before + 1, copy=copy) for _, _, copy, before, _ in rows]

    async def settle(self, batch: Sequence[Settle]) -> list[bool]:
        return [True] * len(batch)


class RedisRecords:
    """Task records in Redis, under ``<prefix>:amqp:`` (see ``lua/lib.lua``); results,
    stored by the same scripts, under ``<results_prefix>:result:``."""

    def __init__(self, client: Any, prefix: str, results_prefix: str) -> None:
        self._client = client
        self.prefix = prefix
        self.results_prefix = results_prefix
        self._scripts = {name: client.register_script(src) for name, src in _sources().items()}
        self.workflows = WorkflowReads(lambda: client, prefix)

    async def _call(self, name: str, args: Sequence[Any]) -> Any:
        return await self._scripts[name](keys=[], args=list(args), client=self._client)

    def _job(self, task_id: str) -> str:
        return f"{self.prefix}:amqp:job:{task_id}"

    async def register(self, batch: Sequence[Outgoing]) -> list[tuple[str, int]]:
        args: list[Any] = [self.prefix, RECORD_TTL_MS, self.results_prefix]
        for item in batch:
            args += [
                item.task_id,
                item.queue,
                item.body,
                item.priority,
                due_ms(item.not_before),
                item.key or "",
                int(item.key_ttl * 1000),
                1 if item.reused_id else 0,
                item.workflow or "",
            ]
        answers = await self._call("register", args)
        return [(_text(task_id), int(copy)) for task_id, copy in answers]

    async def unregister(self, published: Sequence[tuple[str, int]]) -> None:
        if published:
            args = [self.prefix, RECORD_TTL_MS, *(v for p in published for v in p)]
            await self._call("unregister", args)

    async def claim(self, rows: Sequence[tuple[str, str, int, int, int]]) -> list[Claim]:
        answers = await self._call(
            "claim", [self.prefix, RECORD_TTL_MS, *(v for row in rows for v in row)]
        )
        return [
            Claim(run == 1, int(attempt), int(crashes), mark == 1, int(token), int(copy))
            for run, attempt, crashes, mark, token, copy in answers
        ]

    async def settle(self, batch: Sequence[Settle]) -> list[bool]:
        return (await self.settle_with(batch))[0]

    async def settle_with(self, batch: Sequence[Settle]) -> tuple[list[bool], list[Pending]]:
        """:meth:`settle`, and the workflow messages its follows registered, to publish."""
        args: list[Any] = [self.prefix, RECORD_TTL_MS, FINISHED_TTL_MS, self.results_prefix]
        for s in batch:
            data, ttl = _result_args(s.result)
            args += [s.task_id, s.token, s.kind, s.copy, s.body, s.arg, data, ttl]
            args += follow_args(s.follow)
        oks, published = await self._call("settle", args)
        return [ok == 1 for ok in oks], _pending(published)

    # -- workflows (lua/*.lua, and the Redis broker's lua/workflows.lua) --------------

    def _heads(self) -> list[Any]:
        return [self.prefix, RECORD_TTL_MS, self.results_prefix]

    async def open_workflow(
        self, record: WorkflowRecord | None, barriers: Sequence[Barrier]
    ) -> list[Pending]:
        args = [*self._heads(), *record_args(record)]
        for barrier in barriers:
            args += barrier_args(barrier)
        return _pending(await self._call("open_workflow", args))

    async def seal_barrier(self, barrier_id: str, size: int) -> list[Pending]:
        return _pending(await self._call("seal_barrier", [*self._heads(), barrier_id, size]))

    async def follow(self, follow: Follow) -> list[Pending]:
        return _pending(await self._call("follow", [*self._heads(), *follow_args(follow)]))

    async def abort_workflow(self, workflow_id: str) -> tuple[WorkflowRecord | None, list[str]]:
        return abort_answer(
            workflow_id, await self._call("abort_workflow", [self.prefix, workflow_id])
        )

    async def republish(self, cutoff_ms: int, limit: int = 1000) -> list[Pending]:
        """Workflow messages registered before ``cutoff_ms`` whose publish was never
        confirmed, each with a new copy (republish.lua)."""
        return _pending(await self._call("republish", [self.prefix, cutoff_ms, limit]))

    async def confirm(self, published: Sequence[Pending]) -> None:
        """RabbitMQ confirmed these: they leave the outbox."""
        if published:
            members = [f"{p.copy}:{p.task_id}" for p in published]
            await self._client.zrem(f"{self.prefix}:amqp:outbox", *members)

    async def abort(self, task_id: str, result: AbortResult) -> AbortOutcome:
        """Abort where the record says the task is (abort.lua); a waiting task's result
        is built from the body its record keeps, and stored by the same script."""
        for _ in range(10):
            state, copy, attempts, body = await self._client.hmget(
                self._job(task_id), ["s", "c", "a", "b"]
            )
            data, ttl = b"", 0
            if state == b"w":
                data, ttl = _result_args(result(bytes(body or b""), int(attempts or 0)))
            answer = _text(
                await self._call(
                    "abort",
                    [
                        self.prefix,
                        RECORD_TTL_MS,
                        task_id,
                        copy or b"",
                        data,
                        ttl,
                        self.results_prefix,
                    ],
                )
            )
            if answer != "changed":
                return AbortOutcome(answer)
        raise BrokerUnavailable(
            f"could not abort task {task_id}: it kept moving between states; try again"
        )

    async def locate(self, task_id: str) -> TaskLocation | None:
        state, attempts = await self._client.hmget(self._job(task_id), ["s", "a"])
        place = _PLACE.get(state) if state is not None else None
        return None if place is None else TaskLocation(place, int(attempts or 0))

    async def marks(self, task_ids: Sequence[str]) -> list[bool]:
        async with self._client.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hget(self._job(task_id), "x")
            answers = await pipe.execute()
        return [mark is not None for mark in answers]

    async def attempts(self, task_ids: Sequence[str]) -> list[int | None]:
        """The started attempts the records hold (None: no record)."""
        async with self._client.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hget(self._job(task_id), "a")
            answers = await pipe.execute()
        return [None if a is None else int(a) for a in answers]

    async def queues(self) -> list[str]:
        """Every queue a message was published to."""
        return sorted(_text(q) for q in await self._client.smembers(f"{self.prefix}:amqp:queues"))

    async def counts(self, queues: Sequence[str], now_ms: int) -> list[tuple[int, int]]:
        """Per queue (delayed, running): tasks waiting for a due time still ahead, and
        tasks some worker runs."""
        async with self._client.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.zcount(f"{self.prefix}:amqp:delayed:{queue}", f"({now_ms}", "+inf")
                pipe.scard(f"{self.prefix}:amqp:running:{queue}")
            answers = await pipe.execute()
        return list(zip(answers[::2], answers[1::2], strict=True))

    async def requeue(self, rows: Sequence[tuple[str, str, int, bytes]]) -> list[int]:
        """(task id, queue, priority, body) of dead letters about to be published again:
        their records wait again with attempts reset; returns the copy to publish."""
        args = [self.prefix, RECORD_TTL_MS, *(v for row in rows for v in row)]
        return [int(copy) for copy in await self._call("requeue", args)]

    async def forget(self, task_ids: Sequence[str]) -> None:
        if task_ids:
            await self._call("forget", [self.prefix, *task_ids])

    async def bury(self, dead: Sequence[tuple[str, str]]) -> int:
        """(task id, reason) of tasks RabbitMQ dead-lettered itself: their records say
        dead from now on (those still waiting or running)."""
        if not dead:
            return 0
        return int(await self._call("bury", [self.prefix, *(v for pair in dead for v in pair)]))

    async def delete_all(self) -> None:
        """Delete every key under the prefix: records, results, workers, schedules."""
        for pattern in (f"{self.prefix}:*", f"{{{self.prefix}:*"):
            keys = [k async for k in self._client.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(keys), 1000):
                await self._client.delete(*keys[start : start + 1000])


def _pending(flat: Sequence[Any]) -> list[Pending]:
    """What a script registered for RabbitMQ, 6 values each."""
    return [
        Pending(
            _text(flat[i]),
            int(flat[i + 1]),
            _text(flat[i + 2]),
            bytes(flat[i + 3]),
            int(flat[i + 4]),
            int(flat[i + 5]),
        )
        for i in range(0, len(flat), 6)
    ]


def due_ms(not_before: float) -> int:
    """A Unix time as the integer milliseconds records keep, never before it is due."""
    return int(-(-not_before * 1000 // 1)) if not_before > 0 else 0


def _result_args(result: StoredResult | None) -> tuple[bytes, int]:
    if result is None:
        return b"", 0
    return result.data, -1 if result.ttl is None else max(int(result.ttl * 1000), 1)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
