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


@app.task
async def build_index(vectors: list[list[float]]) -> int:
    return len(vectors)


async def workflow_usage() -> None:
    from conveyor import GroupHandle, WorkflowHandle, chain, chord, group

    flow = await chain(embed.s("1", "a"), build_index.si([])).kiq()
    assert_type(flow, WorkflowHandle[int])
    assert_type(await flow.get(timeout=5), int)
    assert_type(await (embed.s("1", "a") | build_index.si([])).kiq(), WorkflowHandle[int])
    members = await group(embed.s(str(i), "x") for i in range(3)).kiq()
    assert_type(members, GroupHandle[list[float]])
    assert_type(await members.wait_results(timeout=5), list[list[float]])
    fan_in = await chord((embed.s(str(i), "x") for i in range(3)), build_index.s()).kiq()
    assert_type(fan_in, WorkflowHandle[int])
    assert_type(await embed.s("1", "a").kiq(), TaskHandle[list[float]])
