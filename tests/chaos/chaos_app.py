"""The app chaos workers run: one task, ``probe``, that writes the ledger around user code.

Workers import it as ``tests.chaos.chaos_app:app``; the broker comes from
``CONVEYOR_BROKER_URL`` and the ledger directory from ``CONVEYOR_CHAOS_LEDGER``.

Behaviours (``ms`` is milliseconds):

- ``sleep``: wait ``ms`` (``asyncio.sleep``): work the faults interrupt;
- ``long``: the same, for a task meant to outlive many leases;
- ``raise``: raise ``RuntimeError`` (retried, then dead-lettered);
- ``exit``: ``os._exit(137)``: kills its worker process, like a segfault;
- ``block_loop``: block the event-loop thread ``ms`` (``time.sleep``).
"""

from __future__ import annotations

import asyncio
import os
import time

from conveyor import Context, Conveyor, Depends
from tests.chaos.ledger import worker_ledger

app = Conveyor(os.environ.get("CONVEYOR_BROKER_URL", "memory://"))

PROBE_RETRIES = 2  # max_attempts = 3


@app.task(retries=PROBE_RETRIES)
async def probe(
    task_id: str, behavior: str = "sleep", ms: int = 0, ctx: Context = Depends()
) -> dict[str, int]:
    """Record exec_start, behave, record exec_end; returns who ran it."""
    ledger = worker_ledger()
    ledger.exec_start(task_id, ctx.attempt)
    outcome = "error"
    try:
        if behavior in ("sleep", "long"):
            await asyncio.sleep(ms / 1000)  # sleep: the task's work, which faults interrupt
        elif behavior == "raise":
            raise RuntimeError(f"probe {task_id} fails on purpose")
        elif behavior == "exit":
            ledger.fault_start("self_exit", os.getpid())
            os._exit(137)
        elif behavior == "block_loop":
            time.sleep(ms / 1000)  # noqa: ASYNC251 - sleep: blocking the event loop is the point
        else:
            raise ValueError(f"unknown probe behaviour {behavior!r}")
        outcome = "ok"
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        ledger.exec_end(task_id, outcome)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@app.task(retries=PROBE_RETRIES)
async def chord_member(index: int, ms: int, ctx: Context = Depends()) -> int:
    """A member of a chaos chord: records its run in the ledger under its own task id."""
    ledger = worker_ledger()
    ledger.exec_start(ctx.task_id, ctx.attempt)
    outcome = "error"
    try:
        await asyncio.sleep(ms / 1000)  # sleep: the member's work, which faults interrupt
        outcome = "ok"
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        ledger.exec_end(ctx.task_id, outcome)
    return index


@app.task(retries=PROBE_RETRIES)
async def chord_callback(values: list[int], ctx: Context = Depends()) -> list[int]:
    """A chaos chord's callback: records its run (it must run once, or again only after a
    fault on the process that ran it first)."""
    ledger = worker_ledger()
    ledger.exec_start(ctx.task_id, ctx.attempt)
    ledger.exec_end(ctx.task_id, "ok")
    return values
