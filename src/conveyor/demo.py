"""``conveyor demo``: a worker, example tasks and a stream of work on the embedded default,
with a live view in the terminal.

The tasks mirror what a web backend sends to a queue: welcome emails, embeddings, image
thumbnails (a plain ``def`` task, run in a thread), and a CRM sync that always fails, so
you can watch it retry with backoff and land in the dead-letter queue. A scheduler runs
beside the worker and fires a health check every 5 seconds, and the web dashboard is
served on 127.0.0.1 when the ``dashboard`` extra is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from conveyor.app import Conveyor
from conveyor.brokers import redact_url
from conveyor.deps import Context, Depends
from conveyor.errors import ConveyorError
from conveyor.hooks import Hook
from conveyor.message import Message
from conveyor.result import ErrorInfo, Result
from conveyor.retry import exponential
from conveyor.scheduler import Scheduler, every

__all__ = ["DEMO_URL", "app", "run_demo"]

DEMO_URL = os.environ.get("CONVEYOR_DEMO_URL", "sqlite:///conveyor-demo.db")

app = Conveyor(DEMO_URL, events=True)  # the dashboard it serves reads the event log


@app.task(queue="default")
async def send_welcome_email(user_id: int) -> str:
    """Pretend to render and send an email."""
    await asyncio.sleep(random.uniform(0.05, 0.3))
    return f"welcome email sent to user {user_id}"


@app.task(timeout=10)
async def generate_embedding(chunk_id: str, text: str, ctx: Context = Depends()) -> list[float]:
    """Pretend to call an embedding model, reporting progress."""
    await ctx.progress(0.5, "tokenized")
    await asyncio.sleep(random.uniform(0.1, 0.5))
    return [round(len(text) / (i + 1), 3) for i in range(4)]


@app.task
def make_thumbnail(path: str) -> str:
    """A plain ``def`` task: runs in the worker's thread pool."""
    time.sleep(random.uniform(0.05, 0.2))
    return path.replace(".png", ".thumb.png")


@app.task(retries=2, backoff=exponential(base=0.5, cap=2.0), retry_on=(ConnectionError,))
async def sync_with_crm(account_id: int) -> None:
    """Always fails: retried twice with backoff, then dead-lettered with its reason."""
    await asyncio.sleep(0.05)
    raise ConnectionError(f"CRM unreachable while syncing account {account_id}")


@app.task(schedule=[every(seconds=5, id="demo-health-check")])
async def health_check(ctx: Context = Depends()) -> str:
    """Fired by the scheduler every 5 seconds (``ctx.labels`` says which tick)."""
    return f"healthy at {ctx.labels.get('scheduled_for', 'now')}"


@dataclass
class _Tally(Hook):
    """Counts what the worker does, for the live view."""

    counts: Counter[str] = field(default_factory=Counter)

    async def after_enqueue(self, message: Message, task_id: str) -> None:
        self.counts["enqueued"] += 1

    async def after_execute(self, message: Message, result: Result[Any]) -> None:
        self.counts[result.status.value] += 1
        if message.task == health_check.name and not result.is_err:
            self.counts["health checks"] += 1

    async def on_retry(
        self, message: Message, attempt: int, delay: float, error: ErrorInfo
    ) -> None:
        self.counts["retries"] += 1


async def _produce(stop: asyncio.Event, rate: float) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        await send_welcome_email.kiq(n)
        if n % 2 == 0:
            await generate_embedding.kiq(f"chunk-{n}", "the quick brown fox " * (n % 7 + 1))
        if n % 3 == 0:
            await make_thumbnail.kiq(f"uploads/photo-{n}.png")
        if n % 15 == 1:
            await sync_with_crm.kiq(n)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0 / rate)


