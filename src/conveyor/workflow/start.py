"""Sending a workflow: ``chain(...).kiq()``, ``group(...).kiq()`` and ``chord(...).kiq()``
land in :func:`start`.

The workflow's record is saved, its barriers opened, and its first messages published
(``Outgoing.workflow`` set on each, so that an abort finds them). A group or chord at the
top is sent in slices: its members are taken from their iterable, planned and published
:data:`~conveyor.send.PUBLISH_SLICE` at a time, then its barrier is sealed with their
number, so that a producer of 10,000 members holds one slice at a time. If sending fails
half way, the workflow is aborted (what was published does not run) and the error raised.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from conveyor.brokers import redact_url
from conveyor.brokers.base import Barrier, Capability, Outgoing, WorkflowRecord
from conveyor.errors import ConfigurationError
from conveyor.message import Fanout, Link, Slot, Step, Template, encode_value, new_task_id
from conveyor.send import PUBLISH_SLICE, publish_encoded
from conveyor.workflow.canvas import Canvas, Chain, Chord, Group, Signature
from conveyor.workflow.handle import GroupHandle, WorkflowHandle
from conveyor.workflow.plan import (
    GATHER_TASK,
    MAX_NODES,
    NOTHING,
    NodeInfo,
    Plan,
    Planner,
    WorkflowInfo,
    final_task,
    first_queue,
    gather_step,
)

if TYPE_CHECKING:
    from conveyor.app import Conveyor

__all__ = ["start", "start_sync"]

log = logging.getLogger("conveyor.workflow")


async def start(canvas: Canvas[Any]) -> WorkflowHandle[Any]:
    """Send ``canvas`` as a new workflow; a handle to it (a :class:`GroupHandle` for a
    group)."""
    if isinstance(canvas, Group | Chord):
        return await _start_fanout(canvas)
    app = _app(canvas)
    _check_capable(app)
    settings = app.settings
    workflow = new_task_id()
    planner = Planner(settings, app.hooks)
    templates = await planner.templates(canvas, workflow)
    tail = final_task(templates)
    plan = Plan(workflow, settings.workflow_ttl, settings)
    opens, publish = plan.start(templates, NOTHING, None, tail)
    info = _info(_kind(canvas), canvas, tail, planner)
    record = _record(app, workflow, info)
    connection = app._connections.current()
    await connection.broker.open_workflow(record, opens)
    try:
        await publish_encoded(connection, publish)
    except BaseException:
        await _abandon(app, workflow)
        raise
    return WorkflowHandle(app, workflow, tail[0], _return_type(canvas))


def start_sync(canvas: Canvas[Any]) -> WorkflowHandle[Any]:
    """:func:`start` from synchronous code, on the app's sync portal (its own event loop
    and connection, as ``kiq_sync``)."""
    if isinstance(canvas, Group | Chord) and _first_signature(canvas) is None:
        # members from an iterator: take the first to find the app, and put it back
        header = canvas.header if isinstance(canvas, Chord) else canvas
        members = iter(header._members)
        first = next(members, None)
        if first is not None:
            header._members = itertools.chain([first], members)
            app = _app(first)
        else:
            app = _app(canvas)
    else:
        app = _app(canvas)
    return app._connections.portal().call(lambda: start(canvas))


async def _start_fanout(canvas: Group[Any] | Chord[Any]) -> WorkflowHandle[Any]:
    """A group or chord at the top: the callback (or gather task) first, then the members
    in slices, then the seal."""
    header = canvas.header if isinstance(canvas, Chord) else canvas
    members = header.members()
    first = next(members, None)
    app = _app(first if first is not None else canvas)
    _check_capable(app)
    settings = app.settings
    workflow = new_task_id()
    planner = Planner(settings, app.hooks)
    if isinstance(canvas, Chord):
        barrier_id, partial = f"{workflow}.0", canvas.partial
        body = await planner.templates(canvas.body, f"{workflow}.1", incoming=True)
    else:
        barrier_id, partial, body = workflow, False, []
    first_templates = (
        await planner.templates(first, f"{barrier_id}.0", 1) if first is not None else []
    )
    queue = first_queue([first_templates], settings) if first_templates else settings.default_queue
    plan = Plan(workflow, settings.workflow_ttl, settings)
    callback, after = _callback(body, barrier_id, queue)
    tail = final_task(body) if body else (barrier_id, GATHER_TASK)
    link = Link(
        workflow,
        settings.workflow_ttl,
        then=after,
        gather=barrier_id,
        partial=partial,
        receives=callback.receives,
        tail=tail[0],
        tail_task=tail[1],
    )
    barrier = Barrier(
        barrier_id,
        workflow,
        plan.outgoing(callback.message, callback.message.args, link),
        size=None,
        partial=partial,
        ttl=settings.workflow_ttl,
    )
    kind = _kind(canvas)
    first_name = describe(first) if first is not None else ""
    record = _record(app, workflow, _info(kind, canvas, tail, planner, first=first_name))
    connection = app._connections.current()
    await connection.broker.open_workflow(record, [barrier])
    size = 0
    types = {repr(_return_type(first))} if first is not None else set()
    try:
        rest: Iterator[Any] = members
        pending_opens: list[Barrier] = []
        pending: list[Outgoing] = []
        for index, member in enumerate(itertools.chain([first], rest) if first else rest):
            if index == 0:
                templates = first_templates
            else:
                templates = await planner.templates(member, f"{barrier_id}.{index}", 1)
                types.add(repr(_return_type(member)))
            opens, publish = plan.start(templates, NOTHING, Slot(barrier_id, index))
            pending_opens += opens
            pending += publish
            size = index + 1
            if len(pending) >= PUBLISH_SLICE:
                await _send(app, pending_opens, pending)
                pending_opens, pending = [], []
        await _send(app, pending_opens, pending)
        await connection.broker.seal_barrier(barrier_id, size)
    except BaseException:
        await _abandon(app, workflow)
        raise
    # the record again, now that the group's size is known (its state is kept)
    info = _info(kind, canvas, tail, planner, size, first_name)
    await connection.broker.open_workflow(_record(app, workflow, info))
    if isinstance(canvas, Chord):
        return WorkflowHandle(app, workflow, tail[0], _return_type(canvas.body))
    # a group's values convert to its members' return type, when they share one
    item = _return_type(first) if first is not None and len(types) == 1 else Any
    return GroupHandle(app, workflow, tail[0], list[item])  # type: ignore[valid-type]


async def _send(app: Conveyor, opens: list[Barrier], publish: list[Outgoing]) -> None:
    connection = app._connections.current()
    if opens:
        await connection.broker.open_workflow(None, opens)
    if publish:
        await publish_encoded(connection, publish)


def _callback(body: list[Template], barrier_id: str, queue: str) -> tuple[Step, list[Template]]:
    """A top group's callback: the chord's body's first call, else its gather task (with
    the rest of the body after it)."""
    if body and isinstance(body[0], Step):
        return body[0], body[1:]
    return gather_step(Fanout(barrier_id, [], queue)), body


async def _abandon(app: Conveyor, workflow: str) -> None:
    """Sending failed half way: abort what was sent, so that nothing of it runs."""
    from conveyor.workflow.handle import abort_workflow

    try:
        await abort_workflow(app, workflow)
    except Exception:
        log.exception("could not abort workflow %s after a failed send", workflow)


def _record(app: Conveyor, workflow: str, info: WorkflowInfo) -> WorkflowRecord:
    settings = app.settings
    return WorkflowRecord(
        workflow,
        "running",
        settings.clock.now(),
        ttl=settings.workflow_ttl,
        info=encode_value(info),
    )


def _kind(canvas: Canvas[Any]) -> str:
    return type(canvas).__name__.lower()


def _info(
    kind: str,
    canvas: Canvas[Any],
    tail: tuple[str, str],
    planner: Planner,
    size: int = -1,
    first: str = "",
) -> WorkflowInfo:
    nodes: list[NodeInfo] = []
    if isinstance(canvas, Group | Chord):  # the top group, its size known once all sent
        nodes.append(NodeInfo(canvas_id(canvas, tail), GATHER_TASK, 0, size))
    nodes += planner.nodes
    return WorkflowInfo(
        kind,
        describe(canvas, size, first),
        tail[0],
        tail[1],
        nodes[:MAX_NODES],
        planner.more_nodes + max(len(nodes) - MAX_NODES, 0),
    )


def canvas_id(canvas: Group[Any] | Chord[Any], tail: tuple[str, str]) -> str:
    """The barrier id of a top group: the workflow id, or ``<id>.0`` for a chord."""
    workflow = tail[0].split(".", 1)[0]
    return f"{workflow}.0" if isinstance(canvas, Chord) else workflow


def describe(canvas: Canvas[Any], size: int = -1, first: str = "") -> str:
    """A short name for a workflow: ``fetch → parse → store``, ``[embed x500] →
    build_index``. ``first``: the name of the first member of a group given as an
    iterator, ``size`` its size once known."""
    if isinstance(canvas, Signature):
        return canvas.task.name.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    if isinstance(canvas, Chain):
        return " → ".join(describe(step) for step in canvas.steps)
    if isinstance(canvas, Chord):
        return f"{describe(canvas.header, size, first)} → {describe(canvas.body)}"
    assert isinstance(canvas, Group)
    members = canvas._members
    if isinstance(members, list | tuple):
        names = [describe(m) for m in members]
        if names and len(set(names)) == 1:
            return f"[{names[0]} x{len(names)}]"
        return f"[{', '.join(names[:5])}{', …' if len(names) > 5 else ''}]"
    count = f"x{size}" if size >= 0 else "…"
    return f"[{first} {count}]" if first else f"[{count}]"


def _app(part: Any) -> Conveyor:
    """The app of a task the workflow calls (the first found without taking members
    from an iterator)."""
    found = _first_signature(part)
    if found is None:
        raise ValueError(
            "this workflow calls no task that can be found without reading a group's "
            "iterator (an empty group?): give the group its members as a list"
        )
    app: Conveyor = found.task.app
    return app


def _first_signature(part: Any) -> Signature[Any] | None:
    if isinstance(part, Signature):
        return part
    parts: list[Any] = []
    if isinstance(part, Chain):
        parts = list(part.steps)
    elif isinstance(part, Chord):
        parts = [part.header, part.body]
    elif isinstance(part, Group) and isinstance(part._members, list | tuple):
        parts = list(part._members)
    for inner in parts:
        found = _first_signature(inner)
        if found is not None:
            return found
    return None


def _check_capable(app: Conveyor) -> None:
    broker = app.broker
    if Capability.WORKFLOWS not in broker.capabilities:
        raise ConfigurationError(
            f"the broker at {redact_url(broker.url)} cannot run workflows (it does not "
            "declare the WORKFLOWS capability); see docs/workflows.md for the brokers that can"
        )


def _return_type(canvas: Canvas[Any]) -> Any:
    """What the workflow's final result converts to: the last call's annotated return
    type (a group's: its members' type, when they share one task)."""
    if isinstance(canvas, Signature):
        return canvas.task.return_type
    if isinstance(canvas, Chain):
        return _return_type(canvas.steps[-1])
    if isinstance(canvas, Chord):
        return _return_type(canvas.body)
    assert isinstance(canvas, Group)
    members = canvas._members
    if isinstance(members, list | tuple) and members:
        types = {repr(_return_type(m)) for m in members}
        if len(types) == 1:
            return list[_return_type(members[0])]  # type: ignore[misc]
    return Any
