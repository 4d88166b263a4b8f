"""Scheduling: schedules in code (cron, every, the taskiq dict form), next fire times and
the daylight-saving rule, dynamic schedules, two schedulers that enqueue each tick once,
and missed runs (skip vs catch_up) after the schedulers were down.

Run: python examples/scheduling.py        (docs/scheduling.md, ~7 s)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from conveyor import Context, Conveyor, Depends, Scheduler, catch_up, cron, every

# schedule_refresh: how often a running scheduler re-reads the dynamic schedules
app = Conveyor("memory://", fetch_wait=0.1, schedule_refresh=0.2)
runs: list[tuple[str, str]] = []  # (schedule id, fire time) of every run


def record(ctx: Context) -> None:
    runs.append((ctx.labels["schedule"], ctx.labels["scheduled_for"][11:19]))


@app.task(schedule=[every(seconds=1, id="tick")])
async def tick(ctx: Context = Depends()) -> None:
    record(ctx)


@app.task(
    schedule=[
        cron("0 7 * * *", tz="America/New_York", kwargs={"team": "sales"}, id="daily-report"),
        {"cron": "0 9 * * 1", "kwargs": {"team": "all"}, "schedule_id": "weekly-report"},
    ]
)
async def report(team: str) -> str:
    return f"report for {team}"


@app.task
async def cleanup(older_than: int, ctx: Context = Depends()) -> None:
    """Run by the dynamic schedules below."""
    record(ctx)


def local_times(moments: list[datetime], zone: str) -> str:
    return ", ".join(m.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M %Z") for m in moments)


async def main() -> None:
    async with app:
        print("schedules in code:")
        for info in await app.schedules.list():
            print(f"  {info.schedule.id:14} {info.schedule.describe():38} next {info.next_run}")

        # Daylight saving in New York: 2026-03-08 has no 02:30, 2026-11-01 has two 01:30s
        zone = "America/New_York"
        for expr, start in [
            ("30 2 * * *", datetime(2026, 3, 8)),
            ("30 1 * * *", datetime(2026, 11, 1)),
            ("0 * * * *", datetime(2026, 11, 1, 0, 30)),
        ]:
            after = start.replace(tzinfo=ZoneInfo(zone)).timestamp()
            shown = local_times(cron(expr, zone).next_runs(after, 3), zone)
            print(f"{expr:10} after {start:%Y-%m-%d %H:%M}: {shown}")

        # Dynamic schedules, kept in the broker's schedule store. No tick from before
        # add() ever fires, whatever the missed-run policy.
        await app.schedules.add("cleanup", cleanup, every=1, args=[3600])
        await app.schedules.add(
            "cleanup-catch-up", cleanup, every=1, kwargs={"older_than": 60}, missed=catch_up(60)
        )
        await app.schedules.add(
            "nightly-report", report, cron="0 3 * * *", tz="Europe/Berlin", kwargs={"team": "ops"}
        )
        launch = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
        await app.schedules.add("launch", report, at=launch, kwargs={"team": "all"})
        await app.schedules.pause("daily-report")  # a code schedule can be paused, not removed
        await app.schedules.pause("nightly-report")
        await app.schedules.resume("nightly-report")
        handle = await app.schedules.run_now("nightly-report")  # one extra run now
        print("code and dynamic schedules:")
        for info in await app.schedules.list():
            print(f"  {info.schedule.id:14} {info.schedule.describe():38} next {info.next_run}")
        print(
            "next 3 of cleanup:",
            [d.strftime("%H:%M:%S") for d in await app.schedules.next_runs("cleanup", 3)],
        )

        # Two schedulers and a worker: every scheduler fires every tick, the broker admits
        # one copy of each (the tick's idempotency key)
        async with app.worker(concurrency=4), Scheduler(app) as first, Scheduler(app) as second:
            await asyncio.sleep(2.2)
        stats = [first.stats, second.stats]
        print(
            f"two schedulers: enqueued {stats[0].enqueued} + {stats[1].enqueued}, "
            f"refused as duplicates {stats[0].duplicates + stats[1].duplicates}"
        )
        counts = Counter(runs)
        print(f"{len(runs)} runs, each tick once: {max(counts.values()) == 1}")

        # Every scheduler down for 2.5 s: "cleanup" (skip) fires no tick more than
        # schedule_grace late (0.3 s here), "cleanup-catch-up" runs each missed tick
        runs.clear()
        await asyncio.sleep(2.5)
        async with app.worker(concurrency=4), Scheduler(app, grace=0.3):
            await asyncio.sleep(0.6)
        for schedule_id in ("cleanup", "cleanup-catch-up"):
            fired = sorted(when for sid, when in runs if sid == schedule_id)
            print(f"after the downtime, {schedule_id}: {fired}")
        print("the extra nightly-report run:", await handle.get(timeout=5))
        await app.schedules.remove("cleanup")  # False if there was none


if __name__ == "__main__":
    asyncio.run(main())
