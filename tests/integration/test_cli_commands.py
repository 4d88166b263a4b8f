"""The `conveyor` commands as a user types them: argument order, bad option values, exit
codes, what a prompt says, tables at 80 columns, help text, import errors, and a SQLite
database that is not where the command looks for it. Real processes on SQLite files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conveyor import Conveyor
from conveyor.brokers.base import WorkerInfo
from conveyor.cli import main
from tests.conftest import CHECKOUT_PATH
from tests.integration.processes import ROOT

pytestmark = pytest.mark.slow

APP = "tests.integration.cli_app:app"
LONG_ID = "0123456789abcdef0123456789abcdef"  # a task id: 32 hex characters

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return {
        **environ,
        "CONVEYOR_BROKER_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "CONVEYOR_FETCH_WAIT": "0.2",
        "PYTHONPATH": CHECKOUT_PATH,
        "COLUMNS": "80",
    }


@pytest.fixture
def cli(env: dict[str, str]) -> Cli:
    def run(
        *args: str, cwd: Path = ROOT, stdin: str = "", **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "conveyor.cli", *args],
            env={**env, **extra},
            cwd=cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


def _dead_letters(env: dict[str, str], count: int) -> list[str]:
    """Run ``always_fails`` ``count`` times in a worker in this process: its dead letters."""
    from tests.integration import cli_app

    app = Conveyor(env["CONVEYOR_BROKER_URL"], fetch_wait=0.2)
    task = app.register(cli_app.always_fails.fn, cli_app.always_fails.options)

    async def fail() -> list[str]:
        async with app, app.worker(concurrency=4):
            handles = [await task.kiq() for _ in range(count)]
            for handle in handles:
                await handle.wait_result(timeout=30)
            return [h.task_id for h in handles]

    return asyncio.run(fail())


# -- argument order ----------------------------------------------------------------


def test_dlq_takes_the_app_before_or_after_the_subcommand(cli: Cli, env: dict[str, str]) -> None:
    (task_id,) = _dead_letters(env, 1)
    natural = cli("dlq", "list", APP)
    assert natural.returncode == 0, natural.stderr
    assert task_id in natural.stdout
    assert cli("dlq", APP, "list").stdout == natural.stdout
    shown = cli("dlq", "show", APP, task_id)
    assert shown.returncode == 0, shown.stderr
    assert "always_fails" in shown.stdout
    for args in (["--limit", "1", APP], [APP, "--limit", "1"], ["--limit=1", APP]):
        limited = cli("dlq", "list", *args)
        assert limited.returncode == 0, limited.stderr
        assert limited.stdout == natural.stdout


def test_schedules_take_the_app_before_or_after_the_subcommand(cli: Cli) -> None:
    natural = cli("schedules", "list", APP)
    assert natural.returncode == 0, natural.stderr
    assert cli("schedules", APP, "list").stdout == natural.stdout
    assert cli("schedules", "list", "-m", "tests.integration.cli_app", APP).returncode == 0


def test_a_subcommand_without_its_app_says_which_order_to_use(cli: Cli) -> None:
    done = cli("dlq", "list")
    assert done.returncode == 2
    assert "conveyor dlq APP list" in done.stderr
    assert "Traceback" not in done.stderr


# -- option values and exit codes --------------------------------------------------


@pytest.mark.parametrize("command", ["worker", "scheduler", "dashboard"])
def test_log_level_lists_its_choices(command: str) -> None:
    result = CliRunner().invoke(main, [command, "no_such_module:app", "--log-level", "verbose"])
    assert result.exit_code == 2
    assert "Invalid value for '--log-level': 'verbose' is not one of" in result.output
    for level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        assert level.lower() in result.output.lower()
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["worker", "scheduler", "dashboard"])
def test_log_level_is_case_insensitive(cli: Cli, command: str) -> None:
    done = cli(command, "no_such_module:app", "--log-level", "debug")
    assert done.returncode == 2
    assert "Invalid value" not in done.stderr
    assert "cannot import 'no_such_module'" in done.stderr


def test_requeue_of_an_unknown_id_exits_1_and_names_it(cli: Cli, env: dict[str, str]) -> None:
    (task_id,) = _dead_letters(env, 1)
    done = cli("dlq", APP, "requeue", task_id, "no-such-id")
    assert done.returncode == 1
    assert "requeued 1 message(s)" in done.stdout
    assert "no dead letter with id 'no-such-id'" in done.stderr
    again = cli("dlq", APP, "requeue", task_id)
    assert again.returncode == 1, "already requeued: no longer in the dead-letter queue"


def test_purge_says_how_many_it_will_delete(cli: Cli, env: dict[str, str]) -> None:
    _dead_letters(env, 3)
    refused = cli("dlq", APP, "purge", stdin="n\n")
    assert refused.returncode == 1
    assert "delete 3 dead letter(s) for good?" in refused.stdout
    assert len(cli("dlq", APP, "list").stdout.splitlines()) == 3
    of_other_queue = cli("dlq", APP, "purge", "--queue", "other", "--yes")
    assert of_other_queue.returncode == 0
    assert "no dead letters in queue 'other'" in of_other_queue.stdout
    done = cli("dlq", APP, "purge", stdin="y\n")
    assert done.returncode == 0, done.stderr
    assert "deleted 3 message(s)" in done.stdout
    empty = cli("dlq", APP, "purge")
    assert empty.returncode == 0
    assert "the dead-letter queue is empty" in empty.stdout


# -- tables --------------------------------------------------------------------------


def _one_line_with(text: str, output: str) -> bool:
    return any(text in line for line in output.splitlines())


def test_status_and_schedules_never_cut_ids_at_80_columns(cli: Cli, env: dict[str, str]) -> None:
    app = Conveyor(env["CONVEYOR_BROKER_URL"])
    worker_id = f"a-rather-long-hostname.example.internal:123456:{LONG_ID[:6]}"

    async def seed() -> None:
        async with app:
            now = app.settings.clock.now()
            info = WorkerInfo(
                worker_id=worker_id,
                hostname="a-rather-long-hostname.example.internal",
                pid=123456,
                queues=["default", "reports", "emails", "embeddings"],
                concurrency=100,
                running=99,
                processed=123456789,
                started_at=now,
                last_seen=now,
            )
            await app.broker.heartbeat(info, 60)

    asyncio.run(seed())
    added = cli(
        "schedules", APP, "add", LONG_ID, "whoami", "--cron", "*/5 * * * *", "--args", "[1]"
    )
    assert added.returncode == 0, added.stderr
    status = cli("status", APP)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("broker: sqlite:///")  # the only line that may be longer
    assert max(len(line) for line in status.stdout.splitlines()[1:]) <= 80
    assert _one_line_with(worker_id, status.stdout), status.stdout
    assert _one_line_with(LONG_ID, status.stdout), status.stdout
    listed = cli("schedules", APP, "list")
    assert _one_line_with(LONG_ID, listed.stdout), listed.stdout


# -- help --------------------------------------------------------------------------


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    context = click.Context(group)
    for name in group.list_commands(context):  # main imports a command's module on demand
        command = group.get_command(context, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", _commands(main), ids=" ".join)
def test_help_is_plain_text(path: tuple[str, ...]) -> None:
    args = list(path)
    if path[:1] in (("dlq",), ("schedules",)) and len(path) == 2:
        args = [path[0], APP, path[1]]
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "`" not in result.output, result.output


# -- import errors -----------------------------------------------------------------


@pytest.fixture
def broken_package(tmp_path: Path) -> Path:
    package = tmp_path / "brokenpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "imports.py").write_text(
        "from conveyor import Conveyor\n\napp = Conveyor()\nimport no_such_dependency  # line 4\n"
    )
    (package / "syntax.py").write_text("from conveyor import Conveyor\n\napp = Conveyor(\n")
    (package / "config.py").write_text(
        "from conveyor import Conveyor\n\napp = Conveyor('nosuch://x')\n"
    )
    return tmp_path


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("imports", "No module named 'no_such_dependency' (brokenpkg/imports.py, line 4)"),
        ("syntax", "brokenpkg/syntax.py, line 3"),
        ("config", "unknown broker URL scheme in 'nosuch://x'"),
    ],
)
def test_an_error_inside_the_users_module_names_its_file_and_line(
    cli: Cli, broken_package: Path, module: str, expected: str
) -> None:
    done = cli("status", f"brokenpkg.{module}:app", cwd=broken_package)
    assert done.returncode == 2, done.stderr
    assert f"cannot import 'brokenpkg.{module}'" in done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) <= 4, done.stderr


def test_a_module_that_does_not_exist_is_named_without_a_location(cli: Cli) -> None:
    done = cli("status", "no_such_module:app")
    assert done.returncode == 2
    assert "cannot import 'no_such_module': No module named 'no_such_module'" in done.stderr
    assert ", line " not in done.stderr


# -- the SQLite file ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["status", APP], 0),
        (["dlq", APP, "list"], 0),
        (["dlq", APP, "show", LONG_ID], 1),
        (["dlq", APP, "requeue", LONG_ID], 1),
        (["dlq", APP, "purge", "--yes"], 0),
        (["schedules", APP, "list"], 0),
        (["abort", APP, LONG_ID], 1),
    ],
    ids=lambda value: " ".join(value[:3]) if isinstance(value, list) else str(value),
)
def test_reading_commands_warn_and_create_no_database_where_there_is_none(
    cli: Cli, tmp_path: Path, args: list[str], code: int
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = cli(*args, cwd=elsewhere, CONVEYOR_BROKER_URL="sqlite:///conveyor.db")
    assert done.returncode == code, done.stdout + done.stderr
    assert f"{elsewhere / 'conveyor.db'} does not exist" in done.stderr
    assert "relative to the current directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(elsewhere.iterdir()) == [], "a command that only reads created files"


def test_status_shows_the_absolute_database_path(cli: Cli, tmp_path: Path) -> None:
    where = tmp_path / "here"
    where.mkdir()
    asyncio.run(_create(f"sqlite:///{where / 'here.db'}"))
    status = cli("status", APP, cwd=where, CONVEYOR_BROKER_URL="sqlite:///here.db")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"broker: sqlite:///{where / 'here.db'}"
    assert status.stderr == ""


async def _create(url: str) -> None:
    async with Conveyor(url):
        pass


def test_a_writing_command_says_when_it_created_the_database(cli: Cli, tmp_path: Path) -> None:
    where = tmp_path / "fresh"
    where.mkdir()
    url = "sqlite:///fresh.db"
    added = cli(
        "schedules",
        APP,
        "add",
        "ping",
        "whoami",
        "--every",
        "60",
        "--args",
        "[1]",
        cwd=where,
        CONVEYOR_BROKER_URL=url,
    )
    assert added.returncode == 0, added.stderr
    assert f"created a new database at {where / 'fresh.db'}" in added.stderr
    again = cli("schedules", APP, "pause", "ping", cwd=where, CONVEYOR_BROKER_URL=url)
    assert again.returncode == 0
    assert again.stderr == ""
