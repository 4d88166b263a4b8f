"""Fixtures for the dashboard tests: the example app's tasks on every broker, an HTTP
client bound to a dashboard in this event loop, and a helper that waits for a state."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from conveyor import Conveyor
from tests.conftest import connected_app, eventually
from tests.dashboard import dashboard_app

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Conveyor]:
    """The suite's ``app`` on every broker, with the event log on (the dashboard's task
    list and charts read it)."""
    async with connected_app(request.param, tmp_path, events=True) as conveyor:
        yield conveyor


@pytest.fixture
def shown(app: Conveyor) -> Conveyor:
    """The connected ``app`` fixture (memory, SQLite, Redis) with the example's tasks."""
    for task in dashboard_app.app.tasks.values():
        app.register(task.fn, task.options)
    return app


def client_for(web: ASGIApp, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=web), base_url="http://127.0.0.1:8000", **kwargs
    )


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy."""
    return await eventually(check, timeout=timeout, every=0.05)
