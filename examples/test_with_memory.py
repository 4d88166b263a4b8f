"""Testing an app with memory:// and pytest: direct calls, a worker per test, fast
settings from the environment, dependency overrides.

Run: pytest examples/test_with_memory.py      (pytest-asyncio, asyncio_mode=auto)
 or: python examples/test_with_memory.py       (the same, through pytest.main)
                                                          (docs/testing.md)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Iterator

import pytest

# In a real project this goes in conftest.py, before your app module is imported:
# the app reads CONVEYOR_* once, when it is constructed.
os.environ.update(
    CONVEYOR_BROKER_URL="memory://",
    CONVEYOR_LEASE="1",
    CONVEYOR_REAP_INTERVAL="0.05",
    CONVEYOR_FETCH_WAIT="0.05",
    CONVEYOR_GRACE="1",
)

from conveyor import Conveyor, Depends, TaskStatus, exponential, none

# --- the application under test (normally: from myproject.tasks import app, ...) -------

app = Conveyor()  # CONVEYOR_BROKER_URL decides: memory:// here, a real broker in production


def get_mail_client() -> str:
    raise RuntimeError("no SMTP server in tests")


@app.task(retries=2, backoff=exponential(base=1.0))
async def send_welcome(user_id: int, client: str = Depends(get_mail_client)) -> str:
    if user_id < 0:
        raise ValueError("bad user id")
    return f"{client}: welcome {user_id}"


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fake_mail() -> Iterator[None]:
    app.dependency_overrides[get_mail_client] = lambda: "fake-smtp"
    yield
    app.dependency_overrides.clear()


@pytest.fixture
async def worker() -> AsyncIterator[Conveyor]:
    async with app, app.worker(concurrency=4):
        await app.broker.delete_dead(None)  # the memory broker lives as long as the app
        yield app


@pytest.fixture
def no_backoff() -> Iterator[None]:
    """Retry at once: re-register the task under its name with another backoff."""
    original = send_welcome.options
    app.register(send_welcome.fn, dataclasses.replace(original, backoff=none()))
    yield
    app.register(send_welcome.fn, original)


# --- tests ----------------------------------------------------------------------------


async def test_direct_call_runs_in_process() -> None:
    assert await send_welcome(1) == "fake-smtp: welcome 1"


async def test_through_the_queue(worker: Conveyor) -> None:
    handle = await send_welcome.kiq(7)
    assert await handle.get(timeout=5) == "fake-smtp: welcome 7"


async def test_failure_is_retried_then_dead_lettered(worker: Conveyor, no_backoff: None) -> None:
    result = await (await send_welcome.kiq(-1)).wait_result(timeout=5)
    assert result.status is TaskStatus.FAILED
    assert result.attempts == 3
    (entry,) = await worker.broker.dead_letters()
    assert "ValueError: bad user id" in entry.reason


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
