"""The client side of taskiq's Redis scheduling example: send a task, add schedules to
the example's ListRedisScheduleSource, list and cancel them (``python probe_schedule.py
send``), and look at the source once the scheduler fired (``... after <schedule_id>``)."""

import asyncio
import sys
from datetime import UTC, datetime, timedelta

from compat_checks import blocked, check
from redis_schedule import broker, my_task, redis_source


async def send() -> None:
    await broker.startup()
    await redis_source.startup()
    with check("direct_kiq_sent"):
        await my_task.kiq(1, "direct")
    by_time = None
    with check("schedule_by_time_created"):
        when = datetime.now(UTC) + timedelta(seconds=1)
        by_time = await my_task.schedule_by_time(redis_source, when, 2, "by_time")
        assert by_time.schedule_id, by_time
        print("SCHEDULE-ID", by_time.schedule_id, flush=True)
    cron = None
    with check("schedule_listed"):
        cron = await my_task.schedule_by_cron(redis_source, "*/5 * * * *", 3, "by_cron")
        ids = {schedule.schedule_id for schedule in await redis_source.get_schedules()}
        assert cron.schedule_id in ids, f"{cron.schedule_id} not in {ids}"
    if cron is None:
        blocked(["unschedule_removes"], "schedule_listed")
    else:
        with check("unschedule_removes"):
            await cron.unschedule()
            ids = {schedule.schedule_id for schedule in await redis_source.get_schedules()}
            assert cron.schedule_id not in ids, f"{cron.schedule_id} still in {ids}"
    await redis_source.shutdown()
    await broker.shutdown()


async def after(schedule_id: str) -> None:
    await redis_source.startup()
    with check("fired_one_off_schedule_is_gone"):
        ids = {schedule.schedule_id for schedule in await redis_source.get_schedules()}
        assert schedule_id not in ids, f"{schedule_id} is still listed: {ids}"
    await redis_source.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "send":
        asyncio.run(send())
    else:
        asyncio.run(after(sys.argv[2]))
