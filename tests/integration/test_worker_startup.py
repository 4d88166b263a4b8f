"""`conveyor worker` and `conveyor scheduler` when the set-up is wrong: real processes.

A configuration, import or start-up error exits non-zero at once with one clear line; an
unreachable broker is a clear exit too, unless ``--wait-for-broker`` asks to wait for it;
a worker that crashes after a good start is still restarted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.worker.supervisor import BROKER_UNAVAILABLE_EXIT_CODE, STARTUP_FAILED_EXIT_CODE
from tests.brokers.conftest import service_unavailable
from tests.conftest import CHECKOUT_PATH
from tests.integration.processes import ROOT, Running

pytestmark = pytest.mark.slow

APP = "tests.integration.startup_app:app"
UNREACHABLE = "redis://127.0.0.1:1/0"

Spawn = Callable[..., Running]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return {
        **environ,
        "CONVEYOR_BROKER_URL": f"sqlite:///{tmp_path / 'startup.db'}",
        "CONVEYOR_FETCH_WAIT": "0.2",
        "CONVEYOR_GRACE": "2",
        "PYTHONPATH": CHECKOUT_PATH,
    }


@pytest.fixture
def spawn(env: dict[str, str], tmp_path: Path) -> Iterator[Spawn]:
    running: list[Running] = []

    def start(*args: str, cwd: Path = ROOT, **extra_env: str) -> Running:
        log = tmp_path / f"run-{len(running)}.log"
        done = Running(args, {**env, **extra_env}, log, cwd)
        running.append(done)
        return done

    yield start
    for done in running:
        if done.process.poll() is None:
            os.killpg(done.process.pid, signal.SIGKILL)
            done.process.wait()


@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_an_unreachable_broker_exits_at_once_with_one_line(spawn: Spawn, command: str) -> None:
    code, _, lines = spawn(command, APP, CONVEYOR_BROKER_URL=UNREACHABLE).wait(30)
    assert code == BROKER_UNAVAILABLE_EXIT_CODE, lines
    assert len(lines) == 1, lines  # at once: no retries
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in lines[0]
    assert "--wait-for-broker" in lines[0], "the line says what to do"


@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_a_missing_sqlite_directory_exits_at_once_with_one_line(spawn: Spawn, command: str) -> None:
    url = "sqlite:////nonexistent/dir/x.db"
    code, _, lines = spawn(command, APP, CONVEYOR_BROKER_URL=url).wait(30)
    assert code == STARTUP_FAILED_EXIT_CODE, lines
    assert len(lines) == 1, lines  # at once: no retries
    assert "directory /nonexistent/dir does not exist" in lines[0]


def test_wait_for_broker_gives_up_after_its_time_with_one_line_per_attempt(
    spawn: Spawn,
) -> None:
    running = spawn("worker", APP, "--wait-for-broker", "2", CONVEYOR_BROKER_URL=UNREACHABLE)
    code, seconds, lines = running.wait(30)
    assert code == BROKER_UNAVAILABLE_EXIT_CODE, lines
    assert seconds >= 2, "gave up before its time"
    retries = [line for line in lines if "retrying in" in line]
    assert 1 <= len(retries) == len(lines) - 1, lines
    assert "gave up after" in lines[-1]
    assert "Traceback" not in running.output()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.service("redis")
@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_wait_for_broker_proceeds_once_the_broker_comes_up(spawn: Spawn, command: str) -> None:
    if shutil.which("redis-server") is None:
        service_unavailable("needs the redis-server binary, to start a Redis late")
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    running = spawn(command, APP, "--wait-for-broker", "30", CONVEYOR_BROKER_URL=url)
    running.wait_for(r"retrying in", count=2)
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        running.wait_for(rf"{command} \S+ started")
        assert running.process.poll() is None
        running.process.send_signal(signal.SIGTERM)
        code, _, lines = running.wait(20)
        assert code == 0, lines
        assert "Traceback" not in running.output()
        assert re.search(
            rf"broker redis://127.0.0.1:{port}/0 reachable after \d+ attempts", running.output()
        )
    finally:
        server.terminate()
        server.wait(10)


def test_a_startup_handler_raising_a_conveyor_error_stops_everything_with_its_line(
    spawn: Spawn,
) -> None:
    running = spawn("worker", APP, "--workers", "2", STARTUP_FAILS="config")
    code, _, lines = running.wait(30)
    assert code == STARTUP_FAILED_EXIT_CODE, lines
    output = running.output()
    assert "Traceback" not in output
    assert "restarting" not in output, "a worker that never started must not be restarted"
    assert "SMTP_HOST is not set; export it before starting workers" in output
    assert len(lines) <= 8, lines


def test_a_startup_handler_bug_shows_a_short_traceback_of_the_users_code(
    spawn: Spawn,
) -> None:
    running = spawn("worker", APP, STARTUP_FAILS="bug")
    code, _, lines = running.wait(30)
    assert code == STARTUP_FAILED_EXIT_CODE, lines
    output = running.output()
    assert "RuntimeError: mail server said no" in output
    assert "startup_app.py" in output
    assert "_connect_to_mail_server" in output
    assert "conveyor/worker" not in output, "only the user's frames"
    assert "restarting" not in output
    assert len(lines) <= 14, lines


def test_a_worker_killed_after_a_good_start_is_restarted(spawn: Spawn) -> None:
    running = spawn("worker", APP)
    (pid,) = running.wait_for(r"started worker process (\d+)")
    running.wait_for(r"worker \S+ started")
    os.kill(int(pid), signal.SIGKILL)
    running.wait_for(rf"worker {pid} exited with code -9; restarting in 0.5s")
    running.wait_for(r"started worker process (\d+)", count=2)
    running.wait_for(r"worker \S+ started", count=2)
    running.process.send_signal(signal.SIGTERM)
    code, _, lines = running.wait(20)
    assert code == 0, lines


def test_the_start_up_line_shows_the_absolute_database_path(spawn: Spawn, tmp_path: Path) -> None:
    where = tmp_path / "elsewhere"
    where.mkdir()
    running = spawn("worker", APP, cwd=where, CONVEYOR_BROKER_URL="sqlite:///relative.db")
    running.wait_for(r"worker \S+ started")
    assert f"sqlite:///{where / 'relative.db'}" in running.output()
    running.process.send_signal(signal.SIGTERM)
    assert running.wait(20)[0] == 0


def test_with_reload_a_worker_that_cannot_start_waits_for_the_fix(
    spawn: Spawn, tmp_path: Path
) -> None:
    package = tmp_path / "fixme"
    package.mkdir()
    (package / "__init__.py").write_text("")
    tasks = package / "tasks.py"
    tasks.write_text(
        "from conveyor import Conveyor\n\napp = Conveyor()\nBROKEN = True\n\n\n"
        "@app.on_startup\ndef check() -> None:\n"
        "    if BROKEN:\n        raise RuntimeError('not fixed yet')\n"
    )
    running = spawn(
        "worker",
        "fixme.tasks:app",
        "--reload",
        cwd=tmp_path,
        PYTHONPATH=f"{tmp_path}{os.pathsep}{CHECKOUT_PATH}",
    )
    running.wait_for(r"could not start: waiting for a code change")
    assert "restarting in" not in running.output()
    tasks.write_text(tasks.read_text().replace("BROKEN = True", "BROKEN = False"))
    running.wait_for(r"worker \S+ started")
    running.process.send_signal(signal.SIGTERM)
    code, _, lines = running.wait(20)
    assert code == 0, lines
