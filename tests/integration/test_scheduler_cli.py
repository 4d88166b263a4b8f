"""`conveyor schedules`, `conveyor worker --with-scheduler` and `conveyor scheduler` as
users run them: real processes on the embedded SQLite broker (a file in tmp_path).

The app is tests/integration/sched_app.py: a code schedule ``every-second`` and a task
that appends ``<schedule id> <scheduled_for> <pid>`` to a file for every run, so a test
can count how often each tick ran.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conveyor import Conveyor, TaskStatus
from tests.conftest import CHECKOUT_PATH, eventually_blocking
from tests.integration.processes import run_cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.sched_app:app"
Start = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CONVEYOR_BROKER_URL": f"sqlite:///{tmp_path / 'sched.db'}",
        "CONVEYOR_FETCH_WAIT": "0.2",
        "CONVEYOR_HEARTBEAT_INTERVAL": "0.5",
        "CONVEYOR_GRACE": "2",
        "CONVEYOR_SCHEDULE_REFRESH": "0.2",
        "CONVEYOR_SCHEDULE_GRACE": "5",
        "SCHED_APP_TICKS": str(tmp_path / "ticks.log"),
        "PYTHONPATH": CHECKOUT_PATH,
        "COLUMNS": "250",  # rich tables: no wrapped cells
    }


@pytest.fixture
def cli(env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(env, *args)

    return run


@pytest.fixture
def start(env: dict[str, str], tmp_path: Path) -> Iterator[Start]:
    """Start ``conveyor <args>`` in its own process group, logging to tmp_path."""
    started: list[subprocess.Popen[bytes]] = []

    def run(*args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{args[0]}-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", *args],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        started.append(process)
        return process

    yield run
    for process in started:
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _ticks(path: Path, schedule_id: str) -> list[float]:
    """Fire times (Unix seconds) of every run of ``schedule_id`` recorded so far."""
    if not path.exists():
        return []
    fires = []
    for line in path.read_text().splitlines():
        schedule, scheduled_for, _pid = line.split()
        if schedule == schedule_id:
            fires.append(datetime.fromisoformat(scheduled_for).timestamp())
    return fires


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    eventually_blocking(condition, timeout=timeout, what=what, every=0.05)


def _children(pid: int) -> dict[int, str]:
    """Live child processes of ``pid``: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()  # after "pid (comm)": state, ppid, ...
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _row(output: str, schedule_id: str) -> list[str]:
    """The cells of the first line of ``schedule_id``'s row in a rich table."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0] == schedule_id:
            return cells
    raise AssertionError(f"no row for {schedule_id!r} in:\n{output}")


def _section(output: str, title: str, end: str) -> str:
    return output[output.index(title) : output.index(end)]


def test_schedules_cli_adds_lists_pauses_resumes_runs_now_and_removes(
    cli: Callable[..., subprocess.CompletedProcess[str]], env: dict[str, str]
) -> None:
    def ok(*args: str) -> str:
        done = cli("schedules", APP, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    added = ok(
        "add", "report", "greet", "--cron", "0 7 * * *", "--tz", "America/New_York",
        "--kwargs", '{"name": "ops"}',
    )  # fmt: skip
    assert "added 'report': tests.integration.sched_app:greet cron 0 7 * * *" in added
    ok("add", "ping", "greet", "--every", "30", "--args", '["a", "?"]', "--catch-up", "120")
    ok(
        "add", "once", "tests.integration.sched_app:greet", "--at", "2031-01-01T09:00:00+01:00",
        "--kwargs", '{"name": "2031"}',
    )  # fmt: skip
    ok("add", "later", "greet", "--every", "60", "--args", '["b"]', "--paused")

    listed = ok("list", "--next", "3")
    assert _row(listed, "every-second")[1:6] == [
        "tests.integration.sched_app:record_tick",
        "every 0:00:01",
        "skip",
        "no",
        "code",
    ]
    report = _row(listed, "report")
    assert report[2:6] == ["cron 0 7 * * * (America/New_York)", "skip", "no", "dynamic"]
    assert _row(listed, "ping")[3] == "catch_up(0:02:00)"
    assert _row(listed, "once")[2:] == [
        "at 2031-01-01T08:00:00+00:00",
        "skip",
        "no",
        "dynamic",
        "2031-01-01 08:00:00",
    ]
    assert _row(listed, "later")[4:] == ["yes", "dynamic", "-"]
    # --next 3: the next three 07:00 in New York, shown in UTC with the local time beside
    zone = ZoneInfo("America/New_York")
    local = datetime.now(zone).replace(hour=7, minute=0, second=0, microsecond=0)
    if local <= datetime.now(zone):
        local += timedelta(days=1)
    for day in range(3):
        run = local + timedelta(days=day)  # same wall time, that day's offset
        utc = run.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        assert f"{utc} (07:00:00 {run.tzname()})" in listed
    ping_runs = re.findall(r"(\d{4}-\d\d-\d\d \d\d:\d\d:(\d\d))\s", listed.split("│ ping")[1])
    assert len(ping_runs) >= 3
    assert all(second in {"00", "30"} for _, second in ping_runs[:3]), "every 30 s, epoch-aligned"

    assert ok("pause", "report") == "paused 'report'\n"
    assert ok("pause", "every-second") == "paused 'every-second'\n"
    listed = ok("list")
    assert _row(listed, "report")[4:] == ["yes", "dynamic", "-"]
    assert _row(listed, "every-second")[4:] == ["yes", "code", "-"]
    assert ok("resume", "report") == "resumed 'report'\n"
    assert ok("resume", "every-second") == "resumed 'every-second'\n"
    ok("resume", "later")
    listed = ok("list")
    for schedule_id in ("report", "every-second", "later"):
        assert _row(listed, schedule_id)[4] == "no"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d .*", _row(listed, schedule_id)[6])

    enqueued = re.fullmatch(r"enqueued (\w+) for 'ping'\n", ok("run-now", "ping"))
    assert enqueued is not None

    async def run_it(task_id: str) -> tuple[TaskStatus, object]:
        from tests.integration import sched_app

        client = Conveyor(env["CONVEYOR_BROKER_URL"], fetch_wait=0.2)
        client.register(sched_app.greet.fn, sched_app.greet.options)
        async with client:
            queued = (await client.handle(task_id).status()).status
            async with client.worker(concurrency=1):
                return queued, await client.handle(task_id).get(timeout=10)

    # run-now enqueues the schedule's task with the schedule's arguments
    assert asyncio.run(run_it(enqueued[1])) == (TaskStatus.QUEUED, "hello a?")

    # -m imports more task modules, as `conveyor worker APP MODULES...` does
    extra = ["-m", "tests.integration.sched_extra", APP]
    unknown = cli("schedules", APP, "add", "purge", "purge", "--every", "60", "--args", "[7]")
    assert "task 'purge' is not registered" in unknown.stderr
    added = cli("schedules", *extra, "add", "purge", "purge", "--every", "60", "--args", "[7]")
    assert added.returncode == 0, added.stderr
    listed = cli("schedules", *extra, "list").stdout
    assert _row(listed, "purge")[1] == "tests.integration.sched_extra:purge"
    assert cli("schedules", "no_such_module:app", "add", "--help").returncode == 0

    assert ok("remove", "ping") == "removed 'ping'\n"
    assert "ping" not in ok("list")
    gone = cli("schedules", APP, "remove", "ping")
    assert gone.returncode == 1
    assert "Error: no dynamic schedule with id 'ping'" in gone.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["add", "x", "greet", "--cron", "0 25 * * *"],
            "bad cron expression '0 25 * * *': field 2 (hour) '25' is not valid; allowed: 0-23",
            id="cron-bad-field",
        ),
        pytest.param(
            ["add", "x", "greet", "--cron", "0 7 * *"], "'0 7 * *': it has 4 fields", id="cron-4"
        ),
        pytest.param(
            ["add", "x", "greet", "--cron", "@daily", "--tz", "Mars/Olympus"],
            "unknown time zone 'Mars/Olympus'",
            id="unknown-zone",
        ),
        pytest.param(
            ["add", "x", "no_such_task", "--every", "5"],
            "task 'no_such_task' is not registered in this app; known: [",
            id="unknown-task",
        ),
        pytest.param(
            ["add", "x", "greet", "--every", "5", "--args", "[1, 2, 3]"],
            "task 'tests.integration.sched_app:greet': too many positional arguments",
            id="too-many-args",
        ),
        pytest.param(
            ["add", "x", "greet", "--every", "5", "--kwargs", '{"nmae": "a"}'],
            "missing a required argument: 'name'",
            id="bad-kwargs",
        ),
        pytest.param(
            ["add", "x", "greet", "--every", "0"],
            "an interval must be a positive duration, not 0.0",
            id="every-0",
        ),
        pytest.param(
            ["add", "x", "greet", "--every", "5", "--catch-up", "0"],
            "catch_up(within=...) must be a positive duration",
            id="catch-up-0",
        ),
        pytest.param(
            ["add", "x", "greet", "--every", "5", "--cron", "@hourly"],
            "give exactly one of --cron, --every or --at",
            id="two-triggers",
        ),
        pytest.param(
            ["add", "x", "greet", "--at", "tomorrow"],
            "'tomorrow' is not an ISO 8601 time",
            id="bad-at",
        ),
        pytest.param(
            ["add", "x", "greet", "--every", "5", "--args", "{"],
            "Invalid value for --args: not valid JSON",
            id="bad-json",
        ),
        pytest.param(
            ["add", "x", "greet", "--every", "5", "--args", '{"a": 1}'],
            "is not a JSON list",
            id="args-not-a-list",
        ),
        pytest.param(
            ["add", "every-second", "greet", "--every", "5"],
            "schedule id 'every-second' is declared in code; choose another id",
            id="code-id",
        ),
        pytest.param(["pause", "nope"], "Error: no schedule with id 'nope'", id="pause-unknown"),
        pytest.param(["resume", "nope"], "Error: no schedule with id 'nope'", id="resume-unknown"),
        pytest.param(["run-now", "nope"], "Error: no schedule with id 'nope'", id="run-unknown"),
        pytest.param(
            ["remove", "every-second"],
            "schedule 'every-second' is declared in code; pause it or remove it there",
            id="remove-code",
        ),
    ],
)
def test_schedules_cli_errors_exit_non_zero_with_the_library_message(
    cli: Callable[..., subprocess.CompletedProcess[str]], args: list[str], message: str
) -> None:
    done = cli("schedules", APP, *args)
    assert done.returncode in (1, 2), done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    if args[0] == "add":
        listed = cli("schedules", APP, "list").stdout
        assert [line for line in listed.splitlines() if "dynamic" in line] == [], (
            "a refused schedule must not be stored"
        )


def test_worker_with_scheduler_enqueues_each_tick_once_restarts_it_and_stops_on_sigterm(
    start: Start, cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    ticks = tmp_path / "ticks.log"
    supervisor = start("worker", APP, "--workers", "2", "--concurrency", "4", "--with-scheduler")
    # a second scheduler beside it: both fire every tick, the broker admits one copy
    other = start("scheduler", APP)
    _wait_for(lambda: len(_ticks(ticks, "every-second")) >= 3, 15, "three ticks")

    # the children are forked from the supervisor: its log says which is which
    log = tmp_path / "worker-0.log"
    kinds = {pid: kind for kind, pid in re.findall(r"started (\w+) process (\d+)", log.read_text())}
    children = _children(supervisor.pid)
    assert Counter(kinds.values()) == {"worker": 2, "scheduler": 1}, log.read_text()
    assert set(map(int, kinds)) == set(children), children
    (scheduler_pid,) = [int(pid) for pid, kind in kinds.items() if kind == "scheduler"]

    # both schedulers heartbeat; under load the second may not have beaten yet
    def both_listed() -> bool:
        schedulers = _section(cli("status", APP).stdout, "Schedulers", "Schedules")
        return f"-{scheduler_pid}-" in schedulers and f"-{other.pid}-" in schedulers

    _wait_for(both_listed, 10, "both schedulers in conveyor status")
    status = cli("status", APP)
    assert status.returncode == 0, status.stderr
    assert "scheduler-" not in _section(status.stdout, "Workers", "Schedulers")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", _row(status.stdout, "every-second")[6])

    # a crashed scheduler is restarted; its first look re-fires the latest tick (within
    # schedule_grace), which the broker must refuse as a duplicate
    os.kill(scheduler_pid, signal.SIGKILL)
    started = re.compile(rb"scheduler scheduler-\S+-(\d+)-\w+ started")
    _wait_for(lambda: len(started.findall(log.read_bytes())) == 2, 10, "a new scheduler process")
    restarted = int(started.findall(log.read_bytes())[1])
    assert restarted in _children(supervisor.pid)

    # the new scheduler has made its first pass before the other one stops: it heartbeats
    # in that pass, right before it publishes, and a tick later the publish is long done
    def restarted_listed() -> bool:
        schedulers = _section(cli("status", APP).stdout, "Schedulers", "Schedules")
        return f"-{restarted}-" in schedulers

    _wait_for(restarted_listed, 10, "the new scheduler's heartbeat")
    seen = len(_ticks(ticks, "every-second"))
    _wait_for(lambda: len(_ticks(ticks, "every-second")) > seen, 10, "a tick after that")
    other.send_signal(signal.SIGTERM)
    assert other.wait(timeout=10) == 0
    count = len(_ticks(ticks, "every-second"))
    _wait_for(lambda: len(_ticks(ticks, "every-second")) >= count + 3, 10, "ticks after restart")

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=15) == 0
    _wait_for(lambda: not _group_alive(supervisor.pid), 5, "every child to exit")

    fires = _ticks(ticks, "every-second")
    twice = [f for f, n in Counter(fires).items() if n > 1]
    assert not twice, f"ticks run more than once: {twice}"
    ordered = sorted(fires)
    assert all(b - a == 1.0 for a, b in itertools.pairwise(ordered)), (
        "with a second scheduler running, no tick is skipped while one restarts"
    )
    assert re.search(
        rf"scheduler {scheduler_pid} exited with code -9; restarting in 0.5s", log.read_text()
    )


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["scheduler", APP, "--skip-first-run"], id="scheduler"),
        pytest.param(["worker", APP, "--with-scheduler", "--skip-first-run"], id="worker"),
    ],
)
def test_skip_first_run_fires_nothing_from_before_the_start_and_a_plain_scheduler_does(
    start: Start,
    cli: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
    command: list[str],
) -> None:
    ticks = tmp_path / "ticks.log"
    start("worker", APP, "--concurrency", "4")  # runs what the schedulers enqueue
    added = cli(
        "schedules", APP, "add", "backlog", "record_tick", "--every", "1", "--catch-up", "60"
    )
    assert added.returncode == 0, added.stderr
    created = time.time()
    # sleep: no scheduler for a while, so that ticks pile up (all within the 60 s catch-up
    # window); the schedule's time is the processes' real time, which no test can move
    time.sleep(2.5)

    first_start = time.time()
    skipping = start(*command)
    _wait_for(lambda: len(_ticks(ticks, "backlog")) >= 2, 15, "ticks after the start")
    skipping.send_signal(signal.SIGTERM)
    assert skipping.wait(timeout=10) == 0
    fired = _ticks(ticks, "backlog")
    assert min(fired) > first_start, "--skip-first-run fired a tick due before it started"

    # the same backlog is still within its window: a scheduler without the flag runs it
    plain = start("scheduler", APP)
    _wait_for(lambda: min(_ticks(ticks, "backlog")) < first_start, 15, "the backlog")

    def backlog_filled() -> bool:  # the worker has run every tick enqueued so far
        fires = sorted(set(_ticks(ticks, "backlog")))  # a tick run twice fails below
        return all(b - a == 1.0 for a, b in itertools.pairwise(fires))

    _wait_for(backlog_filled, 15, "every missed tick to run")
    plain.send_signal(signal.SIGTERM)
    assert plain.wait(timeout=10) == 0

    fires = sorted(_ticks(ticks, "backlog"))
    assert len(fires) == len(set(fires)), f"a tick ran twice: {fires}"
    assert created - 1 < fires[0] <= created + 1.5, "the first tick after the schedule was added"
    assert all(b - a == 1.0 for a, b in itertools.pairwise(fires)), (
        f"catch_up must fill every missed tick: {fires}"
    )
