"""The hook (middleware) protocol: code that runs around enqueue and execution.

Subclass :class:`Hook`, override what you need, and register it with
``app.add_hook(MyHook())``. Only overridden methods are called, so unused hooks cost
nothing on the hot path. Observability (events, metrics, tracing) is built on this.

>>> class Audit(Hook):                                      # doctest: +SKIP
...     async def after_execute(self, message, result):
...         log.info("%s finished: %s", message.task, result.status)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.deps import Context
    from conveyor.events import Event
    from conveyor.message import Message
    from conveyor.result import ErrorInfo, Result

__all__ = ["HOOK_METHODS", "Hook", "HookSet"]

HOOK_METHODS = (
    "before_enqueue",
    "after_enqueue",
    "before_execute",
    "after_execute",
    "on_error",
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

    async def on_error(self, message: Message, attempt: int, error: BaseException) -> None:
        """Called in the worker when an attempt raised, with the exception itself (not
        its :class:`ErrorInfo`), before ``on_retry`` or ``after_execute`` say what
        becomes of the task. ``attempt`` is 1-based."""

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
        it must not block; buffer and ship from a task of your own (the event log's
        emitter does). See :mod:`conveyor.events`."""


class HookSet:
    """An app's hooks, in the order added, and for each method the bound methods of the
    hooks that override it (cached: asked on every enqueue and every task)."""

    def __init__(self) -> None:
        self._hooks: list[Hook] = []
        self._cache: dict[str, list[Any]] = {}

    def add(self, hook: Hook) -> None:
        self._hooks.append(hook)
        self._cache.clear()

    def remove(self, hook: Hook) -> None:
        """Remove ``hook`` (nothing if it was not added)."""
        if hook in self._hooks:
            self._hooks.remove(hook)
            self._cache.clear()

    def of(self, method: str) -> list[Any]:
        """The overriding ``method``s, in order (an empty list costs nothing to loop)."""
        found = self._cache.get(method)
        if found is None:
            base = getattr(Hook, method)
            found = [
                getattr(h, method) for h in self._hooks if getattr(type(h), method) is not base
            ]
            self._cache[method] = found
        return found

    def __iter__(self) -> Iterator[Hook]:
        return iter(list(self._hooks))

    def __len__(self) -> int:
        return len(self._hooks)
