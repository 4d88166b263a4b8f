"""A taskiq program moved to Conveyor by changing its imports only.

The body below is plain taskiq: InMemoryBroker, a WORKER_STARTUP handler filling the
state, TaskiqDepends with Context and TaskiqState, retry_on_error/max_retries with
SimpleRetryMiddleware, kicker().with_labels(...), wait_result() and raise_for_error().
Then it shows the Conveyor app underneath (`broker.conveyor`).

Run: python examples/taskiq_migration.py   (docs/migrating-from-taskiq.md)
"""

from __future__ import annotations

import asyncio

# before: from taskiq import Context, InMemoryBroker, SimpleRetryMiddleware, ...
from conveyor.compat.taskiq import (
    Context,
    InMemoryBroker,
    SimpleRetryMiddleware,
    TaskiqDepends,
    TaskiqEvents,
    TaskiqState,
)

broker = InMemoryBroker().with_middlewares(SimpleRetryMiddleware(default_retry_count=3))


class Mailer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, to: str, subject: str) -> str:
        self.sent.append(to)
        return f"<{len(self.sent)}@mail> {subject} -> {to}"


@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def startup(state: TaskiqState) -> None:
    state.mailer = Mailer()


@broker.task(task_name="send_welcome", retry_on_error=True, max_retries=3)
async def send_welcome(
    to: str,
    context: Context = TaskiqDepends(),
    state: TaskiqState = TaskiqDepends(),
) -> str:
    retries = int(context.message.labels.get("_retries", 0))
    if retries == 0 and to.endswith("@flaky.example"):
        raise ConnectionError("SMTP server hung up")  # the retry succeeds
    tenant = context.message.labels.get("tenant", "-")
    return await state.mailer.send(to, f"welcome (tenant {tenant}, run {retries + 1})")


@broker.task
async def divide(a: int, b: int) -> float:
    return a / b


async def main() -> None:
    await broker.startup()  # starts a worker in this event loop, as taskiq's does
    try:
        task = await send_welcome.kiq("ada@example.com")
        result = await task.wait_result(timeout=5)
        print("is_err:", result.is_err, "| return_value:", result.return_value)

        task = await send_welcome.kicker().with_labels(tenant="acme").kiq("bob@flaky.example")
        result = await task.wait_result(timeout=5)
        print("after a retry:", result.return_value, f"(attempts: {result.attempts})")

        delayed = await divide.kicker().with_labels(delay=0.3).kiq(1, 4)
        print("delayed, ready at once?", await delayed.is_ready())
        print("delayed result:", (await delayed.wait_result(timeout=5)).return_value)

        failed = await (await divide.kiq(1, 0)).wait_result(timeout=5)
        # taskiq gives the exception object; Conveyor an ErrorInfo (type, message, traceback)
        print("error:", failed.error, "| type:", failed.error and failed.error.type)
        try:
            failed.raise_for_error()
        except Exception as exc:
            print("raise_for_error():", type(exc).__name__, "-", exc)

        # the real Conveyor app underneath: its API is all there
        app = broker.conveyor
        print("conveyor tasks:", sorted(app.tasks))
        state = await app.handle(task.task_id).status()
        print("status of the flaky send:", state.status.value)
    finally:
        await broker.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
