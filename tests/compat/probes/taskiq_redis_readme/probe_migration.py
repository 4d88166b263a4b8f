"""taskiq-redis's migration recipe, as a team would roll it out: the old deployment's
RedisScheduleSource holds a schedule (``python probe_migration.py old``); the new code
(``migration/broker.py``, the README's) is deployed and its scheduler started; then the
schedule is in the new ListRedisScheduleSource and gone from the old one (``... check``)."""

import asyncio
import sys

from compat_checks import check
from migration.broker import array_source, old_source
from taskiq import ScheduledTask


async def old() -> None:
    with check("old_source_add_schedule"):
        await old_source.startup()
        schedule = ScheduledTask(
            task_name="reports:nightly", labels={}, args=[1], kwargs={}, cron="0 3 * * *"
        )
        await old_source.add_schedule(schedule)
        print("SCHEDULE-ID", schedule.schedule_id, flush=True)
        await old_source.shutdown()


async def check_migrated(schedule_id: str) -> None:
    await array_source.startup()
    with check("schedules_migrated"):
        ids = [s.schedule_id for s in await array_source.get_schedules()]
        assert schedule_id in ids, f"{schedule_id} not in the new source: {ids}"
    with check("old_schedules_deleted"):
        await old_source.startup()
        ids = [s.schedule_id for s in await old_source.get_schedules()]
        assert schedule_id not in ids, f"{schedule_id} still in the old source: {ids}"
        await old_source.shutdown()
    await array_source.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "old":
        asyncio.run(old())
    else:
        asyncio.run(check_migrated(sys.argv[2]))
