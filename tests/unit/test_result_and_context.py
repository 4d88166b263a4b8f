"""Result.raise_for_error and str(ErrorInfo) (taskiq's spellings), and Context.message."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import Context, Depends, ErrorInfo, Result, TaskFailed, TaskStatus
from tests.conftest import fast_app


def test_raise_for_error_returns_a_success_and_raises_a_failure() -> None:
    ok: Result[int] = Result("t1", "add", TaskStatus.SUCCEEDED, return_value=3)
    assert ok.raise_for_error() is ok
    error = ErrorInfo("ValueError", "bad input", "Traceback ...")
    failed: Result[int] = Result("t2", "add", TaskStatus.FAILED, error=error)
    with pytest.raises(TaskFailed, match="t2 failed: ValueError: bad input") as raised:
        failed.raise_for_error()
    assert raised.value.error is error


def test_error_info_prints_like_the_last_traceback_line() -> None:
    assert str(ErrorInfo("ValueError", "bad input")) == "ValueError: bad input"
    assert str(ErrorInfo("myapp.errors.Empty", "")) == "myapp.errors.Empty"


async def test_context_carries_the_message_as_sent() -> None:
    app = fast_app()

    @app.task(labels={"team": "billing"})
    async def inspect(n: int, flag: bool = False, ctx: Context = Depends()) -> dict[str, Any]:
        assert ctx.message is not None
        return {
            "args": ctx.message.args,
            "kwargs": ctx.message.kwargs,
            "labels": ctx.message.labels,
            "task_id": ctx.message.task_id,
        }

    async with app, app.worker(concurrency=1):
        handle = await inspect.kiq(4, flag=True)
        seen = await handle.get(timeout=5)
    assert seen == {
        "args": [4],
        "kwargs": {"flag": True},
        "labels": {"team": "billing"},
        "task_id": handle.task_id,
    }


async def test_a_printed_task_failure_shows_the_remote_traceback_first() -> None:
    import traceback

    from conveyor import RemoteTraceback

    app = fast_app()

    def parse_row(row: str) -> int:
        return int(row)

    @app.task
    async def import_rows(rows: list[str]) -> int:
        return sum(parse_row(row) for row in rows)

    async with app, app.worker():
        handle = await import_rows.kiq(["1", "two"])
        with pytest.raises(TaskFailed) as raised:
            await handle.get(timeout=5)
    printed = "".join(traceback.format_exception(raised.value))
    remote, _, local = printed.partition(
        "The above exception was the direct cause of the following exception:"
    )
    assert isinstance(raised.value.__cause__, RemoteTraceback)
    assert "in parse_row" in remote and "in import_rows" in remote
    assert "ValueError: invalid literal for int() with base 10: 'two'" in remote
    assert f"conveyor.TaskFailed: task {handle.task_id} failed: ValueError" in local
