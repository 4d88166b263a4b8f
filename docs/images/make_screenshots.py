"""Make the dashboard screenshots in this folder (docs/images/dashboard-*.png).

    python docs/images/make_screenshots.py [--minutes 4]

Runs a real `conveyor worker` (two processes, with a scheduler) and `conveyor dashboard`
on a temporary SQLite database, sends a mix of work for a few minutes (image resizes,
a CRM sync that always fails, imports of a missing file, long reports with progress),
then photographs each page in headless Chromium (Debian's chromium and chromium-driver),
shrunk by pngquant when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from conveyor import Conveyor  # noqa: E402
from tests.dashboard.live import browser, poll, stack  # noqa: E402

TOKEN = "screenshots"


async def send_work(client: Conveyor, seconds: float, folder: Path) -> dict[str, str]:
    """Send work for ``seconds``; returns the ids worth photographing."""
    rng = random.Random(8)
    ids: dict[str, str] = {}
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        wave = 1.5 + (elapsed / 60) % 2  # a rate that moves a little, minute to minute
        for _ in range(rng.randint(2, int(4 * wave))):
            await client.tasks["resize_image"].kiq(
                f"uploads/{rng.choice(['cat', 'dog', 'logo', 'avatar'])}-{rng.randint(1, 999)}.png",
                width=rng.choice([320, 640, 1280]),
            )
        if rng.random() < 0.25:
            handle = await client.tasks["sync_crm"].kiq(rng.randint(1000, 9999))
            ids["failed"] = handle.task_id
        if rng.random() < 0.08:
            await client.tasks["import_file"].kiq(str(folder / f"orders-{rng.randint(1, 99)}.csv"))
        await asyncio.sleep(1.0)
    for report_id in (41, 42):
        handle = await client.tasks["generate_report"].kiq(report_id, seconds=600.0)
        ids["running"] = handle.task_id
    await asyncio.sleep(4)  # let the reports get under way
    return ids


def shrink(png: Path) -> None:
    """Quantize to a palette with pngquant when it is installed (apt-get install
    pngquant): a third of the size, no visible change for flat UI colors."""
    if shutil.which("pngquant"):
        subprocess.run(
            ["pngquant", "--quality", "70-95", "--speed", "1", "--force", "--ext", ".png", png],
            check=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="how long to send work")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder / 'screenshots.db'}"
        worker_args = ("--workers", "2", "--concurrency", "8")
        with stack(url, folder, TOKEN, worker_args=worker_args) as live:
            poll(lambda: len(live.run(lambda c: c.broker.workers())) >= 3, timeout=30)
            ids = live.run(lambda c: send_work(c, args.minutes * 60, folder))
            pages = {
                "overview": "/",
                "tasks": "/tasks",
                "task": f"/tasks/{ids['failed']}",
                "workers": "/workers",
                "dlq": "/dead-letters",
                "schedules": "/schedules",
            }
            with browser(folder / "profile", width=1280, height=820) as driver:
                driver.get(f"{live.base}/?token={TOKEN}")
                for name, path in pages.items():
                    driver.get(live.base + path)
                    time.sleep(0.5)
                    target = args.out / f"dashboard-{name}.png"
                    driver.save_screenshot(str(target))
                    shrink(target)
                    print(f"{target} ({target.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
