"""`conveyor worker` as users run it: real processes on the embedded SQLite broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor import Conveyor
from conveyor.cli import main
from tests.conftest import CHECKOUT_PATH, eventually, eventually_blocking
from tests.integration.processes import run_cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.cli_app:app"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CONVEYOR_BROKER_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "CONVEYOR_LEASE": "1.0",
        "CONVEYOR_REAP_INTERVAL": "0.2",
        "CONVEYOR_FETCH_WAIT": "0.2",
        "CONVEYOR_HEARTBEAT_INTERVAL": "0.5",
        "CONVEYOR_GRACE": "2",
        "PYTHONPATH": CHECKOUT_PATH,
    }


@pytest.fixture
def client_app(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Conveyor:
    for key, value in env.items():
        if key.startswith("CONVEYOR_"):
            monkeypatch.setenv(key, value)
    from tests.integration import cli_app

    return Conveyor(settings=cli_app.app.settings.replace(broker_url=env["CONVEYOR_BROKER_URL"]))


@pytest.fixture
def start_worker(env: dict[str, str]) -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", "worker", APP, *args],
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def _results(
    app: Conveyor,
    task_name: str,
    args_list: list[tuple[object, ...]],
    timeout: float,
    workers: int = 0,
) -> list[object]:
    """Enqueue and collect; with ``workers``, first wait until that many have a heartbeat,
    so that one process cannot drain everything before the other has started."""
    from tests.integration import cli_app

    task = getattr(cli_app, task_name)
    async with app:

        async def enough_workers() -> bool:
            return sum(w.role != "scheduler" for w in await app.broker.workers()) >= workers

        await eventually(enough_workers, timeout=timeout, what=f"{workers} worker heartbeats")
        handles = []
        for args in args_list:
            message_task = app.register(task.fn, task.options)
            handles.append(await message_task.kiq(*args))
        return [await h.get(timeout=timeout) for h in handles]


def test_worker_processes_run_tasks_and_stop_on_sigterm(start_worker, client_app: Conveyor) -> None:  # type: ignore[no-untyped-def]
    supervisor = start_worker("--workers", "2", "--concurrency", "4")
    pids = asyncio.run(
        _results(client_app, "whoami", [(n,) for n in range(40)], timeout=30, workers=2)
    )
    assert len(pids) == 40
    assert len(set(pids)) == 2, "both worker processes should take work"
    assert supervisor.pid not in pids
    supervisor.send_signal(signal.SIGTERM)
    # idle workers wait in a fetch: stopping interrupts it, and the grace (2 s) is unused
    assert supervisor.wait(timeout=10) == 0


def test_workers_stop_when_their_supervisor_is_killed(start_worker, client_app: Conveyor) -> None:  # type: ignore[no-untyped-def]
    supervisor = start_worker("--workers", "2", "--concurrency", "2", "--with-scheduler")
    pids = set(
        asyncio.run(
            _results(client_app, "whoami", [(n,) for n in range(20)], timeout=30, workers=2)
        )
    )
    assert len(pids) == 2
    os.kill(supervisor.pid, signal.SIGKILL)
    supervisor.wait()
    eventually_blocking(
        lambda: not any(_alive(pid) for pid in pids),
        what="the workers to stop: a worker outlived its SIGKILLed supervisor",
    )
    eventually_blocking(
        lambda: _live_group_members(supervisor.pid) == [],
        what="the group to empty: orphans left (the scheduler child?)",
    )


def _live_group_members(group: int) -> list[int]:
    found = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split() if _alive(int(pid))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


def test_crashed_worker_is_restarted_and_its_task_finishes(
    start_worker, client_app: Conveyor, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    supervisor = start_worker("--workers", "1", "--concurrency", "2")
    marker = tmp_path / "crashed"
    (attempt,) = asyncio.run(_results(client_app, "crash_once", [(str(marker),)], timeout=30))
    assert marker.read_text() == "1"
    assert attempt == 2, "the task restarts after the lease of the killed attempt expires"
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=15) == 0


def test_max_tasks_per_child_recycles_processes(start_worker, client_app: Conveyor) -> None:  # type: ignore[no-untyped-def]
    supervisor = start_worker("--workers", "1", "--concurrency", "1", "--max-tasks-per-child", "5")
    pids = asyncio.run(_results(client_app, "whoami", [(n,) for n in range(20)], timeout=60))
    assert len(set(pids)) >= 4
    for pid in set(pids):
        assert pids.count(pid) <= 5
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=15) == 0


def test_status_and_dlq_commands(start_worker, client_app: Conveyor, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(env, *args)

    supervisor = start_worker("--workers", "1")

    async def fail_one() -> str:
        from tests.integration import cli_app

        async with client_app:
            task = client_app.register(cli_app.always_fails.fn, cli_app.always_fails.options)
            handle = await task.kiq()
            await handle.wait_result(timeout=30)
            return handle.task_id

    task_id = asyncio.run(fail_one())
    status = cli("status", APP)
    assert status.returncode == 0, status.stderr
    assert "default" in status.stdout
    assert "Workers" in status.stdout
    assert "no live workers" not in status.stdout
    listed = cli("dlq", APP, "list")
    assert task_id in listed.stdout
    assert "RuntimeError: broken on purpose" in listed.stdout
    shown = cli("dlq", APP, "show", task_id)
    assert "always_fails" in shown.stdout
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=15) == 0
    requeued = cli("dlq", APP, "requeue", task_id)
    assert "requeued 1 message(s)" in requeued.stdout
    assert "the dead-letter queue is empty" in cli("dlq", APP, "list").stdout
    purged = cli("dlq", APP, "purge", "--yes")
    assert purged.returncode == 0, purged.stderr


def test_bad_import_path_fails_fast_with_a_clear_message() -> None:
    result = CliRunner().invoke(main, ["worker", "no_such_module:app"])
    assert result.exit_code != 0
    assert "cannot import 'no_such_module'" in result.output


def test_reload_restarts_workers_when_code_changes(env: dict[str, str], tmp_path: Path) -> None:
    pkg = tmp_path / "reloadpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tasks.py").write_text(
        "from conveyor import Conveyor\napp = Conveyor()\n\n"
        "@app.task\nasync def noop() -> None: ...\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor.cli", "worker", "reloadpkg.tasks:app", "--reload"],
        env={**env, "PYTHONPATH": f"{tmp_path}{os.pathsep}{CHECKOUT_PATH}"},
        cwd=tmp_path,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()

    def reloaded() -> bool:
        if any("code changed: restarting 1 worker(s)" in line for line in lines):
            return True
        # a change before the watcher watches goes unseen: change the code again
        (pkg / "tasks.py").write_text((pkg / "tasks.py").read_text() + "# changed\n")
        return False

    try:
        eventually_blocking(
            lambda: any("started worker process" in line for line in lines), what="a worker"
        )
        eventually_blocking(reloaded, timeout=30, every=0.5, what="the reload")
        eventually_blocking(
            lambda: sum("started worker process" in line for line in lines) >= 2,
            what="the restarted worker",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(10)
        process.stderr.close()
    err = "".join(lines)
    assert "code changed: restarting 1 worker(s)" in err
    assert err.count("started worker process") >= 2
