"""A call the worker could not run fails in the caller, naming the argument."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import pytest
from pydantic import BaseModel

from conveyor import Conveyor, TaskStatus
from tests.conftest import fast_app


@dataclass
class Point:
    x: int
    y: int


class Order(BaseModel):
    sku: str
    quantity: int


def _app() -> Conveyor:
    app = fast_app()

    @app.task(name="total")
    async def total(values: list[int]) -> int:
        return sum(values)

    @app.task(name="plot")
    async def plot(point: Point, at: datetime | None = None) -> int:
        return point.x + point.y

    @app.task(name="order")
    async def order(item: Order, tags: dict[str, int] | None = None) -> int:
        return item.quantity

    return app


@pytest.mark.parametrize(
    ("task", "args", "match"),
    [
        ("total", (["a"],), r"argument 'values' does not fit its annotation list\[int\]"),
        ("total", ([1, "2"],), r"Expected `int`, got `str` - at `\$\[1\]`"),
        ("plot", ({"x": 1},), r"argument 'point' does not fit its annotation .*Point"),
        ("plot", (Point(1, 2), "yesterday"), r"argument 'at'"),
        ("order", ({"sku": "a", "quantity": "many"},), r"argument 'item'"),
        ("order", (Order(sku="a", quantity=1), {"a": "b"}), r"argument 'tags'"),
    ],
)
async def test_a_wrongly_typed_argument_fails_at_enqueue_naming_it(
    task: str, args: tuple[object, ...], match: str
) -> None:
    app = _app()
    async with app:
        with pytest.raises(TypeError, match=match):
            await app.tasks[task].kiq(*args)
        assert sum(depth.ready for depth in await app.broker.queue_depths()) == 0


async def test_arguments_the_worker_converts_are_accepted_and_converted() -> None:
    app = _app()
    async with app, app.worker():
        assert await (await app.tasks["total"].kiq([1, 2, 3])).get(timeout=5) == 6
        plotted = await app.tasks["plot"].kiq({"x": 1, "y": 2}, "2026-01-01T00:00:00")
        assert await plotted.get(timeout=5) == 3
        ordered = await app.tasks["order"].kiq(Order(sku="a", quantity=4), {"a": 1})
        result = await ordered.wait_result(timeout=5)
    assert result.status is TaskStatus.SUCCEEDED
    assert result.return_value == 4


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("1", "x"), {}, "argument 'n' must be int, got str"),  # positional only
        ((1, 2), {}, "argument 'name' must be str, got int"),
        ((1, "x", 2.5), {}, "argument 'scale' must be int, got float"),  # with the default's
        ((1,), {"name": 2}, "argument 'name' must be str, got int"),  # through bind
        ((1,), {}, "missing a required argument: 'name'"),
        ((1, "x", 2, 3), {}, "too many positional arguments"),
        ((1, "x"), {"n": 2}, "multiple values for argument 'n'"),
    ],
)
async def test_every_call_form_is_checked_the_same_way(
    args: tuple[object, ...], kwargs: dict[str, object], match: str
) -> None:
    app = fast_app()

    @app.task(name="typed")
    async def typed(n: int, name: str, scale: int = 1) -> None: ...

    async with app:
        with pytest.raises(TypeError, match=f"task 'typed': {match}"):
            await typed.kiq(*args, **kwargs)  # type: ignore[arg-type]
        await typed.kiq(1, "x")
        await typed.kiq(1, "x", 3)
        await typed.kiq(n=1, name="x")
        assert sum(depth.ready for depth in await app.broker.queue_depths()) == 3


def test_generated_task_ids_are_random_uuid4_hex() -> None:
    import uuid

    from conveyor.message import new_task_id

    ids = {new_task_id() for _ in range(1000)}
    assert len(ids) == 1000
    for task_id in ids:
        parsed = uuid.UUID(task_id)
        assert (parsed.hex, parsed.version, parsed.variant) == (task_id, 4, uuid.RFC_4122)


def test_a_forked_child_never_hands_out_its_parents_drawn_task_ids() -> None:
    """Ids are drawn 256 at a time; a child forked with some left over draws its own."""
    import os

    from conveyor.message import new_task_id

    new_task_id()  # the parent now holds 255 drawn ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, to the parent
        os.close(read)
        os.write(write, "".join(new_task_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    child = {text[i : i + 32] for i in range(0, len(text), 32)}
    parent = {new_task_id() for _ in range(255)}
    assert len(child) == 10 and not child & parent


async def test_paths_and_addresses_travel_as_text_and_come_back_typed() -> None:
    app = fast_app()

    @app.task(name="where")
    async def where(base: Path, host: ipaddress.IPv4Address) -> Path:
        assert isinstance(base, Path) and isinstance(host, ipaddress.IPv4Address)
        return base / str(host)

    @app.task(name="untyped")
    async def untyped() -> object:
        return PurePosixPath("/srv/out.png")  # as taskiq stores it: its text

    async with app, app.worker():
        handle = await where.kiq(Path("/srv"), ipaddress.IPv4Address("10.0.0.1"))
        assert await handle.get(timeout=10) == Path("/srv/10.0.0.1")
        assert await (await untyped.kiq()).get(timeout=10) == "/srv/out.png"
        with pytest.raises(TypeError, match="argument 'host' does not fit its annotation"):
            await where.kiq("/srv", "999.0.0.1")
