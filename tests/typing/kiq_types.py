"""Checked by mypy (see pyproject [tool.mypy] files): kiq is typed with ParamSpec."""

from __future__ import annotations

from typing import assert_type

from conveyor import Conveyor, Result, TaskHandle

app = Conveyor("memory://")


@app.task
async def embed(chunk_id: str, text: str) -> list[float]:
    return [float(len(text))]


@app.task(retries=2)
def resize(path: str, width: int = 100) -> str:
    return path


async def usage() -> None:
    handle = await embed.kiq("1", "hello")
    assert_type(handle, TaskHandle[list[float]])
    assert_type(await handle.get(timeout=5), list[float])
    assert_type(await handle.wait_result(timeout=5), Result[list[float]])
    assert_type(await resize.kiq("a.png", width=10), TaskHandle[str])
    assert_type(await resize.with_options(delay=5).kiq("a.png"), TaskHandle[str])
    assert_type(resize.kiq_sync("a.png"), TaskHandle[str])
    assert_type(await embed("1", "direct"), list[float])


def sync_usage() -> None:
    assert_type(resize("a.png", width=10), str)
    assert_type(resize.kiq_sync("a.png").status_sync().status.is_terminal, bool)
