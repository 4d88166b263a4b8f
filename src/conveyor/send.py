"""The one path every enqueue takes: ``kiq``, ``enqueue_many`` and scheduler ticks.

:func:`send` builds each call's message (arguments checked against the task), runs the
``before_enqueue`` hooks, encodes and signs it (size checked), publishes through the
broker (a single call through the connection's batcher, so concurrent ``kiq`` calls
share a write; a batch of calls as one publish), and runs the ``after_enqueue`` hooks.

The hooks' error policy, the same for every caller:

- ``before_enqueue`` raising stops that call before anything is sent. With
  ``skip_failed=False`` (``kiq``, ``enqueue_many``) the error is raised and nothing of
  the batch is sent; with ``skip_failed=True`` (scheduler ticks) the call is logged and
  left out, and the others are sent.
- ``after_enqueue`` raising is logged and ignored: the message is published, and an
  error would make the caller send it again.

A call made with ``with_options(session=...)`` or ``connection=...`` is published
through the caller's transaction on a broker that can (PostgreSQL). On another broker it is
handed to the holder of that transaction's library (:data:`AFTER_COMMIT`), which runs
:func:`deliver` (the publish, then the ``after_enqueue`` hooks) after the commit and never
after a rollback; ``send`` returns the call's own task id at once. A call made with
``with_options(outbox=...)`` as well is written, encoded, to that :class:`OutboxWriter`'s
table through the caller's transaction instead, and a relay publishes it later
(:mod:`conveyor.outbox`); its idempotency key is derived from its task id when it has none
of its own, so a relay that publishes it twice publishes it once.

A reused task id (``with_options(task_id=...)``) forgets its earlier result: a broker
with its own result store does so in the publish itself (no read before the write); a
result store elsewhere is told to delete it first.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from conveyor.brokers import redact_url
from conveyor.brokers.base import Capability, FlowControl, Outgoing, TransactionalPublish
from conveyor.errors import ConfigurationError, PayloadTooLarge
from conveyor.flow import stamp
from conveyor.message import SCHEMA_VERSION, Message, encode_message, encode_value, new_task_id
from conveyor.signing import sign

if TYPE_CHECKING:
    from conveyor.hooks import HookSet
    from conveyor.portal import Connection
    from conveyor.settings import Settings
    from conveyor.task import CallOptions, Task

__all__ = [
    "Call",
    "OutboxWriter",
    "Sent",
    "build_message",
    "encode",
    "encode_body",
    "outbox_key",
    "publish_encoded",
    "send",
]

log = logging.getLogger("conveyor.send")

PUBLISH_SLICE = 1000
"""The most messages of one ``enqueue_many`` sent to the broker in one call."""


class Call(NamedTuple):
    """One task call to send: the task, its arguments, and per-call options."""

    task: Task[Any, Any]
    args: Sequence[Any]
    kwargs: Mapping[str, Any]
    options: CallOptions | None = None


class OutboxWriter(Protocol):
    """Where ``with_options(outbox=...)`` writes a call: a table in the caller's database
    (:class:`conveyor.outbox.Outbox`)."""

    @property
    def dedupe_ttl(self) -> float:
        """The least time, in seconds, an outbox task's key keeps deduplicating after the
        task ends."""
        ...

    async def write(self, transaction: object, batch: Sequence[Outgoing]) -> None:
        """Insert ``batch`` through ``transaction`` (the caller's connection or session)."""
        ...


def outbox_key(task_id: str) -> str:
    """The idempotency key of an outbox task that has none of its own."""
    return f"outbox:{task_id}"


class Sent(NamedTuple):
    """What became of one call: the message as sent, and the id of the task that now
    stands for it (another task's when an idempotency key or a task id matched)."""

    call: Call
    message: Message
    task_id: str

    @property
    def fresh(self) -> bool:
        """This call's message was published (no earlier task took its place)."""
        return self.task_id == self.message.task_id


async def send(
    calls: Sequence[Call],
    connection: Connection,
    settings: Settings,
    hooks: HookSet,
    *,
    skip_failed: bool = False,
) -> list[Sent]:
    """Send ``calls`` as one batch; see the module docstring for the error policy."""
    prepared: list[tuple[Call, Message, Outgoing]] = []
    before = hooks.of("before_enqueue")
    for call in calls:
        try:
            message = build_message(call, settings)
            for hook in before:
                message = await hook(message)
            prepared.append((call, message, encode(call.task, message, settings, call.options)))
        except Exception:
            if not skip_failed:
                raise
            log.exception("could not send a call of task %r; it is skipped", call.task.name)
    if Capability.FLOW not in connection.broker.capabilities:
        refuse_debounce(connection, prepared)
    options = prepared[0][0].options if len(prepared) == 1 else None
    transaction = options.transaction if options is not None else None
    if options is not None and options.outbox is not None:  # a relay publishes it later
        await options.outbox.write(transaction, [out for _, _, out in prepared])
        return [Sent(call, message, message.task_id) for call, message, _ in prepared]
    if transaction is not None and not isinstance(connection.broker, TransactionalPublish):
        # a broker outside the caller's database: published when the transaction commits
        hold = after_commit_holder(transaction, connection.broker.url)
        await hold(transaction, lambda: deliver(prepared, connection, hooks), _ids(prepared))
        return [Sent(call, message, message.task_id) for call, message, _ in prepared]
    return await deliver(prepared, connection, hooks, transaction)


async def deliver(
    prepared: list[tuple[Call, Message, Outgoing]],
    connection: Connection,
    hooks: HookSet,
    transaction: object | None = None,
) -> list[Sent]:
    """Publish prepared calls (through ``transaction`` when given, on a broker that can),
    then run the ``after_enqueue`` hooks."""
    if len(prepared) == 1 and connection.results_apart:
        await forget_reused_results(connection, [prepared[0][2]])
    if transaction is not None:  # in the caller's transaction, on its connection
        ids = await publish_in(connection, transaction, [prepared[0][2]])
    elif len(prepared) == 1:  # kiq: calls made together by concurrent callers share a batch
        ids = [await connection.publisher.submit(prepared[0][2])]
    else:
        ids = await publish_encoded(connection, [out for _, _, out in prepared])
    sent = [
        Sent(call, message, task_id)
        for (call, message, _), task_id in zip(prepared, ids, strict=True)
    ]
    debounced = {
        f"debounce:{item.message.flow.debounce}": item.task_id
        for item in sent
        if item.message.flow is not None and item.message.flow.debounce
    }
    if debounced:  # after the publish: a lost mark leaves the earlier task to run
        await mark_debounced(connection, debounced, prepared)
    after = hooks.of("after_enqueue")
    for item in sent if after else ():
        for hook in after:
            try:
                await hook(item.message, item.task_id)
            except Exception:
                log.exception("after_enqueue hook failed for task %s; ignored", item.task_id)
    return sent


def refuse_debounce(
    connection: Connection, prepared: Sequence[tuple[Call, Message, Outgoing]]
) -> None:
    """A debounced task needs the broker's marks: on a broker without flow control its
    enqueue is refused before anything is published."""
    for call, message, _ in prepared:
        if message.flow is not None and message.flow.debounce:
            raise ConfigurationError(
                f"task {call.task.name!r} is debounced, which needs flow control, and the "
                f"broker at {redact_url(connection.broker.url)} does not have it "
                "(docs/flow-control.md lists the brokers that do)"
            )


async def mark_debounced(
    connection: Connection,
    marks: dict[str, str],
    prepared: Sequence[tuple[Call, Message, Outgoing]],
) -> None:
    """Make each debounced task the latest of its key: an earlier one claimed later ends
    ``superseded`` (conveyor.flow). Kept a day past the debounce window."""
    flow = connection.broker
    if Capability.FLOW not in flow.capabilities:
        raise ConfigurationError(f"the broker at {redact_url(flow.url)} has no flow control")
    longest = max(
        (call.task.options.flow.debounce or 0.0) if call.task.options.flow else 0.0
        for call, _, _ in prepared
    )
    await cast("FlowControl", flow).put_marks(marks, longest + 86400.0)


async def forget_reused_results(connection: Connection, batch: Sequence[Outgoing]) -> None:
    """A result store apart from the broker forgets the results of reused task ids."""
    if connection.results_apart:
        for out in batch:
            if out.reused_id:
                await connection.result_store.delete(out.task_id)


async def publish_encoded(connection: Connection, batch: Sequence[Outgoing]) -> list[str]:
    """Publish encoded messages as a batch, straight to the broker, in slices it takes in
    one write (``enqueue_many``, and the outbox relay); returns the task ids that stand for
    them."""
    await forget_reused_results(connection, batch)
    ids: list[str] = []
    for start in range(0, len(batch), PUBLISH_SLICE):
        ids += await connection.broker.publish(list(batch[start : start + PUBLISH_SLICE]))
    return ids


def _ids(prepared: list[tuple[Call, Message, Outgoing]]) -> list[str]:
    return [message.task_id for _, message, _ in prepared]


async def publish_in(
    connection: Connection, transaction: object, batch: list[Outgoing]
) -> list[str]:
    """Publish through the caller's transaction (``with_options(connection=...)``), on a
    broker that can; ConfigurationError naming the broker on one that cannot."""
    broker = connection.broker
    if not isinstance(broker, TransactionalPublish):
        raise ConfigurationError(
            f"{redact_url(broker.url)} cannot enqueue inside your transaction "
            "(with_options(connection=...) or session=...): only postgresql:// can; "
            "see docs/transactional-enqueue.md for enqueue after commit on other brokers"
        )
    return await broker.publish_in(transaction, batch)


HoldUntilCommit = Callable[[object, Callable[[], Awaitable[object]], list[str]], Awaitable[None]]
"""``hold(transaction, publish, task_ids)``: run ``publish`` once ``transaction`` commits,
never if it rolls back."""

AFTER_COMMIT = {"sqlalchemy": "conveyor.integrations.sqlalchemy:hold_until_commit"}
"""Top-level package of a transaction's type -> its holder, imported when first used (as
brokers are found by URL scheme): the core imports no database library."""


def after_commit_holder(transaction: object, url: str) -> HoldUntilCommit:
    """The holder for ``transaction``'s library; ConfigurationError when there is none."""
    package = type(transaction).__module__.split(".")[0]
    target = AFTER_COMMIT.get(package)
    if target is None:
        raise ConfigurationError(
            f"{redact_url(url)} cannot enqueue inside your transaction, and Conveyor cannot "
            f"hold the task until a {type(transaction).__name__} commits: pass a SQLAlchemy "
            "AsyncSession (session=...), which publishes after its commit, or use the "
            "outbox; see docs/transactional-enqueue.md"
        )
    module, name = target.split(":")
    holder: HoldUntilCommit = getattr(importlib.import_module(module), name)
    return holder


def build_message(call: Call, settings: Settings, *, receives: bool = False) -> Message:
    """The envelope for one call; raises ``TypeError`` for arguments that do not fit.
    ``receives``: a workflow's call, whose first argument comes later (the previous
    result), and is not in ``call.args``."""
    task, options = call.task, call.options
    task.check_arguments(tuple(call.args), call.kwargs, receives=receives)
    opts = task.options
    now = settings.clock.now()
    not_before = 0.0
    priority, queue, key, task_id, labels = opts.priority, opts.queue, None, None, opts.labels
    timeout = opts.timeout
    if options is not None:
        if options.delay is not None:
            not_before = now + options.delay
        elif options.eta is not None:
            eta = options.eta if options.eta.tzinfo else options.eta.replace(tzinfo=UTC)
            not_before = eta.timestamp()
        priority = opts.priority if options.priority is None else options.priority
        queue = options.queue or queue
        key, task_id = options.key, options.task_id
        if options.outbox is not None:
            # a relay may publish it twice (killed before its DELETE commits): the key
            # makes the second publish return the first task
            task_id = task_id or new_task_id()
            key = key or outbox_key(task_id)
        if options.labels:
            labels = {**labels, **options.labels}
        if options.timeout is not None:
            timeout = options.timeout
    flow = None
    if opts.flow is not None:
        flow, unique = stamp(task.name, opts.flow, call.args, call.kwargs, now)
        if unique is not None:
            if key is not None and (options is None or options.outbox is None or options.key):
                raise ValueError(
                    f"task {task.name!r} is unique: its unique key stands for an idempotency "
                    "key, so with_options(key=...) cannot be given too"
                )
            key = unique
        if opts.flow.debounce is not None:
            not_before = max(not_before, now + opts.flow.debounce)
    return Message(
        version=SCHEMA_VERSION,
        task_id=task_id or new_task_id(),
        task=task.name,
        queue=queue,
        args=list(call.args),
        kwargs=dict(call.kwargs),
        priority=priority,
        enqueued_at=now,
        not_before=not_before,
        max_attempts=opts.max_attempts,
        timeout=timeout,
        result_ttl=opts.result_ttl,
        key=key,
        labels=dict(labels),
        flow=flow,
    )


def encode(
    task: Task[Any, Any],
    message: Message,
    settings: Settings,
    options: CallOptions | None = None,
) -> Outgoing:
    """Encode (and sign) ``message`` and check its size; nothing is sent."""
    try:
        body = encode_body(message, settings)
    except TypeError as exc:
        raise _name_bad_argument(task, message, exc) from None
    key_ttl = message.result_ttl if message.result_ttl is not None else settings.result_ttl
    if options is not None and options.key_ttl is not None:
        key_ttl = max(key_ttl, options.key_ttl)
    if options is not None and options.outbox is not None:
        key_ttl = max(key_ttl, options.outbox.dedupe_ttl)
    if message.key is not None and message.key.startswith("unique:") and task.options.flow:
        key_ttl = 0.0  # held while queued or running, free once it ends
    return Outgoing(
        task_id=message.task_id,
        queue=message.queue,
        body=body,
        priority=message.priority,
        not_before=message.not_before,
        key=message.key,
        key_ttl=key_ttl,
        reused_id=options is not None and options.task_id is not None,
    )


def encode_body(message: Message, settings: Settings) -> bytes:
    """The body of ``message``: encoded, signed with the first signing key, and checked
    against ``max_payload_bytes`` (:class:`PayloadTooLarge`); ``TypeError`` for a value
    msgpack cannot carry."""
    body = encode_message(message)
    if settings.signing_keys:
        body = sign(body, settings.signing_keys[0])
    if len(body) > settings.max_payload_bytes:
        raise PayloadTooLarge(
            f"task {message.task!r}: encoded message is {len(body)} bytes, over the limit of "
            f"{settings.max_payload_bytes} (max_payload_bytes); pass a reference "
            "(a path, a URL, a row id) instead of the data"
        )
    return body


def _name_bad_argument(task: Task[Any, Any], message: Message, exc: TypeError) -> TypeError:
    params = [p.name for p in task.spec.arguments]
    named = [(params[i] if i < len(params) else f"#{i}", v) for i, v in enumerate(message.args)]
    named += list(message.kwargs.items())
    for name, value in named:
        try:
            encode_value(value)
        except TypeError as inner:
            return TypeError(
                f"task {task.name!r}: argument {name!r} of type {type(value).__qualname__} "
                f"cannot be serialized ({inner}); pass JSON-like data, a dataclass, a msgspec "
                "Struct or a pydantic model"
            )
    return TypeError(f"task {task.name!r}: cannot serialize the call ({exc})")
