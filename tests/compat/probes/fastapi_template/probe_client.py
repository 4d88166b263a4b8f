"""The API process's side: send the probe tasks through the template's broker (its
ListQueueBroker and ``AsyncResultBackend[Any]``) and check what they did."""

import asyncio
import uuid

from compat_checks import check
from probe_tasks import add_dummy, remember
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from tkq_app.db.models.dummy_model import DummyModel
from tkq_app.settings import settings
from tkq_app.tkq import broker


async def main() -> None:
    await broker.startup()
    key, value = f"compat-{uuid.uuid4().hex}", uuid.uuid4().hex
    with check("task_with_redis_dependency"):
        handle = await remember.kiq(key, value)
        result = await handle.wait_result(timeout=30)
        assert not result.is_err, result.error
        redis = Redis.from_url(str(settings.redis_url))
        stored = await redis.get(key)
        await redis.aclose()
        assert stored == value.encode(), stored
    with check("result_backend_returns_value"):
        handle = await remember.kiq(key, "again")
        result = await handle.wait_result(timeout=30)
        assert result.return_value == "again", result
    name = f"dummy-{uuid.uuid4().hex[:8]}"
    with check("task_with_db_session_dependency"):
        handle = await add_dummy.kiq(name)
        result = await handle.wait_result(timeout=30)
        assert not result.is_err, result.error
        assert result.return_value == 1, result
        engine = create_async_engine(str(settings.db_url))
        async with engine.connect() as conn:
            rows = (await conn.execute(select(DummyModel).where(DummyModel.name == name))).all()
        await engine.dispose()
        assert len(rows) == 1, rows
    await broker.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
