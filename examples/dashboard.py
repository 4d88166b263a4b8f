"""The dashboard, mounted in a FastAPI app next to its routes, with a worker in the same
event loop: work flows, the pages show it, an abort goes through the dashboard's form.

Run: python examples/dashboard.py            (docs/dashboard.md)
     python examples/dashboard.py --serve    then open the printed link
Needs the dashboard and fastapi extras (starlette, jinja2, uvicorn, fastapi) and httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import secrets

import httpx
import uvicorn
from fastapi import FastAPI

from conveyor import Context, Conveyor, Depends, fixed
from conveyor.dashboard import create_dashboard
from conveyor.integrations.fastapi import lifespan

conveyor_app = Conveyor("memory://", fetch_wait=0.1, heartbeat_interval=0.5, events=True)


@conveyor_app.task(name="send_email")
async def send_email(to: str, subject: str) -> str:
    await asyncio.sleep(0.05)
    return f"sent {subject!r} to {to}"


@conveyor_app.task(name="sync_crm", retries=1, backoff=fixed(0.1))
async def sync_crm(account_id: int) -> None:
    raise ConnectionError(f"CRM refused account {account_id}")


@conveyor_app.task(name="build_report")
async def build_report(report_id: int, ctx: Context = Depends()) -> str:
    for step in range(100):
        await ctx.progress(step / 100, f"page {step + 1}")
        await asyncio.sleep(0.5)
    return f"report {report_id}"


TOKEN = secrets.token_urlsafe(16)  # in production: an environment variable
api = FastAPI(lifespan=lifespan(conveyor_app))  # connects the Conveyor app with the API
api.mount("/conveyor", create_dashboard(conveyor_app, token=TOKEN))


@api.post("/signup")
async def signup(email: str) -> dict[str, str]:
    handle = await send_email.kiq(email, "Welcome!")
    return {"task_id": handle.task_id}


async def main(serve: bool) -> None:
    server = uvicorn.Server(uvicorn.Config(api, port=8765, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.05)
    async with conveyor_app.worker(concurrency=4):
        base = "http://127.0.0.1:8765"
        async with httpx.AsyncClient(base_url=base, follow_redirects=True) as client:
            for n in range(5):
                await client.post("/signup", params={"email": f"user{n}@example.com"})
            await sync_crm.kiq(42)
            report = await build_report.kiq(7)
            await asyncio.sleep(1.5)

            # log in as a browser does: ?token= sets the session cookie
            page = await client.get("/conveyor/", params={"token": TOKEN})
            print("overview:", page.status_code, "| queue depths shown:", "Queues" in page.text)
            tasks = await client.get("/conveyor/tasks", params={"q": "send_email"})
            print("tasks matching send_email:", tasks.text.count('class="status s-succeeded"'))

            detail = await client.get(f"/conveyor/tasks/{report.task_id}")
            print("report running with progress:", "<progress" in detail.text)
            csrf = re.search(r'name="csrf" value="(\w+)"', detail.text)
            assert csrf is not None
            await client.post(
                "/conveyor/actions/abort", data={"csrf": csrf[1], "task_id": report.task_id}
            )
            print("after the Abort button:", (await report.wait_result(timeout=5)).status)

            async with httpx.AsyncClient(base_url=base) as stranger:
                refused = await stranger.post(
                    "/conveyor/actions/abort", data={"task_id": report.task_id}
                )
            print("the same action without a login:", refused.status_code)
            metrics = await client.get("/conveyor/metrics")
            print("/metrics has queue depths:", "conveyor_queue_depth{" in metrics.text)
        if serve:
            print(f"open {base}/conveyor/?token={TOKEN}  (Ctrl-C to stop)")
            await serving
    server.should_exit = True
    await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true", help="keep serving until Ctrl-C")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args().serve))
