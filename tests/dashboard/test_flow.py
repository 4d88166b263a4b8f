"""The dashboard shows a task that a flow limit turned back as waiting, with the reason:
on its task page (from the broker, without the event log) and in the task list (from the
event log); on memory, SQLite and Redis."""

from __future__ import annotations

import asyncio

from conveyor import Conveyor
from conveyor.dashboard import create_dashboard
from tests.dashboard.conftest import client_for


async def test_limited_tasks_show_as_waiting_with_the_reason(app: Conveyor) -> None:
    release = asyncio.Event()

    @app.task(name="one_at_a_time", concurrency=1)
    async def one_at_a_time(n: int) -> int:
        await release.wait()
        return n

    @app.task(name="slow_api", rate_limit="1/h")
    async def slow_api() -> None: ...

    web = create_dashboard(app)
    async with client_for(web) as client, app.worker(concurrency=4):
        first = await one_at_a_time.kiq(1)
        second = await one_at_a_time.kiq(2)
        calls = [await slow_api.kiq(), await slow_api.kiq()]  # one gets the hour's token

        async def waiting(handle_id: str) -> str | None:
            return (await app.handle(handle_id).status()).waiting

        deadline = asyncio.get_running_loop().time() + 10
        late = calls[0]
        while not await waiting(second.task_id) or not await waiting(late.task_id):
            late = calls[1] if late is calls[0] else calls[0]  # whichever was turned back
            assert asyncio.get_running_loop().time() < deadline, "no task shown as waiting"
            await asyncio.sleep(0.02)  # the worker defers them: poll their status

        page = await client.get(f"/tasks/{second.task_id}")
        assert page.status_code == 200
        assert 's-waiting">waiting' in page.text
        assert 'id="task-waiting">concurrency limited: 1 running' in page.text
        page = await client.get(f"/tasks/{late.task_id}")
        assert 'id="task-waiting">rate limited: 1/h' in page.text
        # the list follows the event log: a task claimed again shows as running until
        # the limit turns it back (a moment later), so look until both are waiting
        while True:
            listed = await client.get("/tasks", params={"status": "waiting"})
            if second.task_id in listed.text and late.task_id in listed.text:
                break
            assert asyncio.get_running_loop().time() < deadline + 10, listed.text
            await asyncio.sleep(0.05)  # the event log is flushed in batches: poll it
        assert "concurrency limited: 1 running" in listed.text
        assert first.task_id not in listed.text  # it runs
        found = await client.get("/tasks", params={"q": late.task_id})
        assert "rate limited: 1/h" in found.text
        release.set()
        assert (await calls[1 - calls.index(late)].wait_result(timeout=10)).status == "succeeded"
        assert await first.get(timeout=10) == 1
        assert await second.get(timeout=10) == 2
