"""No page of the dashboard shows a credential of the broker URL: not in the header of
an open, a read-only or a token-protected dashboard, not on its login page."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from conveyor import BrokerUnavailable, Conveyor
from conveyor.dashboard import create_dashboard
from tests.brokers.conftest import REDIS_URL, _cleanup, service_unavailable
from tests.conftest import fast_app
from tests.dashboard.conftest import client_for

SECRET = "S3CRET-dashboard-pw"
TOKEN = "dashboard-token-for-tests"
PAGES = ("/", "/workers", "/tasks", "/dead-letters", "/schedules", "/tasks/no-such-task")


def _with_password(url: str) -> str:
    """``url`` with a password in every form redact_url knows: userinfo and query."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://default:{SECRET}@{rest}&username=default&password={SECRET}"


@pytest.fixture(params=["memory", "redis"])
async def app(request: pytest.FixtureRequest) -> AsyncIterator[Conveyor]:
    """An app whose URL holds the password: Redis really authenticates with it (its
    default user accepts any password when it has none); memory ignores it."""
    base = (
        f"{REDIS_URL}?prefix=test-{uuid.uuid4().hex[:12]}"
        if request.param == "redis"
        else "memory://local?x=1"
    )
    conveyor = fast_app(_with_password(base))
    try:
        await conveyor.connect()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc).replace(SECRET, "..."))
    try:
        yield conveyor
    finally:
        await conveyor.close()
        await _cleanup(base)


@pytest.mark.parametrize("read_only", [False, True], ids=["open", "read-only"])
async def test_no_page_header_shows_the_broker_password(app: Conveyor, read_only: bool) -> None:
    assert SECRET in app.settings.broker_url
    web = create_dashboard(app, read_only=read_only)
    async with client_for(web) as client:
        for path in PAGES:
            page = await client.get(path)
            assert page.status_code in {200, 404}, path
            assert SECRET not in page.text, path
            assert "default:***@" in page.text and "password=***" in page.text, path
            fragment = await client.get(path, params={"fragment": "1"})
            assert SECRET not in fragment.text, path


async def test_the_login_page_does_not_show_the_broker_password(app: Conveyor) -> None:
    web = create_dashboard(app, token=TOKEN)
    async with client_for(web) as client:
        for path in ("/", "/login"):
            page = await client.get(path, headers={"Accept": "text/html"})
            assert page.status_code in {200, 401} and 'name="token"' in page.text
            assert SECRET not in page.text, path
        signed_in = await client.get("/workers", params={"token": TOKEN}, follow_redirects=True)
        assert signed_in.status_code == 200
        assert SECRET not in signed_in.text and "password=***" in signed_in.text
