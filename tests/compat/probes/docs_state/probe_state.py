"""Runs each of taskiq's dependency-injection examples as a task on an InMemoryBroker.

The examples only define ``my_task`` and its dependencies; this is what a reader does
with one: register it, send it, read what it printed and returned.
"""

import asyncio
import contextlib
import importlib
import io
import sys

from compat_checks import check
from taskiq import InMemoryBroker

GENERATORS = ["async_generator_deps", "generator_deps"]
CLASSES = ["class_dependency"]
GENERICS = ["generics"]
TREES = ["dependencies_tree"]
NO_CACHE = ["no_cache"]


async def send(name: str, times: int = 1) -> tuple[list[object], str]:
    module = importlib.import_module(name)
    broker = InMemoryBroker()
    task = broker.register_task(module.my_task, task_name=f"{name}:my_task")
    await broker.startup()
    values = []
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            for _ in range(times):
                handle = await task.kiq()
                result = await handle.wait_result(check_interval=0.01, timeout=10)
                assert not result.is_err, f"the task failed: {result.error!r}"
                values.append(result.return_value)
    finally:
        await broker.shutdown()
    return values, out.getvalue()


async def main() -> None:
    for base in GENERATORS:
        for name in (base, base + "_annot"):
            with check(name):
                _, printed = await send(name)
                lines = printed.split()
                assert lines == ["Startup", "VALUE", "Shutdown"], f"printed {printed!r}"
    for base in CLASSES:
        for name in (base, base + "_annot"):
            with check(name):
                _, printed = await send(name)
                assert printed.strip() == "LET'S PRETEND AS THIS IS A CONNECTION", repr(printed)
    for base in GENERICS:
        for name in (base, base + "_annot"):
            with check(name):
                _, printed = await send(name)
                assert "MyClassDep object" in printed, repr(printed)
    for base in TREES:  # common_dep is computed once: d1 + d2 = 2 * cd + 3, always odd
        for name in (base, base + "_annot"):
            with check(name):
                values, _ = await send(name, times=20)
                assert all(isinstance(v, int) and 5 <= v <= 23 and v % 2 for v in values), values
    for base in NO_CACHE:  # use_cache=False: dep2 gets its own common_dep, so sums vary in parity
        for name in (base, base + "_annot"):
            with check(name):
                values, _ = await send(name, times=20)
                assert all(isinstance(v, int) and 4 <= v <= 23 for v in values), values
                assert any(v % 2 == 0 for v in values), f"never an even sum: {values}"


if __name__ == "__main__":
    sys.path.insert(0, ".")
    asyncio.run(main())
