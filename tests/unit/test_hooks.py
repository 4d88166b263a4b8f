"""Hooks run around enqueue and execution, in order, and only where overridden."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Conveyor, ErrorInfo, Hook, Message, Result, fixed


class Recorder(Hook):
    def __init__(self) -> None:
        self.events: list[str] = []

    async def before_enqueue(self, message: Message) -> Message:
        self.events.append("before_enqueue")
        return message.__class__(**{**_fields(message), "headers": {"traceparent": "00-abc"}})

    async def after_enqueue(self, message: Message, task_id: str) -> None:
        self.events.append("after_enqueue")

    async def before_execute(self, message: Message, context: Context) -> None:
        self.events.append(f"before_execute:{message.headers.get('traceparent')}")

    async def after_execute(self, message: Message, result: Result[Any]) -> None:
        self.events.append(f"after_execute:{result.status}")

    async def on_retry(
        self, message: Message, attempt: int, delay: float, error: ErrorInfo
    ) -> None:
        self.events.append(f"on_retry:{attempt}")

    async def on_dead_letter(self, message: Message | None, task_id: str, reason: str) -> None:
        self.events.append("on_dead_letter")


def _fields(message: Message) -> dict[str, Any]:
    return {f: getattr(message, f) for f in message.__struct_fields__}


async def test_hooks_see_every_stage(app: Conveyor) -> None:
    recorder = Recorder()
    app.add_hook(recorder)

    @app.task(retries=1, backoff=fixed(0.0))
    async def fails() -> None:
        raise ValueError("no")

    @app.task
    async def works() -> int:
        return 1

    async with app.worker(concurrency=1):
        await (await works.kiq()).get(timeout=5)
        await (await fails.kiq()).wait_result(timeout=5)
    assert recorder.events == [
        "before_enqueue",
        "after_enqueue",
        "before_execute:00-abc",
        "after_execute:succeeded",
        "before_enqueue",
        "after_enqueue",
        "before_execute:00-abc",
        "on_retry:1",
        "before_execute:00-abc",
        "after_execute:failed",
        "on_dead_letter",
    ]


def test_only_overridden_hook_methods_are_called(app: Conveyor) -> None:
    class OnlyRetry(Hook):
        async def on_retry(
            self, message: Message, attempt: int, delay: float, error: ErrorInfo
        ) -> None:
            return None

    app.add_hook(OnlyRetry())
    assert len(app.hooks.of("on_retry")) == 1
    assert app.hooks.of("before_execute") == []
