"""Task options are checked where the task is declared, and a worker bug cannot loop."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from conveyor import Context, Conveyor, Depends, TaskStatus, exponential
from conveyor.retry import Fixed
from conveyor.worker import executor
from tests.conftest import fast_app


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"retries": 1.5}, TypeError, "option 'retries' must be an int"),
        ({"retries": -1}, ValueError, "option 'retries' must be >= 0"),
        ({"retries": True}, TypeError, "option 'retries'"),
        ({"priority": "high"}, TypeError, "option 'priority' must be an int"),
        ({"timeout": "10"}, TypeError, "option 'timeout' must be seconds"),
        ({"timeout": 0}, ValueError, "option 'timeout' must be > 0 seconds"),
        ({"timeout": -1}, ValueError, "option 'timeout' must be >= 0 seconds"),
        ({"result_ttl": -5}, ValueError, "option 'result_ttl' must be >= 0 seconds"),
        ({"backoff": exponential}, TypeError, "option 'backoff' .* returned"),
        ({"backoff": "1s"}, TypeError, "option 'backoff'"),
        ({"backoff": -2}, ValueError, "option 'backoff' must be >= 0 seconds"),
        ({"backoff": Fixed}, TypeError, "option 'backoff' must be a policy"),
        ({"retry_on": "ValueError"}, TypeError, "option 'retry_on' must be exception classes"),
        ({"retry_on": [ValueError, 3]}, TypeError, "option 'retry_on'"),
        ({"queue": ""}, TypeError, "option 'queue' must be a non-empty str"),
        ({"labels": {"team": 1}}, TypeError, "option 'labels' must be a mapping of str to str"),
        ({"runner": "processes"}, ValueError, "option 'runner' must be 'thread' .* or 'process'"),
        ({"runner": "process"}, TypeError, "runner='process' runs a plain def .* async def"),
    ],
)
def test_a_wrong_task_option_is_refused_at_declaration_naming_it(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    app = fast_app()
    with pytest.raises(error, match=match):

        @app.task(name="bad", **options)
        async def bad() -> None: ...

    assert "bad" not in app.tasks


def test_a_number_or_timedelta_backoff_is_a_fixed_delay() -> None:
    app = fast_app()

    @app.task(retries=1, backoff=0.1)
    async def seconds() -> None: ...

    @app.task(retries=1, backoff=timedelta(milliseconds=250))
    async def delta() -> None: ...

    assert seconds.options.backoff(3) == 0.1
    assert delta.options.backoff(1) == 0.25


def test_one_exception_class_is_accepted_for_retry_on() -> None:
    app = fast_app()

    @app.task(retries=2, retry_on=ConnectionError)
    async def flaky() -> None: ...

    assert flaky.options.retry_on == (ConnectionError,)


async def test_a_float_backoff_retries_instead_of_looping(app: Conveyor) -> None:
    runs: list[int] = []

    @app.task(retries=1, backoff=0.05)
    async def fails_once() -> str:
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("first run fails")
        return "ok"

    async with app.worker():
        result = await (await fails_once.kiq()).wait_result(timeout=5)
    assert result.return_value == "ok"
    assert result.attempts == 2
    assert len(runs) == 2


async def test_a_message_that_hits_a_worker_bug_twice_is_dead_lettered_not_looped(
    app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "_BUG_RETRY_DELAY", 0.05)
    runs: list[int] = []

    @app.task
    async def victim() -> int:
        runs.append(1)
        return 1

    real_settle = executor.Executor._settle

    async def settle(self: executor.Executor, delivery: Any, outcome: Any, **kw: Any) -> None:
        if type(outcome).__name__ == "Ack" and delivery.task_id == handle.task_id:
            raise RuntimeError("bug in the settle path")
        await real_settle(self, delivery, outcome, **kw)

    # a bug outside every narrower guard: settling a success raises
    monkeypatch.setattr(executor.Executor, "_settle", settle)
    handle = await victim.kiq()
    async with app.worker():
        result = await handle.wait_result(timeout=5)
        dead = await app.broker.dead_letters()
    assert result.status is TaskStatus.DEAD
    assert result.error is not None
    assert "worker bug, hit twice" in result.error.message
    assert "RuntimeError: bug in the settle path" in result.error.message
    assert len(runs) == 2  # the first run, one retry, then the dead-letter queue
    assert [entry.reason.split(":")[0] for entry in dead] == [
        "worker bug, hit twice while running it"
    ]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"delay": float("inf")}, "delay must be >= 0 seconds"),
        ({"delay": float("nan")}, "delay must be >= 0 seconds"),
        ({"delay": -1}, "delay must be >= 0 seconds"),
        ({"delay": "5"}, "delay must be seconds"),
        ({"priority": 1.5}, "priority must be an int"),
        ({"queue": ""}, "queue must be a non-empty str"),
        ({"task_id": 42}, "task_id must be a non-empty str"),
        ({"labels": {"a": 1}}, "labels must be a mapping of str to str"),
    ],
)
def test_a_wrong_per_call_option_is_refused_naming_it(options: dict[str, Any], match: str) -> None:
    app = fast_app()

    @app.task(name="t")
    async def t() -> None: ...

    with pytest.raises((TypeError, ValueError), match=match):
        t.with_options(**options)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e12])
def test_a_task_result_ttl_or_timeout_must_be_finite(value: float) -> None:
    app = fast_app()
    for option in ("result_ttl", "timeout"):
        with pytest.raises(ValueError, match=f"option '{option}'"):
            app.task(name=f"x-{option}", **{option: value})(_noop)


async def _noop() -> None: ...


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"concurrency": -5}, "concurrency must be >= 1"),
        ({"grace": float("nan")}, "grace must be 0 to 86400"),
        ({"max_tasks": 0}, "max_tasks must be an int >= 1"),
    ],
)
def test_a_worker_refuses_options_out_of_range(options: dict[str, Any], match: str) -> None:
    from conveyor import ConfigurationError

    with pytest.raises(ConfigurationError, match=match):
        fast_app().worker(**options)


def _module_level_sum(a: int, b: int) -> int:
    return a + b


def test_a_process_task_must_be_a_module_level_def_without_dependencies() -> None:
    app = fast_app()
    with pytest.raises(TypeError, match="needs a function defined at the top level of a module"):

        @app.task(runner="process")
        def nested(n: int) -> int:
            return n

    def needs_context(n: int, ctx: Context = Depends()) -> int:
        return n

    needs_context.__qualname__ = "needs_context"  # as if at module level
    with pytest.raises(TypeError, match=r"cannot take dependencies \(Depends, Context\)"):
        app.task(runner="process")(needs_context)

    assert set(app.tasks) == set()
    task = app.task(runner="process")(_module_level_sum)
    assert task.in_process
    assert task.location == (__name__, "_module_level_sum")
    assert task(1, 2) == 3, "called directly, it runs here, as any sync task"
