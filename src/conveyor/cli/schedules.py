"""``conveyor schedules APP list|add|remove|pause|resume|run-now``: the schedules in
code and the dynamic ones kept in the broker; and the schedules table that ``conveyor
status`` shows too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from conveyor.app import Conveyor
from conveyor.cli import AppGroup, _run, id_column, import_app, main

if TYPE_CHECKING:
    from rich.table import Table

    from conveyor.scheduler import Schedule
    from conveyor.scheduler.schedule import MissedPolicy

__all__ = ["schedules", "schedules_table"]


def schedules_table(rows: Sequence[tuple[Schedule, list[datetime]]]) -> Table:
    from rich.table import Table

    from conveyor.scheduler import CatchUp

    table = Table(
        id_column("id", [schedule.id for schedule, _ in rows]),
        "task",
        "trigger",
        "missed",
        "paused",
        "origin",
        "next run (UTC)",
        title="Schedules",
    )
    for schedule, runs in rows:
        missed = (
            f"catch_up({timedelta(seconds=schedule.missed.within)})"
            if isinstance(schedule.missed, CatchUp)
            else "skip"
        )
        if schedule.paused:
            upcoming = "-"
        elif not runs:
            upcoming = "never again"
        else:
            upcoming = "\n".join(_fire_time(schedule, run) for run in runs)
        table.add_row(
            schedule.id,
            schedule.task,
            schedule.describe(),
            missed,
            "yes" if schedule.paused else "no",
            schedule.origin,
            upcoming,
        )
    return table


def _fire_time(schedule: Schedule, run: datetime) -> str:
    """``2026-03-09 11:00:00``, plus the wall time in the schedule's zone for a zoned cron."""
    from zoneinfo import ZoneInfo

    from conveyor.scheduler.triggers import Cron

    shown = run.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(schedule.trigger, Cron) and schedule.trigger.tz != "UTC":
        local = run.astimezone(ZoneInfo(schedule.trigger.tz))
        shown += f" ({local:%H:%M:%S %Z})"
    return shown


@main.group(cls=AppGroup)
@click.argument("app")
@click.option(
    "-m",
    "--module",
    "modules",
    multiple=True,
    help="Another module to import, so its tasks register (repeatable; before APP).",
)
@click.pass_context
def schedules(ctx: click.Context, app: str, modules: tuple[str, ...]) -> None:
    """List and change the schedules of APP: those in code and the dynamic ones kept in
    the broker. Running schedulers pick changes up within schedule_refresh seconds."""
    ctx.obj = _AppPath(app, modules)  # imported by the subcommand, so --help needs no app


@dataclass(frozen=True)
class _AppPath:
    path: str
    modules: tuple[str, ...]

    def load(self) -> Conveyor:
        return import_app(self.path, self.modules)


@schedules.command("list")
@click.option(
    "--next",
    "count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many upcoming fire times to show per schedule.",
)
@click.pass_obj
def schedules_list(where: _AppPath, count: int) -> None:
    """Show every schedule with its next fire time(s)."""
    from rich.console import Console

    app = where.load()
    loaded = _run(app, lambda c: c.schedules.load(), read_only=True)
    if not loaded:
        click.echo("no schedules")
        return
    now = app.settings.clock.now()
    rows = [(s, [] if s.paused else s.next_runs(now, count)) for s in loaded]
    Console().print(schedules_table(rows))


