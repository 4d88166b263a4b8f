"""Triggers and schedule entries: cron in time zones (daylight saving both ways), intervals,
one-off runs, the taskiq dict form, and the errors bad input gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from conveyor import Conveyor, at, catch_up, cron, every
from conveyor.scheduler import InvalidSchedule
from conveyor.scheduler.schedule import decode_schedule, encode_schedule, schedule_from_entry
from conveyor.scheduler.triggers import At, Cron, Every

NY = ZoneInfo("America/New_York")


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> float:
    return datetime(*args, tzinfo=zone, fold=fold).timestamp()  # type: ignore[misc]


def walk(trigger: Cron | Every | At, start: float, until: float) -> list[float]:
    out, cursor = [], start
    while True:
        fire = trigger.next_after(cursor)
        if fire is None or fire > until:
            return out
        assert fire > cursor, "a trigger must never go backwards"
        out.append(fire)
        cursor = fire


def test_cron_five_fields_in_utc() -> None:
    trigger = Cron("*/15 * * * *")
    assert trigger.next_after(utc(2026, 1, 1, 0, 0)) == utc(2026, 1, 1, 0, 15)
    assert trigger.next_after(utc(2026, 1, 1, 0, 14, 59)) == utc(2026, 1, 1, 0, 15)


def test_cron_six_fields_put_seconds_first() -> None:
    trigger = Cron("*/20 * * * * *")
    start = utc(2026, 1, 1, 0, 0)
    assert walk(trigger, start, start + 60) == [start + 20, start + 40, start + 60]


def test_cron_nicknames() -> None:
    assert Cron("@hourly").next_after(utc(2026, 1, 1, 5, 30)) == utc(2026, 1, 1, 6, 0)
    assert Cron("@daily").next_after(utc(2026, 1, 1, 5, 30)) == utc(2026, 1, 2, 0, 0)


def test_cron_in_a_time_zone_follows_local_time() -> None:
    trigger = Cron("0 7 * * *", "America/New_York")
    assert trigger.next_after(utc(2026, 1, 10)) == utc(2026, 1, 10, 12, 0)  # EST, UTC-5
    assert trigger.next_after(utc(2026, 7, 10)) == utc(2026, 7, 10, 11, 0)  # EDT, UTC-4


def test_spring_forward_runs_a_skipped_time_once_when_the_clock_jumps() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT: 02:30 does not exist that day
    fires = walk(Cron("30 2 * * *", "America/New_York"), utc(2026, 3, 6), utc(2026, 3, 10))
    assert fires == [
        local(NY, 2026, 3, 6, 2, 30),
        local(NY, 2026, 3, 7, 2, 30),
        local(NY, 2026, 3, 8, 3, 0),
        local(NY, 2026, 3, 9, 2, 30),
    ]


def test_spring_forward_hourly_has_no_gap_and_no_double() -> None:
    fires = walk(Cron("0 * * * *", "America/New_York"), utc(2026, 3, 8, 5, 30), utc(2026, 3, 8, 9))
    # 01:00 EST, then 03:00 EDT: one hour of elapsed time apart
    assert fires == [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8), utc(2026, 3, 8, 9)]


def test_fall_back_runs_a_fixed_hour_once() -> None:
    # 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice; the job runs once
    fires = walk(Cron("30 1 * * *", "America/New_York"), utc(2026, 10, 31), utc(2026, 11, 3))
    assert fires == [
        local(NY, 2026, 10, 31, 1, 30),
        local(NY, 2026, 11, 1, 1, 30, fold=0),
        local(NY, 2026, 11, 2, 1, 30),
    ]


def test_fall_back_from_inside_the_repeated_hour_does_not_go_backwards() -> None:
    trigger = Cron("45 1 * * *", "America/New_York")
    inside_second_fold = local(NY, 2026, 11, 1, 1, 40, fold=1)
    assert trigger.next_after(inside_second_fold) == local(NY, 2026, 11, 2, 1, 45)


def test_fall_back_hourly_runs_both_real_hours() -> None:
    hourly = Cron("0 * * * *", "America/New_York")
    fires = walk(hourly, utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 7))
    assert fires == [utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)]


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Berlin", "Australia/Sydney"])
@pytest.mark.parametrize("clock", ["30 1 * * *", "30 2 * * *", "0 3 * * *"])
def test_a_daily_job_runs_once_every_local_day_for_a_year(zone: str, clock: str) -> None:
    tz = ZoneInfo(zone)
    start = datetime(2026, 1, 1, tzinfo=tz).timestamp()
    end = datetime(2027, 1, 1, tzinfo=tz).timestamp()
    fires = walk(Cron(clock, zone), start, end)
    days = [datetime.fromtimestamp(f, tz).date() for f in fires]
    assert len(days) == 365
    assert len(set(days)) == 365


def test_every_is_aligned_to_the_epoch_or_its_start() -> None:
    quarter = every(minutes=15).trigger
    assert quarter.next_after(utc(2026, 1, 1, 10, 7)) == utc(2026, 1, 1, 10, 15)
    assert quarter.next_after(utc(2026, 1, 1, 10, 15)) == utc(2026, 1, 1, 10, 30)
    shifted = every(timedelta(hours=1), start=datetime(2026, 1, 1, 0, 20, tzinfo=UTC)).trigger
    assert shifted.next_after(utc(2026, 1, 1, 10, 7)) == utc(2026, 1, 1, 10, 20)
    assert every(0.5).trigger.next_after(10.2) == 10.5


def test_at_fires_once() -> None:
    trigger = at(datetime(2026, 12, 1, 9, 0)).trigger  # naive: UTC
    assert trigger.next_after(utc(2026, 11, 1)) == utc(2026, 12, 1, 9)
    assert trigger.next_after(utc(2026, 12, 1, 9)) is None


@pytest.mark.parametrize(
    ("expr", "named"),
    [
        ("0 25 * * *", "field 2 (hour) '25'"),
        ("61 * * * *", "field 1 (minute) '61'"),
        ("0 0 32 * *", "field 3 (day-of-month) '32'"),
        ("0 0 * 13 *", "field 4 (month) '13'"),
        ("0 0 * * 9", "field 5 (day-of-week) '9'"),
        ("61 * * * * *", "field 1 (second) '61'"),
        ("* * * *", "it has 4 fields"),
        ("every hour", "it has 2 fields"),
    ],
)
def test_a_bad_cron_expression_names_the_field(expr: str, named: str) -> None:
    with pytest.raises(InvalidSchedule, match="bad cron expression") as caught:
        cron(expr)
    assert named in str(caught.value)


def test_bad_zone_interval_and_window_are_refused() -> None:
    with pytest.raises(InvalidSchedule, match="unknown time zone 'Mars/Olympus'"):
        cron("0 * * * *", tz="Mars/Olympus")
    with pytest.raises(InvalidSchedule, match="positive duration"):
        every(seconds=0)
    with pytest.raises(InvalidSchedule, match="positive duration"):
        catch_up(within=-1)


def test_taskiq_dict_entries() -> None:
    plain = schedule_from_entry({"cron": "*/15 * * * *", "args": [1], "kwargs": {"a": 2}})
    assert plain.trigger == Cron("*/15 * * * *") and plain.args == [1]
    assert plain.kwargs == {"a": 2}
    zoned = schedule_from_entry({"cron": "0 7 * * *", "cron_offset": "Europe/Berlin"})
    assert zoned.trigger == Cron("0 7 * * *", "Europe/Berlin")
    offset = schedule_from_entry({"cron": "0 7 * * *", "cron_offset": timedelta(hours=2)})
    assert offset.trigger == Cron("0 7 * * *", "Etc/GMT-2")
    assert offset.next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 5)
    once = schedule_from_entry({"time": datetime(2026, 12, 1, tzinfo=UTC)})
    assert once.trigger == At(utc(2026, 12, 1))
    assert schedule_from_entry({"interval": 30}).trigger == Every(30.0)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"cron": "* * * * *", "crontab": "x"}, "unknown key(s) crontab"),
        ({"args": [1]}, "exactly one of 'cron', 'interval' or 'time'"),
        ({"cron": "* * * * *", "interval": 5}, "exactly one of"),
        ({"time": "tomorrow"}, "'time' must be a datetime"),
        ({"cron": "0 99 * * *"}, "field 2 (hour)"),
    ],
)
def test_bad_dict_entries_are_named(entry: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        schedule_from_entry(entry)
    assert problem in str(caught.value)


def test_schedules_round_trip_through_the_store_codec() -> None:
    original = cron("0 7 * * *", "America/New_York", args=[1], missed=catch_up(600)).bind("t")
    assert decode_schedule(encode_schedule(original)) == original
    with pytest.raises(InvalidSchedule, match="cannot be read"):
        decode_schedule(b'{"trigger": {"type": "cron", "expr": "0 99 * * *"}}')


def test_task_schedules_are_validated_and_named_at_definition() -> None:
    app = Conveyor("memory://", environ={})

    @app.task(schedule=[cron("0 2 * * *"), cron("0 2 * * *", args=[5]), {"cron": "@hourly"}])
    async def cleanup(limit: int = 10) -> None: ...

    ids = [s.id for s in cleanup.options.schedule]
    assert ids == [
        f"{cleanup.name}/cron:0 2 * * *",
        f"{cleanup.name}/cron:0 2 * * *#2",
        f"{cleanup.name}/cron:@hourly",
    ]
    with pytest.raises(InvalidSchedule, match="field 1 \\(minute\\)"):

        @app.task(schedule=[cron("99 * * * *")])
        async def broken() -> None: ...

    with pytest.raises(TypeError, match="report"):

        @app.task(schedule=[cron("0 * * * *", args=["a", "b", "c"])])
        async def report(day: int) -> None: ...
