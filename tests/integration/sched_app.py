"""The app the scheduler CLI tests run in real processes (broker from the env): a code
schedule every second, and a task that appends each run's schedule, fire time and pid to
the file named by SCHED_APP_TICKS."""

from __future__ import annotations

import os

from conveyor import Context, Conveyor, Depends, every

app = Conveyor()


@app.task(schedule=[every(seconds=1, id="every-second")])
async def record_tick(ctx: Context = Depends()) -> None:
    line = f"{ctx.labels.get('schedule')} {ctx.labels.get('scheduled_for')} {os.getpid()}\n"
    # one short O_APPEND write: lines from several worker processes do not interleave
    with open(os.environ["SCHED_APP_TICKS"], "a") as ticks:  # noqa: ASYNC230
        ticks.write(line)


@app.task
async def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"
