"""NOT checked by the main mypy run: tests/typing/test_typing.py runs mypy on this file and
expects every marked line to be an error."""

from __future__ import annotations

from conveyor import Conveyor

app = Conveyor("memory://")


@app.task
async def embed(chunk_id: str, text: str) -> list[float]:
    return []


async def misuse() -> None:
    await embed.kiq(1, "hello")  # E: arg-type
    await embed.kiq("1")  # E: call-arg
    await embed.kiq("1", "x", extra=True)  # E: call-arg
    await embed.with_options(delay=1).kiq("1", 2)  # E: arg-type
    embed.kiq_sync(None, "x")  # E: arg-type
    value: str = await (await embed.kiq("1", "x")).get()  # E: assignment