class _DashboardServer:
    """The dashboard on 127.0.0.1 in the demo's event loop, if its extra is installed.

    Signals stay with the demo (Ctrl-C stops everything), so uvicorn's are not captured.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.url: str | None = None
        self.note = ""
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _DashboardServer:
        if not self.port:
            return self
        try:
            import uvicorn

            from conveyor.dashboard import create_dashboard
        except ImportError:
            self.note = "pip install -e '.[dashboard]' to watch this in the web dashboard"
            return self
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                self.note = f"port {self.port} is taken: no dashboard (--dashboard-port)"
                return self

        class QuietServer(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        config = uvicorn.Config(
            create_dashboard(app, allowed_hosts=["localhost", "127.0.0.1"]),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
        self._server = QuietServer(config)
        self._task = asyncio.create_task(self._server.serve())
        self.url = f"http://127.0.0.1:{self.port}/"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task


def _table(
    tally: _Tally, depth: dict[str, int], dead: int, elapsed: float, web: str | None = None
) -> Any:
    from rich.table import Table

    title = f"Conveyor demo on {redact_url(app.settings.broker_url)}  ({elapsed:.0f}s)"
    caption = f"dashboard: {web}" if web else None
    table = Table(title=title, caption=caption)
    columns = ("enqueued", "queued", "running", "succeeded", "retries", "failed → DLQ")
    for column in (*columns, "scheduled runs"):
        table.add_column(column, justify="right")
    table.add_row(
        str(tally.counts["enqueued"]),
        str(depth.get("ready", 0) + depth.get("delayed", 0)),
        str(depth.get("running", 0)),
        str(tally.counts["succeeded"]),
        str(tally.counts["retries"]),
        str(dead),
        str(tally.counts["health checks"]),
    )
    return table


async def run_demo(
    duration: float | None = None, rate: float = 5.0, live: bool = True, dashboard_port: int = 8000
) -> Counter[str]:
    """Run the demo until Ctrl-C (or ``duration`` seconds); returns the final tally.
    ``dashboard_port`` 0 serves no dashboard."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    # the live table tells the story; per-task log lines would scroll it away
    logging.getLogger("conveyor").setLevel(logging.ERROR)
    tally = _Tally()
    app.add_hook(tally)
    stop = asyncio.Event()
    started = time.monotonic()
    web = _DashboardServer(dashboard_port)
    async with app, app.worker(concurrency=8), Scheduler(app), web:
        if web.note:
            console.print(web.note)
        producer = asyncio.create_task(_produce(stop, rate))
        dead = 0
        depth: dict[str, int] = {}
        with Live(
            _table(tally, depth, dead, 0, web.url),
            console=console,
            refresh_per_second=4,
            transient=False,
            auto_refresh=live,
        ) as view:
            try:
                while duration is None or time.monotonic() - started < duration:
                    await asyncio.sleep(0.25)
                    rows = await app.broker.queue_depths()
                    depth = Counter()
                    for row in rows:
                        depth.update(ready=row.ready, delayed=row.delayed, running=row.running)
                    dead = sum(row.dead for row in rows)
                    elapsed = time.monotonic() - started
                    view.update(_table(tally, depth, dead, elapsed, web.url))
            except asyncio.CancelledError:
                pass
            finally:
                stop.set()
                await producer
        tally.counts["dead_letters"] = dead
    console.print(
        "\n[bold]Where to look next[/bold]\n"
        f"  conveyor dashboard conveyor.demo:app       the web dashboard, on its own\n"
        f"  conveyor status conveyor.demo:app          queues, depths, workers, schedules\n"
        f"  conveyor dlq conveyor.demo:app list        the failed CRM syncs and why\n"
        f"  conveyor schedules conveyor.demo:app list  the health check's next runs\n"
        f"  conveyor worker conveyor.demo:app -w 2     the same tasks in worker processes\n"
        f"  docs/getting-started.md                    write your own tasks\n"
        f"(state is kept in {redact_url(app.settings.broker_url)})"
    )
    return tally.counts


def main(duration: float | None, rate: float, dashboard_port: int = 8000) -> None:
    """Entry point for the CLI: Ctrl-C stops the demo cleanly."""
    try:
        asyncio.run(run_demo(duration, rate, live=True, dashboard_port=dashboard_port))
    except KeyboardInterrupt:
        pass
    except ConveyorError as exc:
        raise SystemExit(f"demo failed: {exc}") from exc
