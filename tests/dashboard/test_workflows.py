"""The dashboard's workflow pages: the list (by state) and one workflow as a list of its
tasks and groups with their states, and the abort button; on memory, SQLite and Redis."""

from __future__ import annotations

import asyncio

from conveyor import Conveyor, chain, chord
from conveyor.dashboard import create_dashboard
from tests.dashboard.conftest import client_for, csrf_of


async def test_workflow_pages_show_states_and_abort(app: Conveyor) -> None:
    release = asyncio.Event()

    @app.task(name="square")
    async def square(x: int) -> int:
        return x * x

    @app.task(name="total")
    async def total(values: list[int]) -> int:
        return sum(values)

    @app.task(name="broken")
    async def broken(x: int) -> int:
        raise ValueError(f"broken {x}")

    @app.task(name="wait")
    async def wait(x: int) -> int:
        await release.wait()
        return x

    web = create_dashboard(app)
    async with client_for(web) as client:
        async with app.worker(concurrency=8):
            done = await chord([square.s(1), square.s(2), square.s(3)], total.s()).kiq()
            assert await done.get(timeout=10) == 14
            failed = await chain(square.s(2), broken.s(), total.s()).kiq()
            await failed.wait_result(timeout=10)
        waiting = await chord([wait.s(1), wait.s(2)], total.s()).kiq()  # no worker runs it

        listed = await client.get("/workflows")
        assert listed.status_code == 200
        for handle in (done, failed, waiting):
            assert f"/workflows/{handle.workflow_id}" in listed.text
        assert "[square x3] → total" in listed.text
        assert "1 running · 1 succeeded · 1 failed · 0 aborted" in listed.text
        only_failed = await client.get("/workflows", params={"state": "failed"})
        assert failed.workflow_id in only_failed.text and done.workflow_id not in only_failed.text

        page = await client.get(f"/workflows/{done.workflow_id}")
        assert page.status_code == 200
        assert 's-succeeded">succeeded' in page.text
        assert page.text.count('href="/tasks/') >= 4  # the members, the callback, the result
        assert "3/3" in page.text  # the group's progress
        assert 'id="abort-workflow"' not in page.text
        member = await client.get(f"/tasks/{done.workflow_id}.0.1")
        assert f'id="task-workflow">{done.workflow_id}<' in member.text

        broke = await client.get(f"/workflows/{failed.workflow_id}")
        assert f'id="failed-task">{failed.workflow_id}.1<' in broke.text
        assert "ValueError: broken 4" in broke.text

        running = await client.get(f"/workflows/{waiting.workflow_id}")
        assert 'id="abort-workflow"' in running.text
        aborted = await client.post(
            "/actions/abort-workflow",
            data={"csrf": csrf_of(running.text), "workflow_id": waiting.workflow_id},
            follow_redirects=True,
        )
        assert "Workflow aborted: 2 of its task(s) stopped" in aborted.text
        assert 's-aborted">aborted' in aborted.text
        assert (await client.get("/workflows/no-such-workflow")).status_code == 404
