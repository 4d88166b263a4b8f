"""Who may see the dashboard and act on it: tokens, the login cookie, basic auth, CSRF,
read-only mode, host names, and the refusal to run open on a non-loopback address."""

from __future__ import annotations

import base64
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from urllib.parse import unquote

import pytest
import uvicorn
from click.testing import CliRunner
from starlette.types import ASGIApp, Message

from conveyor import ConfigurationError, Conveyor, TaskStatus
from conveyor.cli import main
from conveyor.dashboard import create_dashboard
from conveyor.dashboard.auth import is_loopback, local_target, redact_access_log
from tests.conftest import fast_app
from tests.dashboard import dashboard_app
from tests.dashboard.conftest import client_for, csrf_of

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
async def app() -> AsyncIterator[Conveyor]:
    """Access rules do not depend on the broker: memory only."""
    conveyor = fast_app("memory://")
    for task in dashboard_app.app.tasks.values():
        conveyor.register(task.fn, task.options)
    async with conveyor:
        yield conveyor


async def _queued(app: Conveyor) -> str:
    """A delayed task: something an action could abort."""
    handle = await app.tasks["resize_image"].with_options(delay=600).kiq("a.png")
    return handle.task_id


def _basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


async def test_token_guards_every_page_and_action(app: Conveyor) -> None:
    web = create_dashboard(app, token=TOKEN)
    task_id = await _queued(app)
    async with client_for(web) as client:
        for path in ("/", "/tasks", f"/tasks/{task_id}", "/dead-letters", "/metrics"):
            assert (await client.get(path)).status_code == 401, path
        page = await client.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 401 and 'name="token"' in page.text  # the login form
        wrong = await client.get("/", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200

        refused = await client.post("/actions/abort", data={"task_id": task_id})
        assert refused.status_code == 401
        assert (await app.handle(task_id).status()).status is TaskStatus.QUEUED
        # static assets carry no data: they load before a login
        assert (await client.get("/static/dashboard.js")).status_code == 200


async def test_a_token_link_sets_a_strict_httponly_cookie_and_drops_the_token(
    app: Conveyor,
) -> None:
    web = create_dashboard(app, token=TOKEN)
    async with client_for(web) as client:
        login = await client.get("/tasks", params={"token": TOKEN, "status": "failed"})
        assert login.status_code == 303
        assert login.headers["location"] == "/tasks?status=failed"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert TOKEN not in cookie  # an HMAC of the token, not the token
        assert (await client.get("/tasks")).status_code == 200  # the cookie now works

        client.cookies.clear()
        bad = await client.get("/tasks", params={"token": "guess"})
        assert bad.status_code == 401


async def test_login_form_sets_the_cookie_and_never_redirects_off_site(app: Conveyor) -> None:
    web = create_dashboard(app, token=TOKEN)
    async with client_for(web) as client:
        wrong = await client.post("/login", data={"token": "guess"})
        assert wrong.status_code == 401 and "wrong token" in wrong.text
        for target in (
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "///evil.example",
            "/\t/evil.example",  # browsers drop tabs and newlines from URLs
            "/\r\n/evil.example",
            " //evil.example",
            "/\u20ac",
        ):
            ok = await client.post("/login", data={"token": TOKEN, "next": target})
            assert ok.status_code == 303 and ok.headers["location"] == "/"
        ok = await client.post("/login", data={"token": TOKEN, "next": "/workers"})
        assert ok.headers["location"] == "/workers"
        assert (await client.get("/workers")).status_code == 200
        page = await client.get("/")
        out = await client.post("/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]


# What a browser or a script can put before ``?token=`` to leave the site: a host for a
# browser (//, ///, \\ read as /, a tab dropped), once the server has decoded the path
OFF_SITE = [
    b"//evil.example/",
    b"//evil.example/tasks",
    b"/\\evil.example",
    b"/%2F%2Fevil.example",
    b"/%2f/evil.example",
    b"/%5Cevil.example",
    b"/%5C%5Cevil.example",
    b"/%09/evil.example",
    b"/%0A/evil.example",
]
# paths that cannot go in a Location header: CR/LF would split it (uvicorn then drops the
# connection), and a header is Latin-1 (a 500 for anything else)
UNSENDABLE = [
    b"/%0D%0ASet-Cookie:%20injected=1",
    b"/tasks/%0D%0A",
    b"/%E2%82%AC",
    b"/tasks/%E2%82%AC",
    b"/%00",
]


async def _raw_get(web: ASGIApp, target: bytes) -> tuple[int, dict[bytes, bytes]]:
    """GET ``target`` (request-line bytes) with the scope uvicorn builds for it: raw_path
    as sent, path percent-decoded as UTF-8, the query string apart."""
    raw_path, _, query = target.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"accept", b"text/html")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await web(scope, receive, send)
    start = sent[0]
    return start["status"], dict(start.get("headers", []))


@pytest.mark.parametrize("path", OFF_SITE, ids=[p.decode() for p in OFF_SITE])
async def test_a_token_link_never_redirects_off_site(app: Conveyor, path: bytes) -> None:
    web = create_dashboard(app, token=TOKEN)
    status, headers = await _raw_get(web, path + f"?token={TOKEN}".encode())
    assert 400 <= status < 500, (status, headers.get(b"location"))
    assert b"location" not in headers
    assert b"set-cookie" not in headers


@pytest.mark.parametrize("path", UNSENDABLE, ids=[p.decode() for p in UNSENDABLE])
async def test_a_token_link_with_cr_lf_or_non_latin_1_in_its_path_is_a_4xx(
    app: Conveyor, path: bytes
) -> None:
    web = create_dashboard(app, token=TOKEN)
    status, headers = await _raw_get(web, path + f"?token={TOKEN}".encode())
    assert 400 <= status < 500, (status, headers.get(b"location"))
    assert b"location" not in headers and b"set-cookie" not in headers


async def test_a_token_link_keeps_the_page_and_its_query_encoded(app: Conveyor) -> None:
    web = create_dashboard(app, token=TOKEN)
    for target, location in (
        (b"/tasks", b"/tasks"),
        (b"/tasks?status=failed", b"/tasks?status=failed"),
        (b"/tasks/a%20b%3Fc%23d%25", b"/tasks/a%20b%3Fc%23d%25"),  # ? # % stay in the path
        (b"/tasks?q=%E2%82%AC", b"/tasks?q=%E2%82%AC"),
        (b"/tasks?q=%0D%0A", b"/tasks?q=%0D%0A"),
    ):
        joined = target + (b"&" if b"?" in target else b"?") + f"token={TOKEN}".encode()
        status, headers = await _raw_get(web, joined)
        assert status == 303, target
        assert headers[b"location"] == location
        assert b"HttpOnly" in headers[b"set-cookie"]


@contextmanager
def _uvicorn(web: ASGIApp) -> Iterator[int]:
    """``web`` served by uvicorn (h11) on a free loopback port, in a thread."""
    config = uvicorn.Config(web, host="127.0.0.1", port=0, log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            thread.join(0.01)
        assert server.started, "uvicorn did not start"
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(10)


def _raw_request(port: int, target: bytes) -> bytes:
    """The response head to ``GET target`` sent byte for byte; b"" if the server hung up."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[0]


def test_through_a_real_server_bad_token_links_get_a_4xx_not_a_drop_or_a_500() -> None:
    web = create_dashboard(fast_app("memory://"), token=TOKEN)
    token = f"?token={TOKEN}".encode()
    with _uvicorn(web) as port:
        for path in [*OFF_SITE, *UNSENDABLE]:
            head = _raw_request(port, path + token)
            assert head.startswith(b"HTTP/1.1 4"), (path, head)
            assert b"location:" not in head.lower(), (path, head)
        good = _raw_request(port, b"/tasks/a%20b" + token)
        assert good.startswith(b"HTTP/1.1 303") and b"location: /tasks/a%20b\r\n" in good


@pytest.mark.parametrize(
    ("target", "home", "safe"),
    [
        ("/", "/", True),
        ("/tasks?status=failed", "/", True),
        ("/conveyor/tasks", "/conveyor/", True),
        ("/tasks/a b", "/", True),
        ("/elsewhere", "/conveyor/", False),
        ("//evil.example/", "/", False),
        ("///evil.example", "/", False),
        ("/\\evil.example", "/", False),
        ("/tasks\\..\\", "/", False),
        ("/\t/evil.example", "/", False),
        ("/\n/evil.example", "/", False),
        ("/\r\nSet-Cookie: x=1", "/", False),
        ("/\x00", "/", False),
        ("/\x7f", "/", False),
        ("/caf\u00e9", "/", False),
        ("/\u20ac", "/", False),
        ("https://evil.example/", "/", False),
        (" //evil.example", "/", False),
        ("", "/", False),
    ],
)
def test_local_target_lets_only_paths_inside_the_dashboard_through(
    target: str, home: str, safe: bool
) -> None:
    assert (local_target(target, home) == target) is safe
    if not safe:
        assert local_target(target, home) is None


async def test_actions_need_the_csrf_token_unless_sent_with_a_bearer_header(
    app: Conveyor,
) -> None:
    web = create_dashboard(app, token=TOKEN)
    task_id = await _queued(app)
    async with client_for(web) as client:
        await client.get("/", params={"token": TOKEN})  # a browser session (cookie)
        no_csrf = await client.post("/actions/abort", data={"task_id": task_id})
        assert no_csrf.status_code == 403
        forged = await client.post("/actions/abort", data={"task_id": task_id, "csrf": "0" * 64})
        assert forged.status_code == 403
        page = await client.get(f"/tasks/{task_id}")
        token = csrf_of(page.text)
        cross_site = await client.post(
            "/actions/abort",
            data={"task_id": task_id, "csrf": token},
            headers={"Origin": "http://evil.example"},
        )
        assert cross_site.status_code == 403
        assert (await app.handle(task_id).status()).status is TaskStatus.QUEUED

        same_site = await client.post(
            "/actions/abort",
            data={"task_id": task_id, "csrf": token},
            headers={"Origin": "http://127.0.0.1:8000"},
        )
        assert same_site.status_code == 303
        assert (await app.handle(task_id).status()).status is TaskStatus.ABORTED

    other = await _queued(app)
    async with client_for(web, headers={"Authorization": f"Bearer {TOKEN}"}) as script:
        response = await script.post("/actions/abort", data={"task_id": other})
        assert response.status_code == 303
        assert (await app.handle(other).status()).status is TaskStatus.ABORTED


async def test_basic_auth_prompts_and_still_needs_csrf(app: Conveyor) -> None:
    web = create_dashboard(app, basic_auth="admin:hunter22")
    task_id = await _queued(app)
    async with client_for(web) as client:
        prompt = await client.get("/", headers={"Accept": "text/html"})
        assert prompt.status_code == 401
        assert prompt.headers["www-authenticate"].startswith("Basic ")
        assert (await client.get("/", headers=_basic("admin", "wrong"))).status_code == 401
        assert (await client.get("/", headers=_basic("root", "hunter22"))).status_code == 401
        page = await client.get(f"/tasks/{task_id}", headers=_basic("admin", "hunter22"))
        assert page.status_code == 200
        # browsers resend basic credentials on their own: they do not replace the CSRF token
        forged = await client.post(
            "/actions/abort", data={"task_id": task_id}, headers=_basic("admin", "hunter22")
        )
        assert forged.status_code == 403
        real = await client.post(
            "/actions/abort",
            data={"task_id": task_id, "csrf": csrf_of(page.text)},
            headers=_basic("admin", "hunter22"),
        )
        assert real.status_code == 303


async def test_read_only_hides_the_buttons_and_refuses_actions(app: Conveyor) -> None:
    web = create_dashboard(app, read_only=True)
    task_id = await _queued(app)
    await app.schedules.list()
    async with client_for(web) as client:
        page = await client.get(f"/tasks/{task_id}")
        assert page.status_code == 200 and "read-only" in page.text
        assert 'id="abort"' not in page.text and '<form method="post"' not in page.text
        schedules = await client.get("/schedules")
        assert "Pause" not in schedules.text and "Run now" not in schedules.text
        token = csrf_of('name="csrf" value="' + web.state.conveyor_dashboard.access.csrf + '"')
        for path, data in (
            ("/actions/abort", {"task_id": task_id}),
            ("/actions/dead-letters", {"action": "delete", "id": task_id}),
            ("/actions/schedule", {"action": "pause", "schedule_id": "nightly-cleanup"}),
        ):
            response = await client.post(path, data={**data, "csrf": token})
            assert response.status_code == 403, path
        assert (await app.handle(task_id).status()).status is TaskStatus.QUEUED
        assert not (await app.schedules.get("nightly-cleanup")).paused


async def test_an_open_dashboard_still_refuses_actions_without_csrf(app: Conveyor) -> None:
    """No credentials (127.0.0.1): a page on another site must not abort tasks."""
    web = create_dashboard(app)
    task_id = await _queued(app)
    async with client_for(web) as client:
        response = await client.post("/actions/abort", data={"task_id": task_id})
        assert response.status_code == 403
        assert (await app.handle(task_id).status()).status is TaskStatus.QUEUED


async def test_allowed_hosts_refuses_other_host_names(app: Conveyor) -> None:
    web = create_dashboard(app, allowed_hosts=["127.0.0.1", "localhost"])
    async with client_for(web) as client:
        assert (await client.get("/")).status_code == 200
        rebound = await client.get("/", headers={"Host": "evil.example:8000"})
        assert rebound.status_code == 400


def test_require_auth_refuses_to_build_an_open_dashboard() -> None:
    app = fast_app("memory://")
    with pytest.raises(ConfigurationError, match="without authentication"):
        create_dashboard(app, require_auth=True)
    create_dashboard(app, require_auth=True, token=TOKEN)
    create_dashboard(app, require_auth=True, basic_auth=("admin", "pw"))
    with pytest.raises(ConfigurationError, match="user:password"):
        create_dashboard(app, basic_auth="no-colon")
    with pytest.raises(ConfigurationError, match="empty"):
        create_dashboard(app, token=" ")
    assert TOKEN not in repr(create_dashboard(app, token=TOKEN).state.conveyor_dashboard.access)


def test_conveyor_dashboard_refuses_a_public_address_without_auth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_BROKER_URL", "memory://")
    monkeypatch.delenv("CONVEYOR_DASHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("CONVEYOR_DASHBOARD_BASIC_AUTH", raising=False)
    result = CliRunner().invoke(
        main, ["dashboard", "tests.dashboard.dashboard_app:app", "--host", "0.0.0.0"]
    )
    assert result.exit_code == 1
    assert "without authentication" in result.output and "--token" in result.output


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "example.com"))


def test_token_links_are_redacted_from_the_access_log(caplog: pytest.LogCaptureFixture) -> None:
    redact_access_log("tests.access")
    redact_access_log("tests.access")  # once is enough; twice adds nothing
    assert len(logging.getLogger("tests.access").filters) == 1
    with caplog.at_level(logging.INFO, logger="tests.access"):
        logging.getLogger("tests.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/tasks?token={TOKEN}&q=1", "1.1", 303
        )
    assert TOKEN not in caplog.text and "token=***&q=1" in caplog.text
