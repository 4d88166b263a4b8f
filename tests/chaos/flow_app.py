"""The app of the flow-control chaos tests (test_flow_faults.py): a rate-limited and a
concurrency-limited task, each writing the ledger around its work.

Workers import it as ``tests.chaos.flow_app:app``; the broker comes from
``CONVEYOR_BROKER_URL`` and the ledger directory from ``CONVEYOR_CHAOS_LEDGER``. It is
apart from chaos_app because a worker refuses to start tasks with limits on a broker
without flow control (RabbitMQ), where chaos_app's tests run too.
"""

from __future__ import annotations

import asyncio
import os

from conveyor import Context, Conveyor, Depends
from tests.chaos.ledger import worker_ledger

app = Conveyor(os.environ.get("CONVEYOR_BROKER_URL", "memory://"))

RATE = 20  # starts a second, and the bucket's size
PERMITS = 2


@app.task(rate_limit=f"{RATE}/s", retries=2)
async def limited(ms: int, ctx: Context = Depends()) -> None:
    """Record its start and end around ``ms`` of work."""
    ledger = worker_ledger()
    ledger.exec_start(ctx.task_id, ctx.attempt)
    outcome = "error"
    try:
        await asyncio.sleep(ms / 1000)  # sleep: the task's work
        outcome = "ok"
    finally:
        ledger.exec_end(ctx.task_id, outcome)


@app.task(concurrency=PERMITS, retries=2)
async def narrow(ms: int, ctx: Context = Depends()) -> None:
    """Record its start and end around ``ms`` of work, under a limit of 2 at once."""
    ledger = worker_ledger()
    ledger.exec_start(ctx.task_id, ctx.attempt)
    outcome = "error"
    try:
        await asyncio.sleep(ms / 1000)  # sleep: the task's work, which a kill interrupts
        outcome = "ok"
    finally:
        ledger.exec_end(ctx.task_id, outcome)
