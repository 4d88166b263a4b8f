"""The dashboard in real headless Chromium, against a real `conveyor worker` and a real
`conveyor dashboard` process, on SQLite and Redis: pages show live data, an abort and a
dead-letter requeue work through the buttons, and actions are refused without a login
or without the page's CSRF token.

Chromium is Debian's (apt-get install chromium chromium-driver): skipped locally when it
is missing, a failure in CI.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import BrokerUnavailable, Conveyor, TaskStatus
from tests.brokers.conftest import REDIS_URL, _cleanup, service_unavailable
from tests.dashboard.live import Stack, browser, find_chromium, poll, stack

pytestmark = pytest.mark.slow

TOKEN = "browser-test-token-7f3a"


@pytest.fixture(params=["sqlite", "redis"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    found = find_chromium()
    if isinstance(found, str):
        service_unavailable(found)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    else:
        url = f"{REDIS_URL}?prefix=test-{uuid.uuid4().hex[:12]}"
    try:
        Conveyor(url, environ={})  # the extra for this broker is installed
        asyncio.run(_ping(url))
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        with stack(url, tmp_path, TOKEN) as live:
            yield live
            worker, dashboard = live.stop()
            assert worker == 0, live.log("worker")
            assert dashboard in (0, -15), live.log("dashboard")  # uvicorn re-raises SIGTERM
            assert TOKEN not in live.log("dashboard")  # never logged, not even ?token=
    finally:
        asyncio.run(_cleanup(url))


async def _ping(url: str) -> None:
    async with Conveyor(url, environ={}) as app:
        await app.broker.queue_depths()


def _post(url: str, data: dict[str, str], headers: dict[str, str] | None = None) -> int:
    body = "&".join(f"{k}={v}" for k, v in data.items()).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_dashboard_in_chromium_shows_live_data_and_acts(running: Stack, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    live = running
    missing = tmp_path / "orders.csv"

    async def enqueue(client: Conveyor) -> dict[str, str]:
        ids = {}
        for n in range(3):
            ids[f"resize{n}"] = (await client.tasks["resize_image"].kiq(f"p{n}.png")).task_id
        ids["crm"] = (await client.tasks["sync_crm"].kiq(17)).task_id
        ids["import"] = (await client.tasks["import_file"].kiq(str(missing))).task_id
        ids["report"] = (await client.tasks["generate_report"].kiq(7, seconds=120.0)).task_id
        return ids

    ids = live.run(enqueue)

    async def status(client: Conveyor, task_id: str) -> TaskStatus:
        return (await client.handle(task_id).status()).status

    def state(task_id: str) -> TaskStatus:
        return live.run(lambda c: status(c, task_id))  # type: ignore[no-any-return]

    poll(lambda: state(ids["import"]) is TaskStatus.FAILED)
    poll(lambda: state(ids["report"]) is TaskStatus.RUNNING)

    with browser(tmp_path / "profile") as driver:
        wait = WebDriverWait(driver, 20)

        # without a login: the login page, and no data
        driver.get(f"{live.base}/")
        assert driver.find_elements(By.NAME, "token")
        assert ids["crm"] not in driver.page_source

        # log in with the form
        driver.find_element(By.NAME, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "form.login button").click()
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "svg")))
        cookie = driver.get_cookie("conveyor_dashboard")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        # Overview: the chart fills in as tasks end (live refresh, no reload)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "rect.bar.succeeded"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "rect.bar.failed"))
        assert "default" in driver.find_element(By.TAG_NAME, "table").text
        driver.save_screenshot(str(tmp_path / "overview.png"))

        # Workers: the worker runs the report; the scheduler is listed apart
        driver.get(f"{live.base}/workers")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"a[href='/tasks/{ids['report']}']"))
        headings = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
        assert headings == ["Workers", "Schedulers"]
        assert "No live scheduler" not in driver.page_source

        # Tasks: search by name
        driver.get(f"{live.base}/tasks")
        box = driver.find_element(By.NAME, "q")
        box.send_keys("sync_c")
        box.submit()
        wait.until(lambda d: "q=sync_c" in d.current_url)
        table = driver.find_element(By.CSS_SELECTOR, "table.tasks").text
        assert ids["crm"] in table and ids["resize0"] not in table

        # Task detail: progress while it runs, then abort through the button
        driver.get(f"{live.base}/tasks/{ids['report']}")
        assert driver.find_elements(By.TAG_NAME, "progress")
        assert "section" in driver.page_source
        driver.find_element(By.ID, "abort").click()
        wait.until(expected_conditions.alert_is_present())
        driver.switch_to.alert.accept()
        wait.until(lambda d: "Abort requested" in d.page_source)
        # the live refresh shows the outcome without a reload
        wait.until(lambda d: "aborted" in d.find_element(By.ID, "task-status").text)
        assert state(ids["report"]) is TaskStatus.ABORTED

        # Dead letters: the import failed for a missing file; make it, requeue it
        driver.get(f"{live.base}/dead-letters")
        assert ids["import"] in driver.page_source and ids["crm"] in driver.page_source
        missing.write_text("a\nb\nc\n")
        driver.find_element(By.CSS_SELECTOR, f"input[value='{ids['import']}']").click()
        driver.find_element(By.ID, "bulk-requeue").click()
        wait.until(lambda d: "Requeued 1 dead letter" in d.page_source)
        poll(lambda: state(ids["import"]) is TaskStatus.SUCCEEDED)
        assert live.run(lambda c: c.handle(ids["import"]).get(timeout=5)) == 3

        # Schedules: both schedules with their next runs
        driver.get(f"{live.base}/schedules")
        assert "nightly-cleanup" in driver.page_source and "hourly-check" in driver.page_source

        # a script in the logged-in page that skips the CSRF token is refused
        refused = driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            fetch('/actions/abort', {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                body: 'task_id=x'}).then(r => done(r.status));
            """
        )
        assert refused == 403

    # no login at all: 401, nothing aborted
    victim = live.run(
        lambda c: c.tasks["resize_image"].with_options(delay=600).kiq("later.png")
    ).task_id
    assert _post(f"{live.base}/actions/abort", {"task_id": victim}) == 401
    assert _post(f"{live.base}/actions/dead-letters", {"action": "delete", "id": ids["crm"]}) == 401
    assert state(victim) is TaskStatus.QUEUED

    with urllib.request.urlopen(
        urllib.request.Request(
            f"{live.base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        ),
        timeout=5,
    ) as response:
        assert b"conveyor_dead_letters" in response.read()
    assert json.dumps(ids)  # all ids were plain strings


def test_read_only_dashboard_in_chromium_has_no_buttons(tmp_path: Path) -> None:
    found = find_chromium()
    if isinstance(found, str):
        service_unavailable(found)
    url = f"sqlite:///{tmp_path / 'ro.db'}"
    with stack(url, tmp_path, TOKEN, "--read-only") as live:
        task_id = live.run(
            lambda c: c.tasks["resize_image"].with_options(delay=600).kiq("ro.png")
        ).task_id
        with browser(tmp_path / "profile") as driver:
            from selenium.webdriver.common.by import By

            driver.get(f"{live.base}/tasks/{task_id}?token={TOKEN}")
            assert "read-only" in driver.page_source
            assert not driver.find_elements(By.TAG_NAME, "button")
            assert TOKEN not in driver.current_url  # the link's token was dropped
            status = driver.execute_async_script(
                """
                const done = arguments[arguments.length - 1];
                const csrf = 'x';
                fetch('/actions/abort', {method: 'POST', credentials: 'same-origin',
                    headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                    body: 'task_id=' + arguments[0] + '&csrf=' + csrf}).then(r => done(r.status));
                """,
                task_id,
            )
            assert status == 403
