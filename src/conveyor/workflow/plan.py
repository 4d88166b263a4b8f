"""How a workflow becomes messages, and what each of its tasks leaves behind.

On the producer, :class:`Planner` turns signatures into templates (:class:`Step`,
:class:`Fanout`): each call checked, built and named once, its task id its place in the
workflow (``<workflow id>.1.0``). A template list is a chain; what a message carries in
its :class:`~conveyor.message.Link` is the rest of its chain.

:meth:`Plan.start` starts a template list with a value: a step is published with the
value as its first argument; a group opens its barrier and starts each member. The
producer starts a workflow this way, and a worker starts what follows a task that
succeeded: :func:`on_success` and :func:`on_failure` build the
:class:`~conveyor.brokers.base.Follow` its settlement applies in the broker, in the
same atomic step.

What reaches a callback: :func:`gathered` reads its group's barrier, and gives either
the members' values in member order (their :class:`Result` with ``partial``), or the
first failure, which fails the callback without running it.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from conveyor.brokers.base import Barrier, Follow, Join, Outgoing, StoredResult
from conveyor.message import (
    SCHEMA_VERSION,
    Fanout,
    Link,
    Message,
    Slot,
    Step,
    Template,
    convert,
    encode_value,
)
from conveyor.result import ErrorInfo, Result, TaskStatus
from conveyor.send import Call, build_message, encode_body

if TYPE_CHECKING:
    from conveyor.brokers.base import Workflows
    from conveyor.hooks import HookSet
    from conveyor.settings import Settings
    from conveyor.workflow.canvas import Canvas, Signature

__all__ = [
    "GATHER_TASK",
    "NOTHING",
    "WORKFLOW_FAILED",
    "Gathered",
    "Plan",
    "Planner",
    "culprit",
    "dependency_error",
    "final_task",
    "gather",
    "gather_step",
    "gathered",
    "on_failure",
    "on_success",
]

GATHER_TASK = "conveyor.gather"
"""The task a group without a callback ends with: it returns its members' results, as
the group's result (every worker runs it; no app registers it)."""

WORKFLOW_FAILED = "conveyor.WorkflowFailed"
"""The error type of a task that did not run because a task before it failed."""

RESULTS_PAGE = 1000
"""How many outcomes of a group one read of its barrier takes."""


class _Nothing:
    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()
"""The value a workflow starts with: its first calls receive nothing."""


async def gather(results: list[Any]) -> list[Any]:
    """The body of :data:`GATHER_TASK`: a group's results are its result."""
    return results


class Plan(msgspec.Struct, frozen=True):
    """Starts templates of workflow ``workflow``. ``keyed``: every message gets its task
    id as idempotency key, so that a worker that starts the same continuation twice (it
    was paused or crashed after its settlement) publishes it once."""

    workflow: str
    ttl: float
    settings: Settings
    keyed: bool = False

    def start(
        self,
        then: Sequence[Template],
        value: Any,
        join: Slot | None,
        tail: tuple[str, str] = ("", ""),
    ) -> tuple[list[Barrier], list[Outgoing]]:
        """Start ``then[0]`` with ``value`` (:data:`NOTHING`: no value), carrying the
        rest: the barriers to open and the messages to publish. ``join``: the group slot
        the chain fills; ``tail``: the workflow's final task (id, name), when the chain
        is not in a group."""
        first, rest = then[0], list(then[1:])
        tail_id, tail_task = tail if join is None else ("", "")
        if isinstance(first, Step):
            message = first.message
            args = message.args
            if first.receives and value is not NOTHING:
                args = [value, *args]
            link = Link(
                self.workflow,
                self.ttl,
                then=rest,
                join=join,
                tail=tail_id,
                tail_task=tail_task,
            )
            return [], [self.outgoing(message, args, link)]
        if rest and isinstance(rest[0], Step):  # the group's callback
            callback, after = rest[0], rest[1:]
        else:  # its results go on as a value (to a group), or end the workflow
            callback, after = gather_step(first), rest
        link = Link(
            self.workflow,
            self.ttl,
            then=after,
            join=join,
            gather=first.barrier,
            partial=first.partial,
            receives=callback.receives,
            tail=tail_id,
            tail_task=tail_task,
        )
        barrier = Barrier(
            first.barrier,
            self.workflow,
            self.outgoing(callback.message, callback.message.args, link),
            size=len(first.members),
            partial=first.partial,
            ttl=self.ttl,
        )
        opens, publish = [barrier], []
        for index, member in enumerate(first.members):
            more, sent = self.start(member, value, Slot(first.barrier, index))
            opens += more
            publish += sent
        return opens, publish

    def outgoing(self, template: Message, args: list[Any], link: Link) -> Outgoing:
        """The message of one call, encoded, signed and size-checked; ``TypeError`` or
        :class:`~conveyor.errors.PayloadTooLarge` when the value it receives cannot
        travel."""
        message = msgspec.structs.replace(
            template, args=args, link=link, enqueued_at=self.settings.clock.now()
        )
        return Outgoing(
            task_id=message.task_id,
            queue=message.queue,
            body=encode_body(message, self.settings),
            priority=message.priority,
            key=message.task_id if self.keyed else None,
            key_ttl=self.ttl,
            workflow=self.workflow,
        )


