"""The dashboard mounted in FastAPI under a prefix: links, assets, cookies and redirects
stay under the prefix."""

from __future__ import annotations

import re

from fastapi import FastAPI

from conveyor import Conveyor
from conveyor.dashboard import create_dashboard
from tests.dashboard.conftest import client_for, csrf_of

TOKEN = "mounted-token"


async def test_mounted_under_a_prefix_every_link_keeps_the_prefix(shown: Conveyor) -> None:
    api = FastAPI()

    @api.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    api.mount("/ops/conveyor", create_dashboard(shown, token=TOKEN))
    handle = await shown.tasks["resize_image"].with_options(delay=600).kiq("m.png")
    async with client_for(api) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        assert (await client.get("/ops/conveyor/")).status_code == 401

        login = await client.get("/ops/conveyor/tasks", params={"token": TOKEN})
        assert login.status_code == 303 and login.headers["location"] == "/ops/conveyor/tasks"
        assert "Path=/ops/conveyor/" in login.headers["set-cookie"]

        page = await client.get(f"/ops/conveyor/tasks/{handle.task_id}")
        assert page.status_code == 200
        links = re.findall(r'(?:href|action|src)="([^"]+)"', page.text)
        links.remove("data:,")  # the empty favicon
        assert links and all(link.startswith("/ops/conveyor/") for link in links), links
        for asset in ("/ops/conveyor/static/dashboard.css", "/ops/conveyor/static/dashboard.js"):
            assert (await client.get(asset)).status_code == 200

        aborted = await client.post(
            "/ops/conveyor/actions/abort",
            data={"csrf": csrf_of(page.text), "task_id": handle.task_id},
        )
        assert aborted.status_code == 303
        assert aborted.headers["location"].startswith(f"/ops/conveyor/tasks/{handle.task_id}?")
        assert (await client.get("/ops/conveyor/metrics")).status_code == 200


async def test_task_ids_with_odd_characters_round_trip_through_links(shown: Conveyor) -> None:
    web = create_dashboard(shown)
    task_id = "report/2024 #1?x=y"
    await shown.tasks["resize_image"].with_options(delay=600, task_id=task_id).kiq("o.png")
    async with client_for(web) as client:
        page = await client.get("/tasks/report%2F2024%20%231%3Fx%3Dy")
        assert page.status_code == 200
        assert "report/2024 #1?x=y" in page.text.replace("&#34;", '"')
