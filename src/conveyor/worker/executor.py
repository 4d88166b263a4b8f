"""One delivery, end to end: decode, look up, check, run, record, settle.

:meth:`Executor.execute` is the whole hot path of a worker, as a sequence of small named
steps. Every way out of it settles the delivery exactly once: ack (succeeded), retry,
dead-letter (with the reason), or release (shutdown). Nothing is dropped and nothing
loops: malformed bodies, unknown tasks, bad arguments and poison messages are
dead-lettered with their raw bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from conveyor.batching import Batcher
from conveyor.brokers import redact_url
from conveyor.brokers.base import (
    Ack,
    Capability,
    DeadLetter,
    Delivery,
    FlowControl,
    Follow,
    Outcome,
    Release,
    Retry,
    StoredResult,
    Workflows,
)
from conveyor.clock import FaultPause
from conveyor.deps import Context
from conveyor.errors import ConfigurationError, SettlementRefused, TaskTimeout
from conveyor.events import (
    Event,
    EventEmitter,
    TaskDead,
    TaskDeferred,
    TaskReceived,
    TaskRetried,
    TaskStarted,
    args_preview,
    finished_event,
)
from conveyor.flow import Deferred, Gate, Permit, default_rand
from conveyor.hooks import HOOK_METHODS
from conveyor.message import MalformedMessage, Message, decode_message, encode_value
from conveyor.observability.logging import TASK_CONTEXT
from conveyor.result import (
    MAX_TRACEBACK,
    ErrorInfo,
    Result,
    TaskStatus,
    aborted_result,
    safe_text,
)
from conveyor.signing import InvalidSignature, verified
from conveyor.task import Task, TaskOptions
from conveyor.workflow.plan import (
    GATHER_TASK,
    BarrierGone,
    dependency_error,
    gather,
    gathered,
    on_failure,
    on_success,
)

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.task import ProcessRun, SyncRun, Task
    from conveyor.worker.settle import Settler
    from conveyor.worker.tally import Tally

__all__ = ["Executor"]

log = logging.getLogger("conveyor.worker")
# one line per task that ends (settings.log_tasks); a logger of its own so that it can be
# silenced or routed apart: logging.getLogger("conveyor.task").setLevel(logging.WARNING)
task_log = logging.getLogger("conveyor.task")

# how many task ids a worker remembers as having hit a worker bug, and how long a first
# hit waits before its one retry
_BUG_MEMORY = 1000
_BUG_RETRY_DELAY = 1.0


@dataclass(slots=True)
class _Ended:
    """How a task body ended when it did not return a value (a return is the value
    itself: no object on the hot path)."""

    error: BaseException | None = None
    aborted: bool = False  # by request (a value it returned anyway is dropped)
    released: bool = False  # cancelled by a shutdown past its grace


_ABORTED, _RELEASED = _Ended(aborted=True), _Ended(released=True)


class Executor:
    """Runs deliveries for one worker."""

    def __init__(
        self,
        app: Conveyor,
        settler: Settler,
        settle_retry_for: float,
        *,
        run_sync: SyncRun,
        run_process: ProcessRun | None = None,
        worker_id: str = "",
        emitter: EventEmitter | None = None,
        body_done: Callable[[Delivery], None] | None = None,
        tally: Tally | None = None,
    ) -> None:
        self.app = app
        # told when a delivery's body ended, before it settles: its slot is free then
        self._body_done = body_done or (lambda delivery: None)
        self._tally = tally  # outcomes counted for the dashboard (settings.task_counts)
        self._run_sync = run_sync
        self._run_process = run_process
        self.settler = settler
        self.settle_retry_for = settle_retry_for
        # the state of the deliveries in hand, keyed by the Delivery itself
        self._shutting_down = False
        self._lost: set[Delivery] = set()  # the lease thread found another owner
        self._aborting: set[Delivery] = set()  # abort requested
        self._bodies: dict[Delivery, tuple[asyncio.Task[Any] | None, Context | None]] = {}
        self._bug_hits: dict[str, int] = {}  # task id -> worker bugs seen (oldest first)
        self._lease = app.settings.lease
        # a body starting with less than this left of its known lease checks ownership
        self._lease_margin = app.settings.lease / 3
        self._signing_keys = app.settings.signing_keys
        self._clock = app.settings.clock
        broker = app.broker
        self._ownership: Batcher[Delivery, bool] = Batcher(
            lambda batch: broker.extend_leases(batch, self._lease)
        )
        # hooks are fixed while a worker runs; skip the await entirely when there are none
        self._has_hooks = {name: bool(app.hooks.of(name)) for name in HOOK_METHODS}
        # events are built only when someone takes them (on_event hooks, the event log)
        self.worker_id = worker_id
        self._log_tasks = app.settings.log_tasks
        self._events = emitter if emitter is not None and emitter.active else None
        if self._events is not None:  # terminal events ride on after_execute (see _hooks)
            self._has_hooks["after_execute"] = True
        # what ends a group that has no callback: its members' results are its result
        self._gather: Task[Any, Any] = Task(app, gather, TaskOptions(name=GATHER_TASK))
        # flow control (conveyor.flow): the broker's shared state, and the permits held
        self._flow = cast(
            "FlowControl | None", broker if Capability.FLOW in broker.capabilities else None
        )
        self._gate_made: Gate | None = None
        self._permits: dict[Delivery, Permit] = {}
        # a workflow's task whose workflow was aborted must not start: abort_workflow()
        # marks the workflow first, then aborts its tasks one by one, and a worker may
        # claim one in between. A broker whose claim already checks says so.
        self._workflows = cast(
            "Workflows | None",
            broker
            if Capability.WORKFLOWS in broker.capabilities
            and not getattr(broker, "claim_checks_aborted_workflows", False)
            else None,
        )

    async def execute(self, delivery: Delivery) -> TaskStatus | None:
        """Run ``delivery`` and settle it; returns the status it ended in (None if released)."""
        body = delivery.body
        if self._signing_keys:  # before anything else reads the body
            try:
                body = verified(body, self._signing_keys)
            except InvalidSignature as exc:
                return await self._reject(delivery, None, str(exc))
        try:
            message = decode_message(body)
        except MalformedMessage as exc:
            return await self._reject(delivery, None, exc.reason)
        if message.task_id != delivery.task_id:
            # the broker's id is the one waiters know: a result stored under the body's id
            # would never reach them (or would overwrite another task's)
            return await self._reject(
                delivery,
                None,
                f"malformed message: the body's task id {message.task_id!r} is not the "
                f"message's {delivery.task_id!r}",
            )
        TASK_CONTEXT.set((message.task_id, message.task, delivery.attempt))  # for log records
        if self._events is not None:
            self._emit(self._task_event(TaskReceived, message, delivery.attempt))
        if delivery.abort_requested or delivery in self._aborting:
            return await self._aborted(delivery, message, 0.0, running=False)
        task = self.app.tasks.get(message.task)
        if task is None:
            if message.task != GATHER_TASK:
                return await self._unknown_task(delivery, message)
            task = self._gather
        # a task whose worker died re-runs even with retries=0 (at-least-once, G2); one that
        # keeps killing workers is dead-lettered after max(max_attempts, poison_after)
        # started attempts (G5). Exceptions still use only the retry budget (_failed).
        limit = max(message.max_attempts, self.app.settings.poison_after)
        if delivery.attempt > limit + self.app.settings.unknown_task_retries:
            return await self._reject(
                delivery,
                message,
                f"poison: attempt {delivery.attempt} exceeds the limit of {limit} started "
                "attempts; the previous attempt never finished (its worker was killed or lost)",
            )
        if message.flow is not None or task.options.flow is not None:
            stopped = await self._limits(delivery, message, task)
            if stopped is not None:
                return stopped
        args = list(message.args)
        if message.link is not None and message.link.gather:
            settled = await self._gathered(delivery, message, task, args)
            if settled is not None:
                return settled
        try:
            args, kwargs = task.convert_arguments(args, dict(message.kwargs))
        except Exception as exc:  # msgspec's ValidationError, or a model's own validator
            return await self._reject(
                delivery,
                message,
                f"invalid arguments for task {task.name!r}: "
                f"{ErrorInfo.from_exception(exc).message}",
            )
        return await self._run(delivery, message, task, args, kwargs)

    async def _limits(
        self, delivery: Delivery, message: Message, task: Task[Any, Any]
    ) -> TaskStatus | None:
        """Flow control before the body (conveyor.flow): a task past its expiry or
        superseded by a later debounced enqueue ends without running; one over a rate or
        concurrency limit is deferred, uncharged, to when it may run. None: run it."""
        flow, options = message.flow, task.options.flow
        store = self._flow
        if flow is not None and flow.expires and self._clock.now() >= flow.expires:
            detail = "it expired before it started"
            return await self._unrun(delivery, message, TaskStatus.EXPIRED, detail)
        needs_store = (flow is not None and flow.debounce) or (options and options.gated)
        if store is None and needs_store:
            raise ConfigurationError(
                f"task {task.name!r} uses flow control, which the broker at "
                f"{redact_url(self.app.broker.url)} does not have"
            )
        try:
            if flow is not None and flow.debounce:
                assert store is not None
                (latest,) = await store.get_marks([f"debounce:{flow.debounce}"])
                if latest is not None and latest != message.task_id:
                    detail = f"superseded by task {latest}, enqueued later (debounce)"
                    return await self._unrun(delivery, message, TaskStatus.SUPERSEDED, detail)
            if options is None or not options.gated:
                return None
            assert store is not None
            holder = f"{message.task_id}:{delivery.attempt}"
            admitted = await self._gate(store).admit(task.name, options, flow, holder)
        except Exception:
            # a broker fault: claim it again shortly, uncharged (its due time is no spin)
            log.warning("flow control of %s failed; it waits", message.task_id, exc_info=True)
            await self._settle(delivery, Retry(self.app.settings.fault_pause_max, charge=False))
            return TaskStatus.QUEUED
        if isinstance(admitted, Deferred):
            assert store is not None
            with contextlib.suppress(Exception):  # what its status shows, best effort
                await store.put_marks(
                    {f"wait:{message.task_id}": admitted.reason}, admitted.delay + self._lease
                )
            await self._settle(delivery, Retry(admitted.delay, charge=False))
            self._count(message.task, message.queue, "deferred")
            if self._events is not None:
                self._emit(
                    TaskDeferred(
                        at=self._clock.now(),
                        task_id=message.task_id,
                        task=message.task,
                        queue=message.queue,
                        attempt=delivery.attempt,
                        worker=self.worker_id,
                        reason=admitted.reason,
                        delay=admitted.delay,
                    )
                )
            return TaskStatus.QUEUED
        if admitted is not None:
            self._permits[delivery] = admitted
        return None

    def _gate(self, store: FlowControl) -> Gate:
        if self._gate_made is None:
            settings = self.app.settings
            self._gate_made = Gate(store, self._lease, settings.permit_wait, default_rand)
        return self._gate_made

    async def renew_permits(self) -> None:
        """Renew the leases of the permits held by running tasks (every lease / 3)."""
        if self._permits and self._flow is not None:
            held = [(p.key, p.holder) for p in self._permits.values()]
            await self._flow.renew_permits(held, self._lease)

    async def _unrun(
        self, delivery: Delivery, message: Message, status: TaskStatus, detail: str
    ) -> TaskStatus:
        """End a task that will not run (expired, superseded): acked with its result, and
        counted."""
        kind = "Expired" if status is TaskStatus.EXPIRED else "Superseded"
        result: Result[Any] = Result(
            task_id=message.task_id,
            task=message.task,
            status=status,
            error=ErrorInfo(f"conveyor.{kind}", detail),
            attempts=delivery.attempt - 1,
            finished_at=self._clock.now(),
        )
        if self._has_hooks["after_execute"]:
            await self._hooks("after_execute", message, result)
        if self._log_tasks:
            _log_outcome(logging.INFO, message, status.value, 0.0, delivery.attempt, f": {detail}")
        follow = self._failure_follow(message, result)
        await self._settle(delivery, Ack(self._store(message, result), follow))
        self._count(message.task, message.queue, status.value)
        return status

    async def _gathered(
        self, delivery: Delivery, message: Message, task: Task[Any, Any], args: list[Any]
    ) -> TaskStatus | None:
        """A group's callback: put the group's results first in ``args`` (None: run it),
        or settle it, without running, as failed when a member failed."""
        link = message.link
        assert link is not None
        annotation: Any = Any
        if task.spec.arguments:
            annotation = task.spec.hints.get(task.spec.arguments[0].name, Any)
        try:
            got = await gathered(self.app.broker, link, annotation)
        except BarrierGone as exc:
            return await self._failed(delivery, message, task, exc, 0.0, retry=False)
        except Exception:
            # a broker fault: try again shortly (the attempt counts, within the poison limit)
            log.warning("could not read the group of %s; retrying", message.task_id, exc_info=True)
            await self._settle(delivery, Retry(self.app.settings.fault_pause_max))
            return TaskStatus.RETRYING
        if got.failure is not None:
            return await self._not_run(delivery, message, task, got.failure)
        if link.receives:
            args.insert(0, got.values)
        return None

    async def _not_run(
        self, delivery: Delivery, message: Message, task: Task[Any, Any], failure: Result[Any]
    ) -> TaskStatus:
        """A callback whose group failed: it ends failed without running (acked, not
        dead-lettered: there is nothing of its own to retry), its error naming the member
        that failed first; its workflow goes on failing from here."""
        result: Result[Any] = Result(
            task_id=message.task_id,
            task=task.name,
            status=TaskStatus.FAILED,
            error=dependency_error(failure),
            attempts=delivery.attempt,
            finished_at=self.app.settings.clock.now(),
        )
        await self._hooks("after_execute", message, result)
        _log_outcome(logging.WARNING, message, "failed", 0.0, delivery.attempt, f": {result.error}")
        stored = self._store(message, result)
        await self._settle(delivery, Ack(stored, self._failure_follow(message, result)))
        self._count(message.task, message.queue, "failed")
        return TaskStatus.FAILED

    def _failure_follow(self, message: Message | None, result: Result[Any]) -> Follow | None:
        """What a workflow task that ended other than succeeded leaves: its group slot
        failed, or its workflow ended (None for a task outside any workflow)."""
        if message is None or message.link is None:
            return None
        return on_failure(message, message.link, result, encode_value(result), self.app.settings)

    async def _run(
        self,
        delivery: Delivery,
        message: Message,
        task: Task[Any, Any],
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> TaskStatus | None:
        context = (
            self._context_for(delivery, message, task)
            if task.has_dependencies or self._has_hooks["before_execute"]
            else None  # most no-op tasks on the hot path need no Context
        )
        if context is not None and self._has_hooks["before_execute"]:
            await self._hooks("before_execute", message, context)
        if delivery in self._aborting:  # requested while the hooks above ran
            return await self._aborted(delivery, message, 0.0, running=False)
        if message.link is not None and await self._workflow_aborted(message.link.workflow):
            return await self._aborted(delivery, message, 0.0, running=False)
        if delivery.lease_until - self._clock.monotonic() < self._lease_margin and not (
            await self._still_ours(delivery)
        ):
            return None
        if self._events is not None:
            self._emit(self._task_event(TaskStarted, message, delivery.attempt))
        started = time.perf_counter()
        ran = await self._call_body(delivery, message, task, args, kwargs, context)
        elapsed = time.perf_counter() - started
        if type(ran) is not _Ended:
            return await self._succeeded(delivery, message, task, ran, elapsed)
        if ran.released:
            await self._settle(delivery, Release())
            return None
        if ran.aborted:
            return await self._aborted(delivery, message, elapsed)
        assert ran.error is not None
        return await self._failed(delivery, message, task, ran.error, elapsed)

    async def _workflow_aborted(self, workflow_id: str) -> bool:
        """Its workflow was aborted (read from the broker, for a workflow's task only)."""
        if self._workflows is None:
            return False
        try:
            record = await self._workflows.workflow(workflow_id)
        except Exception:
            log.warning("could not read workflow %s before its task; running it", workflow_id)
            return False
        return record is not None and record.state == "aborted"

    def _context_for(self, delivery: Delivery, message: Message, task: Task[Any, Any]) -> Context:
        return Context(
            self.app,
            message.task_id,
            task.name,
            delivery.attempt,
            message.queue,
            message.labels,
            message,
        )

    async def _call_body(
        self,
        delivery: Delivery,
        message: Message,
        task: Task[Any, Any],
        args: list[Any],
        kwargs: dict[str, Any],
        context: Context | None,
    ) -> Any:
        """Run the task function (under its timeout): its value, or an :class:`_Ended`
        saying it failed, was aborted by request, or released by a shutdown past its grace."""
        current = asyncio.current_task()
        self._bodies[delivery] = (current, context)
        try:
            if message.timeout:
                try:
                    async with asyncio.timeout(message.timeout):
                        value = await task.run(
                            args, kwargs, context, self._run_sync, self._run_process
                        )
                except TimeoutError:
                    raise TaskTimeout(
                        f"task {task.name!r} exceeded its timeout of {message.timeout:g} s"
                    ) from None
            else:
                value = await task.run(args, kwargs, context, self._run_sync, self._run_process)
        except asyncio.CancelledError as exc:
            ours = current is not None and current.cancelling() > 0
            if delivery in self._aborting:
                if ours and current is not None:
                    current.uncancel()  # our own cancellation, now handled
                return _ABORTED
            if ours:
                if self._shutting_down:
                    return _RELEASED
                raise
            return _Ended(error=exc)  # the task itself raised CancelledError: a failure
        except BaseException as exc:  # SystemExit, KeyboardInterrupt from task code too
            if delivery in self._aborting:  # a library turned our cancellation into its error
                return _ABORTED
            return _Ended(error=exc)
        finally:
            del self._bodies[delivery]
            self._body_done(delivery)
        if delivery in self._aborting:  # it swallowed the cancellation: the value is dropped
            if current is not None and current.cancelling():
                current.uncancel()
            return _ABORTED
        return value

    async def _succeeded(
        self,
        delivery: Delivery,
        message: Message,
        task: Task[Any, Any],
        value: Any,
        elapsed: float,
    ) -> TaskStatus:
        result: Result[Any] = Result(
            task_id=message.task_id,
            task=task.name,
            status=TaskStatus.SUCCEEDED,
            return_value=value,
            execution_time=elapsed,
            attempts=delivery.attempt,
            finished_at=self.app.settings.clock.now(),
        )
        try:
            stored = self._store(message, result)
        except Exception as exc:  # TypeError, OverflowError, RecursionError, too large
            # not retried: running the task again would repeat its side effects for nothing
            error = TypeError(f"task {task.name!r}: result not serializable: {_describe(exc)}")
            return await self._failed(delivery, message, task, error, elapsed, retry=False)
        follow: Follow | None = None
        if message.link is not None:
            try:
                data = stored.data if stored is not None else encode_value(result)
                follow = on_success(message, message.link, value, data, self.app.settings)
            except Exception as exc:  # its value cannot travel to the next call
                error = TypeError(
                    f"task {task.name!r}: what follows it in its workflow cannot be sent: "
                    f"{_describe(exc)}"
                )
                return await self._failed(delivery, message, task, error, elapsed, retry=False)
        if self._has_hooks["after_execute"]:
            await self._hooks("after_execute", message, result)
        try:
            await self._settle(delivery, Ack(stored, follow), refusable=True)
        except SettlementRefused as refused:
            error = TypeError(
                f"task {task.name!r}: result not stored: the broker refused it: {refused}"
            )
            return await self._failed(delivery, message, task, error, elapsed, retry=False)
        if self._tally is not None:
            self._tally.add(message.task, message.queue, "succeeded", result.finished_at)
        if self._log_tasks:
            _log_outcome(logging.INFO, message, "succeeded", elapsed, delivery.attempt)
        return TaskStatus.SUCCEEDED

    async def _still_ours(self, delivery: Delivery) -> bool:
        """Before a body starts past the time its lease is known to hold (this process was
        paused since the claim): extend it, batched with others starting now. False, and
        the body never starts, if another worker owns the message by now (G2)."""
        asked = self._clock.monotonic()
        try:
            owned = await self._ownership.submit(delivery)
        except Exception:
            log.warning("could not check the lease of %s; running it", delivery.task_id)
            return True
        if owned:
            delivery.lease_until = asked + self._lease
            return True
        log.warning(
            "task %s: its lease was lost before it started (this worker was paused?); "
            "another worker owns it now, so it does not run here",
            delivery.task_id,
        )
        return False

    def request_abort(self, delivery: Delivery) -> None:
        """Abort ``delivery``: if its body runs, set its Context's ``abort_requested`` and
        cancel it (a sync task's thread runs on; its value is discarded); if it has not
        started, it never will. Either way it settles as aborted: acked, no retry."""
        if delivery in self._aborting:
            return
        self._aborting.add(delivery)
        running = self._bodies.get(delivery)
        if running is not None:
            task, context = running
            if context is not None:
                context.request_abort()
            if task is not None:
                task.cancel()

    def is_aborting(self, delivery: Delivery) -> bool:
        """Its abort was requested (it ends as aborted, whatever it does meanwhile)."""
        return delivery in self._aborting

    def lose(self, delivery: Delivery) -> None:
        """The lease thread found another owner: settling it is no longer retried."""
        self._lost.add(delivery)

    def shut_down(self) -> None:
        """A stopping worker is about to cancel what still runs: release it, uncharged."""
        self._shutting_down = True

    def forget(self, delivery: Delivery) -> None:
        """``delivery`` has ended in this worker: drop what was kept about it."""
        self._lost.discard(delivery)
        self._aborting.discard(delivery)
        self._permits.pop(delivery, None)  # not given back (its settlement failed): it expires

    async def _aborted(
        self, delivery: Delivery, message: Message, elapsed: float, *, running: bool = True
    ) -> TaskStatus:
        """Ack with an ``aborted`` result; an abort is never retried nor dead-lettered."""
        result = aborted_result(
            message.task_id,
            message.task,
            attempts=delivery.attempt,
            finished_at=self.app.settings.clock.now(),
            running=running,
            execution_time=elapsed,
        )
        if self._log_tasks:
            _log_outcome(logging.INFO, message, "aborted", elapsed, delivery.attempt)
        if self._has_hooks["after_execute"]:
            await self._hooks("after_execute", message, result)
        follow = self._failure_follow(message, result)
        await self._settle(delivery, Ack(self._store(message, result), follow))
        self._count(message.task, message.queue, "aborted")
        return TaskStatus.ABORTED

    async def _failed(
        self,
        delivery: Delivery,
        message: Message,
        task: Task[Any, Any],
        exc: BaseException,
        elapsed: float,
        *,
        retry: bool = True,
    ) -> TaskStatus:
        """An attempt raised: retried after its backoff while ``retry_on`` and the attempts
        allow, else failed for good (dead-lettered with a FAILED result)."""
        if self._has_hooks["on_error"]:
            await self._hooks("on_error", message, delivery.attempt, exc)
        error = ErrorInfo.from_exception(exc)
        if (
            retry
            and isinstance(exc, task.options.retry_on)
            and delivery.attempt < message.max_attempts
        ):
            return await self._retry_later(delivery, message, task, error, elapsed)
        result: Result[Any] = Result(
            task_id=message.task_id,
            task=task.name,
            status=TaskStatus.FAILED,
            error=error,
            execution_time=elapsed,
            attempts=delivery.attempt,
            finished_at=self.app.settings.clock.now(),
        )
        await self._hooks("after_execute", message, result)
        reason = f"failed after {delivery.attempt} attempt(s): {error.type}: {error.message}"
        _log_outcome(
            logging.WARNING,
            message,
            "failed",
            elapsed,
            delivery.attempt,
            f"; dead-lettered: {error}",
        )
        await self._hooks("on_dead_letter", message, message.task_id, reason)
        follow = self._failure_follow(message, result)
        await self._settle(delivery, DeadLetter(reason, self._store(message, result), follow))
        self._count(message.task, message.queue, "failed")
        return TaskStatus.FAILED

    async def _retry_later(
        self,
        delivery: Delivery,
        message: Message,
        task: Task[Any, Any],
        error: ErrorInfo,
        elapsed: float,
    ) -> TaskStatus:
        delay = task.options.backoff(delivery.attempt)
        await self._hooks("on_retry", message, delivery.attempt, delay, error)
        if self._events is not None:
            self._emit(
                TaskRetried(
                    at=self.app.settings.clock.now(),
                    task_id=message.task_id,
                    task=message.task,
                    queue=message.queue,
                    attempt=delivery.attempt,
                    worker=self.worker_id,
                    duration=elapsed,
                    delay=delay,
                    error_type=error.type,
                    error_message=error.message,
                )
            )
        if self._log_tasks:
            detail = f"; retrying in {delay:.2f}s: {error}"
            _log_outcome(
                logging.INFO, message, "retrying", elapsed, delivery.attempt, detail, "failed"
            )
        await self._settle(delivery, Retry(delay))
        self._count(message.task, message.queue, "retried")
        return TaskStatus.RETRYING

    async def contain_bug(self, delivery: Delivery, exc: Exception) -> TaskStatus:
        """Settle a delivery whose run escaped :meth:`execute` (a bug in Conveyor, a hook or
        the broker client): retried once after ``bug_retry_delay``, charged, then
        dead-lettered with the traceback the second time this worker sees it, so it can
        never loop (G5). Across workers the started-attempts limit bounds it too."""
        hits = self._bug_hits.pop(delivery.task_id, 0) + 1
        self._bug_hits[delivery.task_id] = hits
        while len(self._bug_hits) > _BUG_MEMORY:
            del self._bug_hits[next(iter(self._bug_hits))]
        trace = "".join(traceback.format_exception(exc)).rstrip()
        if hits == 1:
            log.error(
                "worker bug while running %s; retrying it once in %.1fs\n%s",
                delivery.task_id,
                _BUG_RETRY_DELAY,
                trace,
            )
            await self._settle(delivery, Retry(_BUG_RETRY_DELAY))
            return TaskStatus.RETRYING
        del self._bug_hits[delivery.task_id]
        try:
            message: Message | None = decode_message(delivery.body)
        except Exception:
            message = None
        return await self._reject(
            delivery, message, f"worker bug, hit twice while running it: {trace}"
        )

    async def _unknown_task(self, delivery: Delivery, message: Message) -> TaskStatus | None:
        if delivery.attempt <= self.app.settings.unknown_task_retries:
            # rolling deploys: a newer worker may know the task. The bounce counts as an
            # attempt, so the poison threshold below is raised by unknown_task_retries.
            await self._settle(delivery, Retry(self.app.settings.unknown_task_delay))
            return TaskStatus.RETRYING
        return await self._reject(
            delivery,
            message,
            f"unknown task {message.task!r}: not registered on this worker; is its module in the "
            "worker's module list?",
        )

    async def _reject(self, delivery: Delivery, message: Message | None, reason: str) -> TaskStatus:
        """Dead-letter a delivery that cannot run, with a DEAD result for its waiters."""
        reason = safe_text(reason, MAX_TRACEBACK)
        log.error("dead-lettering %s: %s", delivery.task_id, reason)
        task_name = message.task if message is not None else ""
        result: Result[Any] = Result(
            task_id=delivery.task_id,
            task=task_name,
            status=TaskStatus.DEAD,
            error=ErrorInfo("conveyor.DeadLettered", reason),
            attempts=delivery.attempt,
            finished_at=self.app.settings.clock.now(),
        )
        await self._hooks("on_dead_letter", message, delivery.task_id, reason)
        if self._events is not None:
            self._emit(
                TaskDead(
                    at=result.finished_at,
                    task_id=delivery.task_id,
                    task=task_name,
                    queue=delivery.queue,
                    attempt=delivery.attempt,
                    worker=self.worker_id,
                    reason=reason,
                )
            )
        ttl = self._ttl(message)
        stored = None if ttl == 0 else StoredResult(delivery.task_id, encode_value(result), ttl)
        follow = self._failure_follow(message, result)
        await self._settle(delivery, DeadLetter(reason, stored, follow))
        self._count(task_name, delivery.queue, "dead")
        return TaskStatus.DEAD

    async def _hooks(self, method: str, *args: Any) -> None:
        """Run hooks; a hook that raises is logged and never changes the task's outcome."""
        if method == "after_execute" and self._events is not None:
            # every terminal result (succeeded, failed, aborted) passes here exactly once
            self._emit(finished_event(args[0], args[1], self.worker_id))
        for hook in self.app.hooks.of(method):
            try:
                await hook(*args)
            except Exception:
                log.exception(
                    "hook %s.%s raised; ignoring it", type(hook.__self__).__name__, method
                )

    def _task_event(
        self, kind: type[TaskReceived] | type[TaskStarted], message: Message, attempt: int
    ) -> Event:
        extra: dict[str, Any] = {}
        limit = self.app.settings.event_args_preview
        if kind is TaskReceived and limit:  # what the dashboard shows as the task's args
            extra["args"] = args_preview(message.args, message.kwargs, limit)
        return kind(
            at=self.app.settings.clock.now(),
            task_id=message.task_id,
            task=message.task,
            queue=message.queue,
            attempt=attempt,
            worker=self.worker_id,
            enqueued_at=message.enqueued_at,
            not_before=message.not_before,
            **extra,
        )

    def _count(self, task: str, queue: str, status: str) -> None:
        if self._tally is not None:
            self._tally.add(task, queue, status, self._clock.now())

    def _emit(self, event: Event) -> None:
        if self._events is not None:
            self._events.emit(event)

    def _ttl(self, message: Message | None) -> float:
        if message is not None and message.result_ttl is not None:
            return message.result_ttl
        return self.app.settings.result_ttl

    def _store(self, message: Message, result: Result[Any]) -> StoredResult | None:
        """The result to store with the settlement; raises if it cannot be encoded or is
        over ``max_result_bytes`` (only a return value can be: error results are made of
        bounded, encodable text)."""
        ttl = self._ttl(message)
        if ttl == 0:
            return None
        data = encode_value(result)
        limit = self.app.settings.max_result_bytes
        if len(data) > limit:
            raise ValueError(
                f"the encoded result is {len(data)} bytes, over max_result_bytes ({limit}); "
                "store the data elsewhere and return a reference"
            )
        return StoredResult(message.task_id, data, ttl)

    async def _settle(
        self, delivery: Delivery, outcome: Outcome, *, refusable: bool = False
    ) -> None:
        """Settle, retrying through transient broker errors while the lease thread keeps
        the lease; gives up (leaving it to lease expiry: at-least-once) after a while. A
        settlement the broker refuses is not retried: with ``refusable`` the caller gets
        the :class:`SettlementRefused` (to settle otherwise), else it is logged."""
        # a permit the delivery holds (conveyor.flow) goes back after its settlement
        permit = self._permits.pop(delivery, None) if self._permits else None
        try:
            clock = self._clock
            deadline = clock.monotonic() + self.settle_retry_for
            pause: FaultPause | None = None  # made on the first fault: most settle at once
            while True:
                try:
                    owned = await self.settler.settle(delivery, outcome)
                except SettlementRefused as refused:
                    if refusable:
                        raise
                    log.error(
                        "the broker refused to settle %s (%s); it returns after its lease",
                        delivery.task_id,
                        refused,
                    )
                    return
                except Exception:
                    if clock.monotonic() >= deadline or delivery in self._lost:
                        log.error(
                            "could not settle %s; it will be redelivered after its lease",
                            delivery.task_id,
                            exc_info=True,
                        )
                        return
                    if pause is None:
                        settings = self.app.settings
                        pause = FaultPause(clock, settings.fault_pause, settings.fault_pause_max)
                    log.warning(
                        "settling %s failed; retrying in %.2fs",
                        delivery.task_id,
                        pause.current,
                        exc_info=True,
                    )
                    await pause.wait()
                    continue
                if not owned:
                    log.warning(
                        "task %s: lease lost before settling; another worker owns it now, "
                        "this outcome was discarded",
                        delivery.task_id,
                    )
                return
        finally:
            if permit is not None:
                await self._release_permit(permit)

    async def _release_permit(self, permit: Permit) -> None:
        assert self._flow is not None
        try:
            await self._flow.release_permits([(permit.key, permit.holder)])
        except Exception:
            log.warning("could not give a permit back; its lease expires", exc_info=True)


def _log_outcome(
    level: int,
    message: Message,
    outcome: str,
    elapsed: float,
    attempt: int,
    detail: str = "",
    verb: str | None = None,
) -> None:
    """``emails:send[1c7d9a2b] succeeded in 0.012s``: the task, its short id, what became
    of it, how long the attempt ran. JSON logs also get ``outcome`` and ``duration``."""
    if not task_log.isEnabledFor(level):
        return
    tries = f" (attempt {attempt}/{message.max_attempts})" if message.max_attempts > 1 else ""
    task_log.log(
        level,
        "%s[%s] %s in %.3fs%s%s",
        message.task,
        message.task_id[:8],
        verb or outcome,
        elapsed,
        tries,
        detail,
        extra={"outcome": outcome, "duration": round(elapsed, 6)},
    )


def _describe(exc: BaseException) -> str:
    """``OverflowError: ...`` for a reason or an error message, whatever ``exc`` is."""
    return str(ErrorInfo.from_exception(exc))