def gather_step(fanout: Fanout) -> Step:
    """The internal task that ends a group no call follows: its value is the group's."""
    return Step(Message(SCHEMA_VERSION, fanout.barrier, GATHER_TASK, fanout.queue))


def final_task(then: Sequence[Template]) -> tuple[str, str]:
    """(task id, task name) of the task whose result is the chain's: its last call, or
    the gather task of its last group."""
    last = then[-1]
    if isinstance(last, Step):
        return last.message.task_id, last.message.task
    return last.barrier, GATHER_TASK


class NodeInfo(msgspec.Struct, array_like=True, frozen=True):
    """One part of a workflow as its record describes it: a task call, or a group (its
    barrier id as ``id``, its member count as ``size``, -1 while unknown)."""

    id: str
    task: str
    depth: int
    size: int = 0


class WorkflowInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a workflow's record says of it (``WorkflowRecord.info``): its kind, a short
    name, its final task, and its first :data:`MAX_NODES` parts, for status and the
    dashboard."""

    kind: str
    name: str
    tail: str
    tail_task: str
    nodes: list[NodeInfo] = []
    more_nodes: int = 0


MAX_NODES = 200
"""How many parts of a workflow its record lists (a group of 10,000 lists its first)."""


class Planner(msgspec.Struct):
    """Turns signatures into templates for one workflow, on the producer: each call's
    arguments checked, its message built, its ``before_enqueue`` hooks run, its task id
    set to its place in the workflow. Keeps the first :data:`MAX_NODES` parts for the
    record."""

    settings: Settings
    hooks: HookSet
    nodes: list[NodeInfo] = msgspec.field(default_factory=list)
    more_nodes: int = 0

    async def templates(
        self, part: Canvas[Any], node_id: str, depth: int = 0, *, incoming: bool = False
    ) -> list[Template]:
        """``part`` as a chain of templates, its ids under ``node_id``. ``incoming``: a
        value comes to it (it follows a call in a chain); the first calls of a workflow
        receive none."""
        from conveyor.workflow.canvas import Chain, Chord, Group, Signature

        if isinstance(part, Signature):
            return [await self.step(part, node_id, depth, incoming)]
        if isinstance(part, Chain):
            out: list[Template] = []
            for index, step in enumerate(part.steps):
                comes = incoming if index == 0 else True
                out += await self.templates(step, f"{node_id}.{index}", depth, incoming=comes)
            return out
        if isinstance(part, Group):
            return [await self.fanout(part, node_id, depth, incoming, partial=False)]
        assert isinstance(part, Chord)
        header = await self.fanout(
            part.header, f"{node_id}.0", depth, incoming, partial=part.partial
        )
        return [header, *await self.templates(part.body, f"{node_id}.1", depth, incoming=True)]

    async def fanout(
        self, group: Any, barrier: str, depth: int, incoming: bool, *, partial: bool
    ) -> Fanout:
        """A group inside a chain, with its members (they travel in the messages before
        it, so their number is bounded by ``max_payload_bytes``)."""
        self.note(NodeInfo(barrier, GATHER_TASK, depth, -1))
        where = len(self.nodes) - 1
        members = [
            await self.templates(member, f"{barrier}.{index}", depth + 1, incoming=incoming)
            for index, member in enumerate(group.members())
        ]
        if 0 <= where < len(self.nodes):
            self.nodes[where] = NodeInfo(barrier, GATHER_TASK, depth, len(members))
        return Fanout(barrier, members, first_queue(members, self.settings), partial)

    async def step(
        self, signature: Signature[Any], node_id: str, depth: int, incoming: bool
    ) -> Step:
        receives = signature.receives and incoming
        call = Call(signature.task, signature.args, signature.kwargs, signature.options)
        message = build_message(call, self.settings, receives=receives)
        for hook in self.hooks.of("before_enqueue"):
            message = await hook(message)
        message = msgspec.structs.replace(message, task_id=node_id)
        try:  # serializable and small enough, before anything is sent
            encode_body(message, self.settings)
        except TypeError:
            from conveyor.send import encode

            encode(signature.task, message, self.settings)  # raises, naming the argument
            raise
        self.note(NodeInfo(node_id, message.task, depth))
        return Step(message, receives)

    def note(self, node: NodeInfo) -> None:
        if len(self.nodes) < MAX_NODES:
            self.nodes.append(node)
        else:
            self.more_nodes += 1


def first_queue(members: Sequence[Sequence[Template]], settings: Settings) -> str:
    """The queue of a group's first call: its gather task goes there, where a worker
    that runs the members is sure to look."""
    for member in members:
        for template in member:
            if isinstance(template, Step):
                return template.message.queue
            found = first_queue(template.members, settings)
            if found:
                return found
    return settings.default_queue


# -- in the worker ----------------------------------------------------------------------


def on_success(message: Message, link: Link, value: Any, data: bytes, settings: Settings) -> Follow:
    """What follows a workflow task that succeeded with ``value`` (``data``: its encoded
    result): the rest of its chain started with the value, else its group slot filled,
    else the workflow's end."""
    if link.then:
        plan = Plan(link.workflow, link.ttl, settings, keyed=True)
        opens, publish = plan.start(link.then, value, link.join, (link.tail, link.tail_task))
        return Follow(link.workflow, opens=tuple(opens), publish=tuple(publish))
    if link.join is not None:
        return Follow(link.workflow, join=Join(link.join.barrier, link.join.index, data))
    return Follow(link.workflow, finish="succeeded")


