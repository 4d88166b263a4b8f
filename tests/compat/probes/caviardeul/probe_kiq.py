"""Sends one of caviardeul's tasks from outside the worker, as its code elsewhere would:
through the project's broker, set up by its worker module (Django first)."""

import asyncio

import worker
from caviardeul.tasks import check_upcoming_daily_article
from compat_checks import check


async def main() -> None:
    await worker.broker.startup()
    with check("direct_kiq_sent"):
        await check_upcoming_daily_article.kiq()
    await worker.broker.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
