"""The app the dashboard tests show: in-process (test_pages.py) and in a real
`conveyor worker` process (test_browser.py), on the broker of CONVEYOR_BROKER_URL."""

from __future__ import annotations

import asyncio

from conveyor import Context, Conveyor, Depends, cron, every, fixed

app = Conveyor()  # the broker comes from CONVEYOR_BROKER_URL


@app.task(name="resize_image")
async def resize_image(path: str, width: int = 640) -> dict[str, str | int]:
    """Returns quickly: the succeeded rows and their return values."""
    await asyncio.sleep(0.01)  # sleep: the task's (short) work
    return {"path": path.replace(".png", f"-{width}.png"), "width": width}


@app.task(name="sync_crm", retries=1, backoff=fixed(0.05))
async def sync_crm(account_id: int) -> None:
    """Always fails: a retry, then the dead-letter queue."""
    raise ConnectionError(f"CRM refused account {account_id}: 503 Service Unavailable")


@app.task(name="generate_report")
async def generate_report(report_id: int, seconds: float = 60.0, ctx: Context = Depends()) -> str:
    """Runs for ``seconds`` reporting progress, unless aborted."""
    steps = 20
    for step in range(steps):
        await ctx.progress(step / steps, f"section {step + 1} of {steps}")
        await asyncio.sleep(seconds / steps)  # sleep: the task's work, a section at a time
    return f"report {report_id} done"


@app.task(name="nightly_cleanup", schedule=[cron("0 3 * * *", id="nightly-cleanup")])
async def nightly_cleanup() -> int:
    return 0


@app.task(name="heartbeat_check", schedule=[every(3600, id="hourly-check")])
async def heartbeat_check() -> str:
    return "ok"


@app.task(name="import_file")
async def import_file(path: str) -> int:
    """Fails (no retry: straight to the dead-letter queue) until the file exists."""
    with open(path, encoding="utf-8") as rows:  # noqa: ASYNC230 - a tiny local file
        return sum(1 for _ in rows)
