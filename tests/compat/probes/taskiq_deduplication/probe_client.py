"""The README's dispatch sequence: a first send is accepted, a second one while the first
is queued is rejected with DuplicateTaskError naming the winner (``python probe_client.py
before``); once a worker has run the first, the lock is released and the same send is
accepted again (``... after``)."""

import asyncio
import sys
import time

from compat_checks import check
from probe_app import broker, send_report
from taskiq_deduplication import DuplicateTaskError


async def before() -> None:
    await broker.startup()
    first = None
    with check("first_dispatch_accepted"):
        first = await send_report.kiq(user_id=42)
    with check("duplicate_dispatch_rejected"):
        try:
            await send_report.kiq(user_id=42)
        except DuplicateTaskError as exc:
            rejected = exc
        else:
            raise AssertionError("the second send_report.kiq(user_id=42) was accepted")
    with check("rejection_names_the_winner"):
        assert first is not None, "not reached: the first send failed"
        assert rejected.holder_task_id == first.task_id, (rejected.holder_task_id, first.task_id)
    with check("other_arguments_are_not_duplicates"):
        await send_report.kiq(user_id=43)
    await broker.shutdown()


async def after() -> None:
    await broker.startup()
    with check("dispatch_accepted_after_run"):
        deadline = time.monotonic() + 30
        while True:
            try:
                await send_report.kiq(user_id=42)
                break
            except DuplicateTaskError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)  # sleep: the poll interval, until the worker ran it
    await broker.shutdown()


if __name__ == "__main__":
    asyncio.run(before() if sys.argv[1] == "before" else after())
