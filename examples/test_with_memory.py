"""Testing an app with pytest: direct calls, a worker per test on memory://, the same
tasks on a SQLite file per test, fast settings from the environment, overrides, retries
without the wait.

Run: pytest examples/test_with_memory.py      (pytest-asyncio, asyncio_mode=auto)
 or: python examples/test_with_memory.py       (the same, through pytest.main)
                                               (docs/testing.md)
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# In a real project this goes in conftest.py, before your app module is imported:
# the app reads CONVEYOR_* once, when it is constructed.
os.environ.update(
    CONVEYOR_BROKER_URL="memory://",
    CONVEYOR_LEASE="1",  # fault paths (lease expiry) in about a second
    CONVEYOR_REAP_INTERVAL="0.05",
    CONVEYOR_FETCH_WAIT="0.05",  # a worker stops within 50 ms
    CONVEYOR_GRACE="1",
)

from conveyor import Conveyor, Depends, TaskStatus, none

# --- the application under test (normally: from myproject.tasks import app, ...) -------

app = Conveyor()  # CONVEYOR_BROKER_URL decides: memory:// here, a real broker in production


class MailClient:
    def send(self, to: str, text: str) -> None:
        raise RuntimeError("no SMTP server in tests")


def get_mail_client() -> MailClient:
    return MailClient()


@app.task(retries=2, retry_on=(ConnectionError,))  # the default backoff: up to 1 s, 2 s
async def send_welcome(user_id: int, client: MailClient = Depends(get_mail_client)) -> str:
    if user_id < 0:
        raise ValueError("bad user id")  # not in retry_on: fails at once
    text = f"welcome {user_id}"
    client.send(f"user-{user_id}@example.com", text)  # a ConnectionError is retried
    return text


# --- test doubles and fixtures ----------------------------------------------------------


class FakeMailer(MailClient):
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[str] = []

    def send(self, to: str, text: str) -> None:
        if len(self.sent) < self.failures:
            self.sent.append("(failed)")
            raise ConnectionError("mail server hung up")
        self.sent.append(to)


@pytest.fixture(autouse=True)
def fake_mail() -> Iterator[None]:
    app.dependency_overrides[get_mail_client] = lambda: FakeMailer()
    yield
    app.dependency_overrides.clear()


@pytest.fixture
async def worker() -> AsyncIterator[Conveyor]:
    async with app, app.worker(concurrency=4):
        await app.broker.delete_dead(None)  # the memory broker lives as long as the app
        yield app


@pytest.fixture
async def sqlite_worker(tmp_path: Path) -> AsyncIterator[Conveyor]:
    url = f"sqlite:///{tmp_path / 'test.db'}"
    test_app = Conveyor(settings=app.settings.replace(broker_url=url))
    for task in app.tasks.values():  # the same tasks, on a fresh file
        test_app.register(task.fn, task.options)
    test_app.dependency_overrides[get_mail_client] = lambda: FakeMailer()
    async with test_app, test_app.worker(concurrency=4):
        yield test_app


@pytest.fixture
def no_backoff() -> Iterator[None]:
    """Retry at once: re-register the task under its name with another backoff."""
    original = send_welcome.options
    app.register(send_welcome.fn, dataclasses.replace(original, backoff=none()))
    yield
    app.register(send_welcome.fn, original)


# --- tests ------------------------------------------------------------------------------


async def test_welcome_text() -> None:
    app.dependency_overrides[get_mail_client] = lambda: FakeMailer()
    try:
        assert await send_welcome(7) == "welcome 7"
    finally:
        app.dependency_overrides.clear()


async def test_through_the_queue(worker: Conveyor) -> None:
    assert await (await send_welcome.kiq(7)).get(timeout=5) == "welcome 7"


async def test_bad_input_is_dead_lettered(worker: Conveyor) -> None:
    result = await (await send_welcome.kiq(-1)).wait_result(timeout=5)
    assert result.status is TaskStatus.FAILED
    (entry,) = await worker.broker.dead_letters()
    assert "ValueError" in entry.reason


async def test_a_mail_server_error_is_retried(worker: Conveyor, no_backoff: None) -> None:
    mailer = FakeMailer(failures=2)
    app.dependency_overrides[get_mail_client] = lambda: mailer
    result = await (await send_welcome.kiq(7)).wait_result(timeout=5)
    assert (result.status, result.attempts) == (TaskStatus.SUCCEEDED, 3)
    assert mailer.sent == ["(failed)", "(failed)", "user-7@example.com"]


async def test_on_sqlite(sqlite_worker: Conveyor) -> None:
    send = sqlite_worker.tasks[send_welcome.name]  # a task belongs to the app it is registered on
    assert await (await send.kiq(7)).get(timeout=5) == "welcome 7"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as basetemp:  # tmp_path's home, removed after
        options = ["-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}"]
        code = pytest.main([__file__, *options])
    sys.exit(code)