@schedules.command("add")
@click.argument("schedule_id")
@click.argument("task")
@click.option("--cron", "cron_expr", default=None, help="Cron expression (5 fields, or 6).")
@click.option("--tz", default=None, help="IANA time zone of --cron (default UTC).")
@click.option(
    "--every", "interval", type=float, default=None, help="Interval in seconds (epoch-aligned)."
)
@click.option("--at", "when", default=None, help="One run at an ISO 8601 time (UTC if naive).")
@click.option("--args", "args_json", default="[]", help="JSON list of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option(
    "--catch-up",
    type=float,
    default=None,
    help="Run missed ticks up to SECONDS late (default: skip them).",
)
@click.option("--paused", is_flag=True, help="Store it paused; 'resume' starts it.")
@click.pass_obj
def schedules_add(
    where: _AppPath,
    schedule_id: str,
    task: str,
    cron_expr: str | None,
    tz: str | None,
    interval: float | None,
    when: str | None,
    args_json: str,
    kwargs_json: str,
    catch_up: float | None,
    paused: bool,
) -> None:
    """Create or replace the dynamic schedule SCHEDULE_ID running TASK (its registered
    name, or the function name if that is unambiguous)."""
    from conveyor.scheduler import catch_up as catch_up_policy

    if sum(option is not None for option in (cron_expr, interval, when)) != 1:
        raise click.UsageError("give exactly one of --cron, --every or --at")
    if tz is not None and cron_expr is None:
        raise click.UsageError("--tz applies to --cron only")
    at_time = None
    if when is not None:
        try:
            at_time = datetime.fromisoformat(when)
        except ValueError:
            raise click.BadParameter(
                f"{when!r} is not an ISO 8601 time such as 2026-07-01T09:30:00+02:00",
                param_hint="--at",
            ) from None
    args = _json_option(args_json, list, "--args", "a JSON list, such as '[1, \"a\"]'")
    kwargs = _json_option(kwargs_json, dict, "--kwargs", "a JSON object, such as '{\"n\": 1}'")
    app = where.load()

    async def add(c: Conveyor) -> Schedule:
        missed: MissedPolicy = "skip" if catch_up is None else catch_up_policy(catch_up)
        try:
            return await c.schedules.add(
                schedule_id,
                _task_name(c, task),
                cron=cron_expr,
                every=interval,
                at=at_time,
                tz=tz or "UTC",
                args=args,
                kwargs=kwargs,
                missed=missed,
                paused=paused,
            )
        except TypeError as exc:  # arguments that do not fit the task
            raise click.ClickException(str(exc)) from exc

    added = _run(app, add)
    runs = added.next_runs(app.settings.clock.now(), 1)
    upcoming = _fire_time(added, runs[0]) if runs else "never (the time has passed)"
    state = "paused; next run would be (UTC)" if added.paused else "next run (UTC)"
    click.echo(f"added {added.id!r}: {added.task} {added.describe()}; {state} {upcoming}")


@schedules.command("remove")
@click.argument("schedule_id")
@click.pass_obj
def schedules_remove(where: _AppPath, schedule_id: str) -> None:
    """Delete a dynamic schedule (code schedules can only be paused)."""
    app = where.load()
    if not _run(app, lambda c: c.schedules.remove(schedule_id)):
        raise click.ClickException(f"no dynamic schedule with id {schedule_id!r}")
    click.echo(f"removed {schedule_id!r}")


@schedules.command("pause")
@click.argument("schedule_id")
@click.pass_obj
def schedules_pause(where: _AppPath, schedule_id: str) -> None:
    """Stop firing a schedule until 'resume'; ticks while paused are skipped."""
    app = where.load()
    _run(app, lambda c: c.schedules.pause(schedule_id))
    click.echo(f"paused {schedule_id!r}")


@schedules.command("resume")
@click.argument("schedule_id")
@click.pass_obj
def schedules_resume(where: _AppPath, schedule_id: str) -> None:
    """Fire a paused schedule again, from its next tick."""
    app = where.load()
    _run(app, lambda c: c.schedules.resume(schedule_id))
    click.echo(f"resumed {schedule_id!r}")


@schedules.command("run-now")
@click.argument("schedule_id")
@click.pass_obj
def schedules_run_now(where: _AppPath, schedule_id: str) -> None:
    """Enqueue a schedule's task with its arguments now, outside its ticks."""
    app = where.load()
    handle = _run(app, lambda c: c.schedules.run_now(schedule_id))
    click.echo(f"enqueued {handle.task_id} for {schedule_id!r}")


def _json_option(raw: str, kind: type, option: str, expected: str) -> Any:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        message = f"not valid JSON ({exc}); give {expected}"
        raise click.BadParameter(message, param_hint=option) from None
    if not isinstance(value, kind):
        raise click.BadParameter(f"{raw!r} is not {expected}", param_hint=option)
    return value


def _task_name(app: Conveyor, name: str) -> str:
    """``name`` as registered: a full name, or a function name that only one task has."""
    if name in app.tasks:
        return name
    matches = [full for full in app.tasks if full.rpartition(":")[2] == name]
    if len(matches) > 1:
        raise click.ClickException(f"task name {name!r} is ambiguous: {', '.join(matches)}")
    return matches[0] if matches else name  # unknown: the library's error names it
