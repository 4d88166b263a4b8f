"""``runner="process"`` tasks for tests/integration/test_process_tasks.py. The pool
processes import this module by name to find them."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from conveyor import Conveyor

app = Conveyor("memory://", environ={})


@dataclass
class Point:
    x: int
    y: int


@app.task(runner="process")
def describe(point: Point) -> dict[str, object]:
    """Where it ran, and what its argument arrived as."""
    return {"pid": os.getpid(), "sum": point.x + point.y, "type": type(point).__name__}


@app.task(runner="process")
def rendezvous(folder: str, count: int) -> int:
    """Leaves a file in ``folder`` and waits until ``count`` calls have (so that many run
    at once); its pid, or -1 when they never did."""
    Path(folder, str(os.getpid())).touch()
    deadline = time.monotonic() + 20
    while len(os.listdir(folder)) < count:
        if time.monotonic() > deadline:
            return -1
        time.sleep(0.01)  # sleep: polling another process's file
    return os.getpid()


@app.task(runner="process")
def spin(pid_file: str) -> None:
    """Writes its pid, then burns CPU for ever: only killing its process ends it."""
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        pass


class Flaky(Exception):
    pass


@app.task(runner="process", retries=1, retry_on=Flaky, backoff=0)
def flaky(marker: str) -> str:
    """Raises :class:`Flaky` the first time: retry_on must still see its class."""
    path = Path(marker)
    if not path.exists():
        path.write_text("1")
        raise Flaky("the first attempt fails")
    return "second attempt"


class Picky(Exception):
    """Pickles, but cannot be rebuilt from its pickle (its __init__ takes two args)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


@app.task(runner="process")
def picky() -> None:
    raise Picky(1, 2)


@app.task(runner="process")
def exits() -> None:
    os._exit(3)


@app.task(runner="process")
def returns_an_object() -> object:
    return object()
