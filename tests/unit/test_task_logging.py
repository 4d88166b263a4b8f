"""Every log record written inside a task carries its task id, name and attempt, in async
and def tasks alike, and the JSON formatter writes them."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator

import pytest

from conveyor import Conveyor, fixed
from conveyor.observability.logging import JsonFormatter, TextFormatter, install_task_context

log = logging.getLogger("tests.task_logging")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def by_message(self, text: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.getMessage() == text]


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    logger = logging.getLogger()
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


async def test_records_inside_tasks_carry_the_task(app: Conveyor, captured: Capture) -> None:
    both_running = asyncio.Event()
    started: list[str] = []

    @app.task(name="async_job")
    async def async_job(n: int) -> None:
        started.append(str(n))
        if len(started) == 2:
            both_running.set()
        await asyncio.wait_for(both_running.wait(), 5)  # two tasks interleave here
        log.info("async %d", n)

    @app.task(name="sync_job", retries=1, backoff=fixed(0.0))
    def sync_job() -> None:
        log.warning("sync inside")
        raise ValueError("again")

    async with app.worker(concurrency=4):
        first, second = await async_job.kiq(1), await async_job.kiq(2)
        sync = await sync_job.kiq()
        await first.get(timeout=5)
        await second.get(timeout=5)
        await sync.wait_result(timeout=5)
    log.info("outside")

    for n, handle in ((1, first), (2, second)):
        (record,) = captured.by_message(f"async {n}")
        assert (record.task_id, record.task_name, record.attempt) == (  # type: ignore[attr-defined]
            handle.task_id,
            "async_job",
            1,
        )
    attempts = [
        (r.task_id, r.task_name, r.attempt)  # type: ignore[attr-defined]
        for r in captured.by_message("sync inside")
    ]
    assert attempts == [(sync.task_id, "sync_job", 1), (sync.task_id, "sync_job", 2)]
    (outside,) = captured.by_message("outside")
    assert outside.task_id is None  # type: ignore[attr-defined]
    # the worker's own lines about a task carry it too
    retry_line = next(r for r in captured.records if "retrying in" in r.getMessage())
    assert retry_line.task_id == sync.task_id  # type: ignore[attr-defined]


def _record(message: str, **attrs: object) -> logging.LogRecord:
    install_task_context()
    record = logging.getLogger("app.emails").makeRecord(
        "app.emails", logging.INFO, __file__, 1, message, (), None, extra=attrs or None
    )
    return record


def test_json_lines_hold_the_task_and_extras() -> None:
    record = _record("sending", tenant="acme")
    record.task_id, record.task_name, record.attempt = "t-1", "emails:send", 2
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "sending" and line["level"] == "INFO"
    assert line["logger"] == "app.emails" and line["time"].endswith("Z")
    assert (line["task_id"], line["task"], line["attempt"]) == ("t-1", "emails:send", 2)
    assert line["tenant"] == "acme"


def test_json_lines_outside_a_task_have_no_task_fields_and_keep_tracebacks() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert "task_id" not in line
    assert "RuntimeError: boom" in line["exception"]


def test_text_lines_inside_a_task_are_tagged() -> None:
    record = _record("sending")
    record.task_id, record.task_name, record.attempt = "t-1", "emails:send", 1
    assert TextFormatter().format(record).endswith("sending [task=emails:send id=t-1 attempt=1]")
    plain = _record("idle")
    assert TextFormatter().format(plain).endswith("idle")


def _outcome_lines(captured: Capture) -> list[str]:
    return [
        TextFormatter().format(r).split("] ", 1)[1]
        for r in captured.records
        if r.name == "conveyor.task"
    ]


async def test_the_worker_logs_one_line_per_task_that_ends(captured: Capture) -> None:
    from tests.conftest import fast_app

    app = fast_app()

    @app.task(name="emails:send")
    async def send(to: str) -> str:
        return to

    @app.task(name="flaky", retries=1, backoff=fixed(0.0))
    def flaky() -> None:
        raise ValueError("no luck")

    async with app, app.worker():
        sent = await send.kiq("a@b.c")
        await sent.get(timeout=5)
        failing = await flaky.kiq()
        await failing.wait_result(timeout=5)
    lines = _outcome_lines(captured)
    assert len(lines) == 3, lines
    assert re.fullmatch(rf"emails:send\[{sent.task_id[:8]}\] succeeded in \d+\.\d{{3}}s", lines[0])
    assert re.fullmatch(
        rf"flaky\[{failing.task_id[:8]}\] failed in \d+\.\d{{3}}s \(attempt 1/2\); "
        r"retrying in 0\.00s: ValueError: no luck",
        lines[1],
    )
    assert re.fullmatch(
        rf"flaky\[{failing.task_id[:8]}\] failed in \d+\.\d{{3}}s \(attempt 2/2\); "
        r"dead-lettered: ValueError: no luck",
        lines[2],
    )
    levels = [r.levelname for r in captured.records if r.name == "conveyor.task"]
    assert levels == ["INFO", "INFO", "WARNING"]
    success = next(r for r in captured.records if r.name == "conveyor.task")
    line = json.loads(JsonFormatter().format(success))
    assert line["outcome"] == "succeeded" and line["task_id"] == sent.task_id
    assert isinstance(line["duration"], float)


async def test_task_lines_are_one_switch_away(captured: Capture) -> None:
    from tests.conftest import fast_app

    app = fast_app(log_tasks=False)

    @app.task
    async def quiet() -> int:
        return 1

    @app.task
    async def loud() -> None:
        raise ValueError("still reported")

    async with app, app.worker():
        await (await quiet.kiq()).get(timeout=5)
        await (await loud.kiq()).wait_result(timeout=5)
    # successes and retries go quiet; a task that fails for good still warns
    assert [r.levelname for r in captured.records if r.name == "conveyor.task"] == ["WARNING"]
