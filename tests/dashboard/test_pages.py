"""Every dashboard page renders the data of a real worker run, on memory, SQLite and Redis,
and the actions (abort, requeue, delete, pause, resume, run now) change the broker."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

import pytest

from conveyor import Conveyor, TaskStatus
from conveyor.dashboard import create_dashboard
from tests.conftest import fast_app
from tests.dashboard.conftest import client_for, csrf_of, wait_for


async def _until_dead(app: Conveyor, task_id: str) -> None:
    async def dead() -> bool:
        return await app.broker.get_dead_letter(task_id) is not None

    await wait_for(dead)


async def _until_running(app: Conveyor, task_id: str) -> None:
    async def running_with_progress() -> bool:
        state = await app.handle(task_id).status()
        return state.status is TaskStatus.RUNNING and state.progress is not None

    await wait_for(running_with_progress)


async def test_every_page_renders_a_real_worker_run(shown: Conveyor) -> None:
    app = shown
    web = create_dashboard(app)
    async with app.worker(concurrency=4), client_for(web) as client:
        resized = [await app.tasks["resize_image"].kiq(f"cat-{n}.png", width=320) for n in range(3)]
        for handle in resized:
            await handle.get(timeout=10)
        failing = await app.tasks["sync_crm"].kiq(4711)
        await _until_dead(app, failing.task_id)
        report = await app.tasks["generate_report"].kiq(42, seconds=60.0)
        await _until_running(app, report.task_id)

        async def heartbeat_with_report() -> bool:
            return any(report.task_id in w.current_tasks for w in await app.broker.workers())

        await wait_for(heartbeat_with_report)

        overview = await client.get("/")
        assert overview.status_code == 200
        assert 'class="bar succeeded"' in overview.text  # the throughput chart has bars
        assert "<polyline" in overview.text or '<circle class="dot"' in overview.text
        assert re.search(r"<td>default</td>", overview.text)
        assert "https://" not in overview.text and "http://" not in overview.text  # no CDN

        workers = await client.get("/workers")
        assert workers.status_code == 200
        (info,) = [w for w in await app.broker.workers() if w.role == "worker"]
        assert info.worker_id in workers.text
        assert f"/tasks/{report.task_id}" in workers.text  # its current task, linked
        assert "<meter" in workers.text

        tasks = await client.get("/tasks")
        assert tasks.status_code == 200
        for handle in [*resized, failing, report]:
            assert handle.task_id in tasks.text
        assert "&#39;cat-0.png&#39;, width=320" in tasks.text  # the args preview

        done = await client.get(f"/tasks/{resized[0].task_id}")
        assert done.status_code == 200
        assert "succeeded" in done.text and "cat-0-320.png" in done.text  # return value
        assert 'id="abort"' not in done.text  # nothing to abort

        dead = await client.get(f"/tasks/{failing.task_id}")
        assert "ConnectionError" in dead.text and "Traceback (most recent call last)" in dead.text
        assert "retried" in dead.text and "4711" in dead.text  # timeline, full args
        assert 'id="requeue"' in dead.text

        running = await client.get(f"/tasks/{report.task_id}")
        assert "<progress" in running.text and "section" in running.text
        assert 'id="abort"' in running.text

        letters = await client.get("/dead-letters")
        assert failing.task_id in letters.text and "503 Service Unavailable" in letters.text
        letter = await client.get(f"/dead-letters/{failing.task_id}")
        assert "sync_crm" in letter.text and "4711" in letter.text and "Raw body" in letter.text

        schedules = await client.get("/schedules")
        assert "nightly-cleanup" in schedules.text and "hourly-check" in schedules.text
        assert re.search(r"\d{4}-\d\d-\d\d 03:00:00", schedules.text)  # next nightly run

        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "conveyor_queue_depth" in metrics.text

        fragment = await client.get("/tasks", params={"fragment": "1", "q": "cat"})
        assert "<html" not in fragment.text and resized[0].task_id in fragment.text

        missing = await client.get("/tasks/no-such-task")
        assert missing.status_code == 404

        # abort the running report through the dashboard's form
        token = csrf_of(running.text)
        aborted = await client.post(
            "/actions/abort", data={"csrf": token, "task_id": report.task_id}
        )
        assert aborted.status_code == 303
        assert aborted.headers["location"].endswith("done=abort-signalled")
        result = await report.wait_result(timeout=10)
        assert result.status is TaskStatus.ABORTED
        after = await client.get(aborted.headers["location"])
        assert "Abort requested" in after.text and "aborted" in after.text

        # requeue the dead letter: it runs (and fails) again
        requeued = await client.post(
            "/actions/dead-letters",
            data={"csrf": token, "action": "requeue", "id": [failing.task_id]},
        )
        assert requeued.status_code == 303
        assert "Requeued 1 dead letter" in (await client.get(requeued.headers["location"])).text
        await _until_dead(app, failing.task_id)  # it ran again and ended there once more
        deleted = await client.post(
            "/actions/dead-letters",
            data={"csrf": token, "action": "delete", "id": [failing.task_id]},
        )
        assert deleted.status_code == 303
        assert await app.broker.get_dead_letter(failing.task_id) is None


async def test_schedules_pause_resume_and_run_now(shown: Conveyor) -> None:
    app = shown
    web = create_dashboard(app)
    async with app.worker(concurrency=2), client_for(web) as client:
        page = await client.get("/schedules")
        token = csrf_of(page.text)
        paused = await client.post(
            "/actions/schedule",
            data={"csrf": token, "schedule_id": "nightly-cleanup", "action": "pause"},
        )
        assert paused.status_code == 303
        assert (await app.schedules.get("nightly-cleanup")).paused
        shown_page = await client.get(paused.headers["location"])
        assert "Schedule paused." in shown_page.text and "s-paused" in shown_page.text

        await client.post(
            "/actions/schedule",
            data={"csrf": token, "schedule_id": "nightly-cleanup", "action": "resume"},
        )
        assert not (await app.schedules.get("nightly-cleanup")).paused

        ran = await client.post(
            "/actions/schedule",
            data={"csrf": token, "schedule_id": "hourly-check", "action": "run"},
        )
        assert ran.status_code == 303
        task_id = ran.headers["location"].split("/tasks/")[1].split("?")[0]
        assert await app.handle(task_id).get(timeout=10) == "ok"

        unknown = await client.post(
            "/actions/schedule", data={"csrf": token, "schedule_id": "nope", "action": "pause"}
        )
        assert unknown.status_code == 404


async def test_tasks_are_searchable_by_id_name_and_status(shown: Conveyor) -> None:
    app = shown
    web = create_dashboard(app)
    async with app.worker(concurrency=4), client_for(web) as client:
        ok = await app.tasks["resize_image"].kiq("dog.png")
        await ok.get(timeout=10)
        bad = await app.tasks["sync_crm"].kiq(1)
        await _until_dead(app, bad.task_id)

        async def listed(params: dict[str, str]) -> str:
            response = await client.get("/tasks", params=params)
            assert response.status_code == 200
            return response.text

        by_id = await listed({"q": ok.task_id[:10]})
        assert ok.task_id in by_id and bad.task_id not in by_id
        by_name = await listed({"q": "SYNC_C"})  # any case, part of the name
        assert bad.task_id in by_name and ok.task_id not in by_name
        by_status = await listed({"status": "failed"})
        assert bad.task_id in by_status and ok.task_id not in by_status
        by_task = await listed({"task": "resize_image", "status": "succeeded"})
        assert ok.task_id in by_task and bad.task_id not in by_task
        nothing = await listed({"q": "no-such-id"})
        assert "No task with the id <strong>no-such-id</strong>" in nothing
        assert "none in the event log matches it" in nothing
        exact = await listed({"q": bad.task_id})  # an exact id: the broker's word, too
        assert 'id="found"' not in exact and bad.task_id in exact  # the event log has it
        # a task that is still queued has no events, but its page answers
        queued = await app.tasks["resize_image"].with_options(delay=600).kiq("later.png")
        page = await client.get(f"/tasks/{queued.task_id}")
        assert page.status_code == 200 and "queued" in html.unescape(page.text)


async def test_a_queued_task_is_aborted_before_it_runs(shown: Conveyor) -> None:
    app = shown
    web = create_dashboard(app)
    async with client_for(web) as client:
        later = await app.tasks["resize_image"].with_options(delay=600).kiq("x.png")
        page = await client.get(f"/tasks/{later.task_id}")
        assert 'id="abort"' in page.text
        response = await client.post(
            "/actions/abort", data={"csrf": csrf_of(page.text), "task_id": later.task_id}
        )
        assert response.headers["location"].endswith("done=abort-dequeued")
        assert (await app.handle(later.task_id).status()).status is TaskStatus.ABORTED


async def test_pages_render_on_an_empty_broker(shown: Conveyor) -> None:
    web = create_dashboard(shown)
    async with client_for(web) as client:
        for path in ("/", "/workers", "/tasks", "/dead-letters", "/schedules", "/metrics"):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text[:500])
        assert "no task ended in this window" in (await client.get("/")).text
        assert "The dead-letter queue is empty" in (await client.get("/dead-letters")).text


async def test_the_dashboard_connects_a_disconnected_app_on_first_request() -> None:
    from tests.conftest import fast_app

    app = fast_app("memory://")
    web = create_dashboard(app)
    assert not app.is_connected
    async with client_for(web) as client:
        assert (await client.get("/")).status_code == 200
    assert app.is_connected
    await web.state.conveyor_dashboard.aclose()  # what the lifespan does at shutdown
    assert not app.is_connected


async def test_scraping_the_dashboards_metrics_reads_the_broker_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conveyor.observability import metrics
    from conveyor.observability.metrics import BrokerSnapshot, SnapshotCache

    reads = [0]
    original = metrics.read_snapshot

    async def counting(*args: Any, **kwargs: Any) -> BrokerSnapshot:
        reads[0] += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr(metrics, "read_snapshot", counting)
    clock = [0.0]
    app = fast_app("memory://")
    async with app:
        web = create_dashboard(app)
        async with client_for(web) as client:
            assert (await client.get("/metrics")).status_code == 200
            assert reads == [1]  # the default cache: a second
            web.state.conveyor_dashboard.metrics_cache = SnapshotCache(1.0, lambda: clock[0])
            pages = await asyncio.gather(*(client.get("/metrics") for _ in range(20)))
            assert all("conveyor_broker_up 1.0" in page.text for page in pages)
            assert reads == [2]
            clock[0] += 1.0
            await client.get("/metrics")
            assert reads == [3]
