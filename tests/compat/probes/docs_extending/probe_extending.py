"""Uses taskiq's "extending taskiq" examples the way the docs intend: a custom middleware,
result backend, schedule source, broker and CLI command, each plugged into taskiq."""

import asyncio
import contextlib
import importlib
import io
import sys
import time

from compat_checks import blocked, check
from taskiq import AsyncBroker, AsyncResultBackend, InMemoryBroker, TaskiqScheduler


async def until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)  # sleep: the poll interval
    return True


async def middleware(module_name: str) -> None:
    names = [f"{module_name}_{step}" for step in ("startup", "runs_task", "post_save", "shutdown")]
    out = io.StringIO()
    broker = None
    with check(names[0]):
        module = importlib.import_module(module_name)
        broker = InMemoryBroker().with_middlewares(module.MyMiddleware())

        @broker.task
        async def add_one(value: int) -> int:
            return value + 1

        with contextlib.redirect_stdout(out):
            await broker.startup()
        assert "RUN STARTUP" in out.getvalue(), repr(out.getvalue())
    if broker is None:
        blocked(names[1:], f"setting up {module_name}.MyMiddleware")
        return
    with check(names[1]):
        with contextlib.redirect_stdout(out):
            handle = await add_one.kiq(1)
            result = await handle.wait_result(check_interval=0.01, timeout=15)
        assert not result.is_err and result.return_value == 2, result
    with check(names[2]):
        with contextlib.redirect_stdout(out):
            seen = await until(lambda: "Post save" in out.getvalue())
        assert seen, f"post_save never printed: {out.getvalue()!r}"
    with check(names[3]):
        with contextlib.redirect_stdout(out):
            await broker.shutdown()
        assert "RUN SHUTDOWN" in out.getvalue(), repr(out.getvalue())


async def result_backend() -> None:
    saved = {}
    served = []
    backend = None
    with check("result_backend_subclass"):
        from result_backend import MyResultBackend

        class StoringBackend(MyResultBackend):  # the example, filled in as its docstrings say
            async def set_result(self, task_id, result):
                await super().set_result(task_id, result)
                saved[task_id] = result

            async def get_result(self, task_id, with_logs=False):
                served.append(task_id)
                return saved[task_id]

            async def is_result_ready(self, task_id):
                return task_id in saved

        backend = StoringBackend()
        assert isinstance(backend, AsyncResultBackend)
    if backend is None:
        blocked(
            ["result_backend_receives_results", "result_backend_serves_wait_result"],
            "result_backend_subclass",
        )
        return
    broker = InMemoryBroker().with_result_backend(backend)

    @broker.task
    async def add_one(value: int) -> int:
        return value + 1

    await broker.startup()
    handle = None
    with check("result_backend_receives_results"):
        handle = await add_one.kiq(1)
        assert await until(lambda: handle.task_id in saved), "set_result was never called"
        stored = saved[handle.task_id]
        assert not stored.is_err and stored.return_value == 2, stored
    with check("result_backend_serves_wait_result"):
        assert handle is not None, "not reached: the task was not sent"
        result = await handle.wait_result(check_interval=0.01, timeout=10)
        assert result.return_value == 2, result
        assert served == [handle.task_id], f"the backend's get_result served {served}"
    await broker.shutdown()


async def schedule_source() -> None:
    with check("schedule_source_lists_schedules"):
        from schedule_source import MyScheduleSource

        source = MyScheduleSource()
        TaskiqScheduler(InMemoryBroker(), sources=[source])
        await source.startup()
        schedules = await source.get_schedules()
        assert len(schedules) == 1 and schedules[0].cron == "* * * * *", schedules
        await source.shutdown()


async def custom_broker() -> None:
    sent = []
    my_broker = None
    with check("custom_broker_subclass"):
        from broker import MyBroker

        class RecordingBroker(MyBroker):
            async def kick(self, message):
                sent.append(message)
                await super().kick(message)

        my_broker = RecordingBroker()
        assert isinstance(my_broker, AsyncBroker)
    if my_broker is None:
        blocked(["custom_broker_kick_receives_message"], "custom_broker_subclass")
        return
    with check("custom_broker_kick_receives_message"):

        @my_broker.task
        async def hello(name: str) -> str:
            return f"hello {name}"

        await my_broker.startup()
        await hello.kiq("you")
        await my_broker.shutdown()
        assert len(sent) == 1, sent
        assert sent[0].task_name.endswith("hello"), sent[0]
        assert b"you" in sent[0].message, sent[0]


def cli_command() -> None:
    with check("custom_cli_command"):
        from cli import MyCommand

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            MyCommand().exec(["--test", "value"])
        assert "test='value'" in out.getvalue(), out.getvalue()


async def main() -> None:
    sys.path.insert(0, ".")
    await middleware("middleware_async")
    await middleware("middleware_sync")
    await result_backend()
    await schedule_source()
    await custom_broker()
    cli_command()


if __name__ == "__main__":
    asyncio.run(main())
