"""The hook (middleware) protocol: code that runs around enqueue and execution.

Subclass :class:`Hook`, override what you need, and register it with
``app.add_hook(MyHook())``. Only overridden methods are called, so unused hooks cost
nothing on the hot path. Observability (events, metrics, tracing) is built on this.

>>> class Audit(Hook):                                      # doctest: +SKIP
...     async def after_execute(self, message, result):
...         log.info("%s finished: %s", message.task, result.status)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.deps import Context
    from conveyor.message import Message
    from conveyor.observability.events import Event
    from conveyor.result import ErrorInfo, Result

__all__ = ["HOOK_METHODS", "Hook"]

HOOK_METHODS = (
    "before_enqueue",
    "after_enqueue",
    "before_execute",
    "after_execute",
    "on_retry",
    "on_dead_letter",
    "on_event",
)


class Hook:
    """Base class of hooks; every method is a no-op until overridden."""

    async def before_enqueue(self, message: Message) -> Message:
        """Called before publishing; may return a changed message (e.g. with headers)."""
        return message

    async def after_enqueue(self, message: Message, task_id: str) -> None:
        """Called after the broker accepted the message (``task_id`` may be an existing
        task's id when an idempotency key matched)."""

    async def before_execute(self, message: Message, context: Context) -> None:
        """Called in the worker right before the task function runs."""

    async def after_execute(self, message: Message, result: Result[Any]) -> None:
        """Called after the task ended and before it is settled (acked)."""

    async def on_retry(
        self, message: Message, attempt: int, delay: float, error: ErrorInfo
    ) -> None:
        """Called when a failed attempt is scheduled to run again after ``delay`` s."""

    async def on_dead_letter(self, message: Message | None, task_id: str, reason: str) -> None:
        """Called when a message goes to the dead-letter queue (``message`` is None when
        it could not be decoded)."""

    def on_event(self, event: Event) -> None:
        """Called for every event a worker or scheduler emits (task received, started,
        succeeded, failed, retried, dead, aborted; worker heartbeats; scheduler ticks).

        Synchronous, unlike the other methods: it runs inline several times per task, so
        it must not block; buffer and ship from a task of your own (the built-in event
        recorder does). See :mod:`conveyor.observability.events`."""


def overridden(hooks: list[Hook], method: str) -> list[Any]:
    """Bound methods of ``hooks`` that override ``method``."""
    base = getattr(Hook, method)
    return [getattr(h, method) for h in hooks if getattr(type(h), method) is not base]
