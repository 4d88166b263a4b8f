"""Dependency injection: Depends, generator cleanup, caching, sub-dependencies, Context,
and dependency_overrides for tests.

Run: python examples/dependencies.py        (docs/dependencies.md)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from conveyor import Context, Conveyor, Depends

app = Conveyor("memory://", fetch_wait=0.1)
log: list[str] = []


class Settings:
    dsn = "postgresql://prod/db"


def get_settings() -> Settings:  # a plain function: called once per task run (cached)
    log.append("get_settings")
    return Settings()


async def get_db(settings: Settings = Depends(get_settings)) -> AsyncIterator[str]:
    log.append(f"open {settings.dsn}")
    try:
        yield f"session({settings.dsn})"
    finally:  # runs after the task, even when it fails
        log.append("close session")


class Mailer:  # Depends() with no argument calls the annotation
    def send(self, to: str) -> str:
        return f"sent to {to}"


@app.task
async def welcome(
    user_id: int,
    db: str = Depends(get_db),
    settings: Settings = Depends(get_settings),  # same provider as get_db's: not called again
    mailer: Mailer = Depends(),
    ctx: Context = Depends(),
) -> str:
    await ctx.progress(0.5, "mail rendered")
    log.append(f"task {ctx.task_name} id={ctx.task_id[:8]} attempt={ctx.attempt} queue={ctx.queue}")
    return f"{mailer.send(f'user-{user_id}')} using {db}"


@app.task
async def fails(db: str = Depends(get_db)) -> None:
    raise ValueError("boom")


async def main() -> None:
    async with app, app.worker():
        print(await (await welcome.kiq(1)).get(timeout=5))
        print("\n".join(f"  {line}" for line in log))

        log.clear()
        await (await fails.kiq()).wait_result(timeout=5)
        print("a failing task still closes its session:", log)

    # In tests: swap a provider; it applies to direct calls and to worker runs.
    app.dependency_overrides[get_db] = lambda: "fake-session"
    print("direct call, overridden:", await which_db())
    async with app, app.worker():
        print("worker run, overridden:", await (await which_db.kiq()).get(timeout=5))
    app.dependency_overrides.clear()


@app.task
async def which_db(db: str = Depends(get_db)) -> str:
    return db


if __name__ == "__main__":
    asyncio.run(main())