def on_failure(
    message: Message, link: Link, result: Result[Any], data: bytes, settings: Settings
) -> Follow:
    """What follows a workflow task that ended other than succeeded (failed, dead or
    aborted): nothing of its chain runs; its group slot is filled as failed, else the
    workflow ends, and its final task's result says which task failed and why."""
    if link.join is not None:
        return Follow(
            link.workflow, join=Join(link.join.barrier, link.join.index, data, failed=True)
        )
    aborted = result.status is TaskStatus.ABORTED
    results: tuple[StoredResult, ...] = ()
    ttl = message.result_ttl if message.result_ttl is not None else settings.result_ttl
    if link.tail and link.tail != message.task_id and ttl != 0:
        ended: Result[Any] = Result(
            task_id=link.tail,
            task=link.tail_task,
            status=TaskStatus.ABORTED if aborted else TaskStatus.FAILED,
            error=dependency_error(result),
            finished_at=result.finished_at,
        )
        results = (StoredResult(link.tail, encode_value(ended), ttl),)
    return Follow(
        link.workflow,
        results=results,
        finish="aborted" if aborted else "failed",
        failed_task=culprit(result),
    )


def dependency_error(failed: Result[Any]) -> ErrorInfo:
    """The error of a task that will not run because ``failed`` did not succeed: it
    names the task that failed first, and carries its traceback."""
    error = failed.error or ErrorInfo(failed.status.value, "")
    if error.type == WORKFLOW_FAILED:  # already names the task that failed first
        return error
    return ErrorInfo(
        WORKFLOW_FAILED,
        f"task {failed.task_id} ({failed.task}) {failed.status.value}: {error}",
        error.traceback,
    )


def culprit(result: Result[Any]) -> str:
    """The id of the task whose failure ``result`` stands for: its own, or the one a
    :func:`dependency_error` names."""
    error = result.error
    if error is not None and error.type == WORKFLOW_FAILED and error.message.startswith("task "):
        return error.message.split(" ", 2)[1]
    return result.task_id


class Gathered(msgspec.Struct, frozen=True):
    """What a callback gets from its group: ``values`` for its first argument, or the
    ``failure`` that fails it without running."""

    values: list[Any] | None = None
    failure: Result[Any] | None = None


class BarrierGone(LookupError):
    """A callback's group barrier is not in the broker any more (its ``workflow_ttl``
    passed)."""


async def gathered(broker: Workflows, link: Link, annotation: Any = Any) -> Gathered:
    """Read the group a callback waits for: its members' values in member order (their
    results with ``partial``, values converted to ``annotation``'s ``Result[X]``), or
    its first failure."""
    from conveyor.handle import decode_result

    state = await broker.barrier(link.gather)
    if state is None:
        raise BarrierGone(
            f"the results of group {link.gather} are gone from the broker (kept "
            f"workflow_ttl, {link.ttl:g} s, after its last change)"
        )
    if state.failed and not link.partial and state.first_failure is not None:
        index = state.first_failure
        (raw,) = await broker.barrier_results(link.gather, index, index + 1)
        assert raw is not None, "a failed slot has its outcome"
        return Gathered(failure=decode_result(raw))
    size = state.size or 0
    raws: list[bytes | None] = []
    for start in range(0, size, RESULTS_PAGE):
        raws += await broker.barrier_results(link.gather, start, min(start + RESULTS_PAGE, size))
    results = [decode_result(raw) for raw in raws if raw is not None]
    if len(results) != size:
        raise BarrierGone(f"group {link.gather} has {len(results)} of its {size} results")
    if not link.partial:
        return Gathered(values=[result.return_value for result in results])
    value_type = _result_value_type(annotation)
    if value_type is not Any:
        results = [
            r
            if r.is_err
            else msgspec.structs.replace(r, return_value=convert(r.return_value, value_type))
            for r in results
        ]
    return Gathered(values=list(results))


def _result_value_type(annotation: Any) -> Any:
    """``X`` of ``list[Result[X]]`` (a partial chord's callback parameter), else Any."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is not list or len(args) != 1:
        return Any
    inner = typing.get_args(args[0])
    return inner[0] if typing.get_origin(args[0]) is Result and len(inner) == 1 else Any
