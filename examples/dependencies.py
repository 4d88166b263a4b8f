"""Dependency injection: Depends, generator cleanup, caching, sub-dependencies, Context,
and dependency_overrides for tests.

Run: python examples/dependencies.py        (docs/dependencies.md)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from conveyor import Context, Conveyor, Depends

app = Conveyor("memory://", fetch_wait=0.1)
log: list[str] = []


class AsyncSession:
    """Stands in for SQLAlchemy's AsyncSession: opened and closed around each task run."""

    async def __aenter__(self) -> AsyncSession:
        log.append("open session")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        log.append("close session")

    async def count_rows(self, report_id: int) -> int:
        return report_id * 10


Session = AsyncSession  # in a real app: async_sessionmaker(engine)


class FakeSession(AsyncSession):
    async def count_rows(self, report_id: int) -> int:
        return 0


async def get_db() -> AsyncIterator[AsyncSession]:
    async with Session() as session:
        yield session  # cleaned up after the task, even when it fails


@app.task
async def process_report(report_id: int, db: AsyncSession = Depends(get_db)) -> dict[str, int]:
    return {"report_id": report_id, "rows": await db.count_rows(report_id)}


DbSession = Annotated[AsyncSession, Depends(get_db)]


@app.task
async def count_rows(report_id: int, db: DbSession = None) -> int:  # type: ignore[assignment]
    return await db.count_rows(report_id)


class Client:
    def close(self) -> None:
        log.append("client closed")


def get_client() -> Iterator[Client]:
    client = Client()
    try:
        yield client
    finally:
        client.close()  # runs on success, failure and timeout


@app.task
async def call_upstream(client: Client = Depends(get_client)) -> None:
    raise ConnectionError("upstream unavailable")


class Settings:
    smtp_host = "smtp.example.com"


class Mailer:
    def __init__(self, host: str) -> None:
        self.host = host

    def send(self, to: str) -> str:
        return f"sent to {to} through {self.host}"


def get_settings() -> Settings:  # called once per task run, however many ask for it
    log.append("get_settings")
    return Settings()


def get_mailer(settings: Settings = Depends(get_settings)) -> Mailer:
    return Mailer(settings.smtp_host)


@app.task
async def welcome(
    user_id: int,
    mailer: Mailer = Depends(get_mailer),
    settings: Settings = Depends(get_settings),  # the same object get_mailer received
) -> str:
    return mailer.send(f"user-{user_id}")


@app.task
async def long_job(n: int, ctx: Context = Depends()) -> None:
    log.append(f"{ctx.task_name} {ctx.task_id} attempt {ctx.attempt} on {ctx.queue!r}")
    message = ctx.message
    log.append(f"labels {ctx.labels}, args {message.args}, the app: {ctx.app is app}")
    await ctx.progress(0.5, "halfway")  # shown by handle.status() while running
    log.append(f"abort requested: {ctx.abort_requested}")


async def main() -> None:
    async with app, app.worker():
        handle = await process_report.kiq(42)  # only report_id goes to the broker
        print(await handle.get(timeout=5), log)
        print("Annotated:", await (await count_rows.kiq(7)).get(timeout=5))

        log.clear()
        await (await call_upstream.kiq()).wait_result(timeout=5)
        print("a failing task still closes its client:", log)

        log.clear()
        print(await (await welcome.kiq(1)).get(timeout=5), log)

        log.clear()
        await (await long_job.kiq(1)).get(timeout=5)
        print("\n".join(f"  {line}" for line in log))

    # In tests: swap a provider; it applies to direct calls and to worker runs.
    app.dependency_overrides[get_db] = lambda: FakeSession()
    try:
        assert await process_report(42) == {"report_id": 42, "rows": 0}  # a direct call
        async with app, app.worker():
            handle = await process_report.kiq(42)  # a worker run
            assert await handle.get(timeout=5) == {"report_id": 42, "rows": 0}
    finally:
        app.dependency_overrides.clear()
    print("overridden: rows 0, in a direct call and in a worker run")


if __name__ == "__main__":
    asyncio.run(main())
