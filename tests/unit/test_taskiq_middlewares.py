"""conveyor.compat.taskiq: custom TaskiqMiddleware subclasses run where taskiq runs them,
with taskiq's arguments, in taskiq's orders; PrometheusMiddleware counts and serves.

taskiq 0.13's worker calls, for each attempt: ``pre_execute`` (as added), the task,
``on_error`` if it raised (reversed), ``post_execute`` (reversed), then, once the result
is stored, ``post_save`` (reversed); its client calls ``pre_send`` (as added) and
``post_send`` (reversed) around each kiq, and ``startup``/``shutdown`` after the event
handlers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.request
from pathlib import Path
from typing import Any

import prometheus_client  # imported before any test sets PROMETHEUS_MULTIPROC_DIR
import pytest

from conveyor import Conveyor
from conveyor.compat.taskiq import (
    AsyncBroker,
    Context,
    InMemoryBroker,
    PrometheusMiddleware,
    SmartRetryMiddleware,
    TaskiqDepends,
    TaskiqEvents,
    TaskiqMessage,
    TaskiqMiddleware,
    TaskiqResult,
)
from conveyor.compat.taskiq.middlewares import PrometheusMiddleware as FromMiddlewares
from conveyor.compat.taskiq.middlewares import SimpleRetryMiddleware
from conveyor.observability.metrics import PrometheusHook


class Recorder(TaskiqMiddleware):
    """Records every call; sync and async methods mixed, as real middlewares are."""

    def __init__(self, name: str, log: list[tuple[Any, ...]]) -> None:
        super().__init__()
        self.name = name
        self.log = log

    def startup(self) -> None:
        self.log.append((self.name, "startup"))

    async def shutdown(self) -> None:
        self.log.append((self.name, "shutdown"))

    def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
        self.log.append((self.name, "pre_send", message.task_name))
        message.labels[f"sent_by_{self.name}"] = "yes"
        return message

    async def post_send(self, message: TaskiqMessage) -> None:
        self.log.append((self.name, "post_send", dict(message.labels)))

    async def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        self.log.append((self.name, "pre_execute", message.labels.get("_retries")))
        message.labels[f"executed_by_{self.name}"] = "yes"
        return message

    def on_error(
        self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException
    ) -> None:
        self.log.append((self.name, "on_error", exception, result.is_err))

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        self.log.append((self.name, "post_execute", result.is_err, result.return_value))

    async def post_save(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        self.log.append((self.name, "post_save", result.is_err, result.error))


def worker_side(log: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [
        entry
        for entry in log
        if entry[1] in {"pre_execute", "on_error", "post_execute", "post_save"}
    ]


async def test_a_success_calls_every_method_in_taskiqs_orders() -> None:
    log: list[tuple[Any, ...]] = []
    first, second = Recorder("a", log), Recorder("b", log)
    broker = InMemoryBroker().with_middlewares(first, second)

    @broker.task
    async def labels(ctx: Context = TaskiqDepends()) -> dict[str, Any]:
        return dict(ctx.message.labels)

    seen = (await (await labels.kiq()).wait_result(timeout=5)).return_value
    assert first.broker is broker and second.broker is broker
    # what pre_send put in the labels travels; what pre_execute returned is Context.message
    assert seen == {
        "sent_by_a": "yes",
        "sent_by_b": "yes",
        "executed_by_a": "yes",
        "executed_by_b": "yes",
    }
    sending = [entry for entry in log if entry[1] in {"pre_send", "post_send"}]
    assert sending == [
        ("a", "pre_send", labels.task_name),
        ("b", "pre_send", labels.task_name),
        ("b", "post_send", {"sent_by_a": "yes", "sent_by_b": "yes"}),
        ("a", "post_send", {"sent_by_a": "yes", "sent_by_b": "yes"}),
    ]
    assert worker_side(log) == [
        ("a", "pre_execute", None),
        ("b", "pre_execute", None),
        ("b", "post_execute", False, seen),
        ("a", "post_execute", False, seen),
        ("b", "post_save", False, None),
        ("a", "post_save", False, None),
    ]


async def test_a_failing_attempt_gets_on_error_with_the_exception_then_post_execute() -> None:
    log: list[tuple[Any, ...]] = []
    broker = InMemoryBroker().with_middlewares(Recorder("a", log))
    raised: list[BaseException] = []

    @broker.task(retry_on_error=True, max_retries=2)
    async def fails(ctx: Context = TaskiqDepends()) -> None:
        error = LookupError(f"run {ctx.message.labels.get('_retries', '0')}")
        raised.append(error)
        raise error

    result = await (await fails.kiq()).wait_result(timeout=5)
    assert result.is_err and result.attempts == 2
    # each attempt: pre_execute, on_error with the very exception raised, post_execute;
    # only the last attempt's result is stored, so only it is post_saved (as taskiq's
    # retry middleware, whose retried attempts store no result)
    assert worker_side(log) == [
        ("a", "pre_execute", None),
        ("a", "on_error", raised[0], True),
        ("a", "post_execute", True, None),
        ("a", "pre_execute", "1"),
        ("a", "on_error", raised[1], True),
        ("a", "post_execute", True, None),
        ("a", "post_save", True, raised[1]),
    ]
    assert raised[1].__traceback__ is not None


async def test_startup_and_shutdown_run_after_the_event_handlers() -> None:
    log: list[tuple[Any, ...]] = []
    broker = InMemoryBroker().with_middlewares(Recorder("a", log))
    for event in TaskiqEvents:

        def record(state: object, event: TaskiqEvents = event) -> None:
            log.append(("event", event))

        broker.add_event_handler(event, record)
    await broker.startup()
    await broker.shutdown()
    assert log == [
        ("event", TaskiqEvents.CLIENT_STARTUP),
        ("event", TaskiqEvents.WORKER_STARTUP),
        ("a", "startup"),
        ("event", TaskiqEvents.CLIENT_SHUTDOWN),
        ("event", TaskiqEvents.WORKER_SHUTDOWN),
        ("a", "shutdown"),
    ]


async def test_in_a_worker_process_the_worker_runs_startup_and_shutdown() -> None:
    """A broker served by a Conveyor worker (what `conveyor worker` runs) is a worker
    process: WORKER_STARTUP handlers, then the middlewares' startup(); the reverse at the
    end. Its client side (startup()) then does nothing."""
    log: list[tuple[Any, ...]] = []
    broker = AsyncBroker(conveyor=Conveyor("memory://", environ={}))
    broker.add_middlewares(Recorder("a", log))
    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, lambda s: log.append(("started",)))
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, lambda s: log.append(("stopping",)))
    broker.add_event_handler(TaskiqEvents.CLIENT_STARTUP, lambda s: log.append(("client",)))

    @broker.task
    async def double(x: int) -> int:
        return 2 * x

    async with broker.conveyor, broker.conveyor.worker(concurrency=2):
        assert broker.is_worker_process
        await broker.startup()  # a client's: not in a worker process
        assert (await (await double.kiq(21)).wait_result(timeout=5)).return_value == 42
    assert log[:2] == [("started",), ("a", "startup")]
    assert log[-2:] == [("stopping",), ("a", "shutdown")]
    assert ("client",) not in log
    assert ("a", "post_save", False, None) in log


async def test_a_raising_method_is_logged_and_the_outcome_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(TaskiqMiddleware):
        def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
            raise RuntimeError("pre_execute is broken")

        async def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
            raise RuntimeError("post_execute is broken")

    broker = InMemoryBroker().with_middlewares(Broken())

    @broker.task
    async def add(a: int, b: int) -> int:
        return a + b

    with caplog.at_level(logging.ERROR, logger="conveyor.compat.taskiq"):
        result = await (await add.kiq(1, 2)).wait_result(timeout=5)
    assert not result.is_err and result.return_value == 3
    messages = [record.getMessage() for record in caplog.records]
    assert "Broken.pre_execute raised; ignoring it" in messages
    assert "Broken.post_execute raised; ignoring it" in messages


async def test_pre_send_raising_stops_the_kiq() -> None:
    class Refuse(TaskiqMiddleware):
        async def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
            raise LookupError("no sending today")

    broker = InMemoryBroker().with_middlewares(Refuse())

    @broker.task
    async def nothing() -> None:
        return None

    with pytest.raises(LookupError, match="no sending today"):
        await nothing.kiq()


async def test_pre_send_may_change_the_arguments_and_the_task_id() -> None:
    class Rewrite(TaskiqMiddleware):
        def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
            message.kwargs["b"] = 40
            message.task_id = "rewritten-" + message.task_id
            return message

    broker = InMemoryBroker().with_middlewares(Rewrite())

    @broker.task
    async def add(a: int, b: int) -> int:
        return a + b

    task = await add.kiq(2, b=0)
    assert task.task_id.startswith("rewritten-")
    assert (await task.wait_result(timeout=5)).return_value == 42


def test_other_objects_are_skipped_with_a_warning_as_taskiq_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = InMemoryBroker()
    with caplog.at_level(logging.WARNING, logger="conveyor.compat.taskiq"):
        assert broker.add_middlewares(object()) is None  # type: ignore[func-returns-value, arg-type]
    assert broker.middlewares == []
    assert "not an instance of conveyor.compat.taskiq's TaskiqMiddleware" in caplog.text


async def test_retry_middlewares_still_set_the_retry_policy_beside_others() -> None:
    log: list[tuple[Any, ...]] = []
    retry = SmartRetryMiddleware(default_retry_count=3, default_delay=0, use_jitter=False)
    broker = InMemoryBroker().with_middlewares(Recorder("a", log), retry)
    assert retry.broker is broker

    @broker.task(retry_on_error=True)
    async def flaky(ctx: Context = TaskiqDepends()) -> int:
        retries = int(ctx.message.labels.get("_retries", 0))
        if retries < 2:
            raise RuntimeError("not yet")
        return retries

    result = await (await flaky.kiq()).wait_result(timeout=5)
    assert result.return_value == 2 and result.attempts == 3
    assert [entry[1] for entry in worker_side(log)].count("on_error") == 2


def test_middlewares_import_where_taskiq_has_them() -> None:
    assert FromMiddlewares is PrometheusMiddleware
    assert issubclass(SimpleRetryMiddleware, TaskiqMiddleware)


# -- PrometheusMiddleware ------------------------------------------------------------------


def _metrics_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Where the middleware would point prometheus-client: set here, so that this test
    process keeps its own metrics mode (the variable is read when prometheus-client is
    imported, which this module did first)."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    return directory


def test_prometheus_middleware_sets_the_metrics_directory_when_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    middleware = PrometheusMiddleware(metrics_path=tmp_path / "given", server_port=0)
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "given")
    assert middleware.metrics_path == tmp_path / "given" and middleware.metrics_path.is_dir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # restored after the test
    assert PrometheusMiddleware(metrics_path=tmp_path / "other").metrics_path == tmp_path


async def test_prometheus_middleware_counts_taskiqs_metrics(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _metrics_dir(monkeypatch, tmp_path)
    broker = InMemoryBroker().with_middlewares(PrometheusMiddleware(server_port=0))

    @broker.task(task_name="metrics:ok")
    async def ok() -> int:
        return 1

    @broker.task(task_name="metrics:boom")
    async def boom() -> None:
        raise ValueError("boom")

    def value(name: str, task: str) -> float:
        found = prometheus_client.REGISTRY.get_sample_value(name, {"task_name": task})
        return found or 0.0

    before = {
        name: value(name, task)
        for name in ("received_tasks_total", "success_tasks_total", "found_errors_total")
        for task in ("metrics:ok", "metrics:boom")
    }
    await (await ok.kiq()).wait_result(timeout=5)
    await (await boom.kiq()).wait_result(timeout=5)
    assert value("received_tasks_total", "metrics:ok") == before["received_tasks_total"] + 1
    assert value("success_tasks_total", "metrics:ok") == before["success_tasks_total"] + 1
    assert value("found_errors_total", "metrics:boom") == before["found_errors_total"] + 1
    assert value("saved_results_total", "metrics:boom") >= 1
    assert value("execution_time_count", "metrics:ok") >= 1


async def test_prometheus_middleware_serves_conveyors_metrics_in_a_worker_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _metrics_dir(monkeypatch, tmp_path)
    middleware = PrometheusMiddleware(server_port=0, server_addr="127.0.0.1")
    broker = AsyncBroker(conveyor=Conveyor("memory://", environ={})).with_middlewares(middleware)
    await broker.startup()  # a client: serves nothing
    assert middleware.server is None
    await broker.shutdown()

    async with broker.conveyor, broker.conveyor.worker(concurrency=1):
        server = middleware.server
        assert server is not None
        assert any(isinstance(hook, PrometheusHook) for hook in broker.conveyor.hooks)
        page = await _get(f"http://127.0.0.1:{server.port}/metrics")
        assert "conveyor_broker_up 1.0" in page
    assert middleware.server is None  # closed at the worker's shutdown


async def _get(url: str) -> str:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
        return body.decode()

    return await asyncio.to_thread(get)
