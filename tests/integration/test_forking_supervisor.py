"""`conveyor worker` forks its workers from the supervisor that imported the app (one
interpreter start-up); crash restarts fork again, ``--reload`` starts fresh interpreters
that run the changed code, and a supervisor with threads does not fork (real processes,
SQLite)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from tests.conftest import CHECKOUT_PATH, eventually, eventually_blocking
from tests.integration import fork_app
from tests.integration.processes import ROOT, Running

pytestmark = pytest.mark.slow

APP = "tests.integration.fork_app:app"
forks = pytest.mark.skipif(
    sys.platform == "darwin" or not hasattr(os, "fork"),
    reason="the supervisor forks its workers only where forking is safe (not macOS)",
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return {
        **environ,
        "CONVEYOR_BROKER_URL": f"sqlite:///{tmp_path / 'fork.db'}",
        "CONVEYOR_FETCH_WAIT": "0.2",
        "CONVEYOR_HEARTBEAT_INTERVAL": "0.5",
        "CONVEYOR_GRACE": "2",
        "FORK_APP_IMPORTS": str(tmp_path / "imports"),
        "PYTHONPATH": CHECKOUT_PATH,
    }


@pytest.fixture
def started(env: dict[str, str], tmp_path: Path) -> Iterator[list[Running]]:
    running: list[Running] = []
    yield running
    for done in running:
        if done.process.poll() is None:
            os.killpg(done.process.pid, signal.SIGKILL)
            done.process.wait()


def worker(
    started: list[Running], env: dict[str, str], tmp_path: Path, *args: str, **extra: str
) -> Running:
    log = tmp_path / f"worker-{len(started)}.log"
    running = Running(("worker", *args), {**env, **extra}, log, Path(extra.get("CWD", ROOT)))
    started.append(running)
    return running


def importers(env: dict[str, str]) -> list[int]:
    return [int(line) for line in Path(env["FORK_APP_IMPORTS"]).read_text().split()]


def task_pids(env: dict[str, str], calls: int, workers: int = 1) -> set[int]:
    """Run ``calls`` whoami tasks (once ``workers`` heartbeat); the pids that ran them."""
    app = Conveyor(env["CONVEYOR_BROKER_URL"], environ={})
    whoami = app.register(fork_app.whoami.fn, fork_app.whoami.options)

    async def run() -> set[int]:
        async with app:

            async def enough() -> bool:
                return sum(w.role != "scheduler" for w in await app.broker.workers()) >= workers

            await eventually(enough, timeout=30, what=f"{workers} worker heartbeats")
            handles = [await whoami.kiq() for _ in range(calls)]
            return {await handle.get(timeout=30) for handle in handles}

    return asyncio.run(run())


def stop(running: Running) -> None:
    running.process.send_signal(signal.SIGTERM)
    code, _, lines = running.wait(30)
    assert code == 0, lines


@forks
def test_workers_are_forked_from_the_supervisor_that_imported_the_app(
    started: list[Running], env: dict[str, str], tmp_path: Path
) -> None:
    running = worker(started, env, tmp_path, APP, "--workers", "2", "--concurrency", "2")
    children = {int(pid) for pid in running.wait_for(r"started worker process (\d+)", count=2)}
    pids = task_pids(env, 40, workers=2)
    assert pids == children, "the forked children ran the tasks"
    assert importers(env) == [running.process.pid], "the app was imported once, by the supervisor"
    stop(running)


@forks
def test_a_killed_worker_is_forked_again_and_runs_tasks(
    started: list[Running], env: dict[str, str], tmp_path: Path
) -> None:
    running = worker(started, env, tmp_path, APP, "--workers", "1")
    (first,) = running.wait_for(r"started worker process (\d+)")
    assert task_pids(env, 1) == {int(first)}
    os.kill(int(first), signal.SIGKILL)
    running.wait_for(rf"worker {first} exited with code -9; restarting in 0.5s")
    second = running.wait_for(r"started worker process (\d+)", count=2)[1]
    assert task_pids(env, 1) == {int(second)} != {int(first)}
    assert importers(env) == [running.process.pid], "the replacement was forked too"
    stop(running)


@forks
def test_a_recycled_worker_is_forked_again(
    started: list[Running], env: dict[str, str], tmp_path: Path
) -> None:
    recycled = ("--concurrency", "1", "--max-tasks-per-child", "2")
    running = worker(started, env, tmp_path, APP, *recycled)
    pids = task_pids(env, 6)
    assert len(pids) >= 3
    assert importers(env) == [running.process.pid]
    stop(running)


def test_with_reload_each_worker_is_a_fresh_interpreter_running_the_changed_code(
    started: list[Running], env: dict[str, str], tmp_path: Path
) -> None:
    package = tmp_path / "reloading"
    package.mkdir()
    (package / "__init__.py").write_text("")
    tasks = package / "tasks.py"
    source = (
        "from conveyor import Conveyor\n\napp = Conveyor()\nVERSION = {}\n\n\n"
        "@app.task(name='version')\nasync def version() -> int:\n    return VERSION\n"
    )
    tasks.write_text(source.format(1))
    running = worker(
        started,
        env,
        tmp_path,
        "reloading.tasks:app",
        "--reload",
        PYTHONPATH=f"{tmp_path}{os.pathsep}{CHECKOUT_PATH}",
        CWD=str(tmp_path),
    )
    running.wait_for(r"started worker process")
    client = Conveyor(env["CONVEYOR_BROKER_URL"], environ={})

    @client.task(name="version")
    async def version() -> int: ...

    async def current() -> int:
        async with client:
            return int(await (await version.kiq()).get(timeout=30))

    assert asyncio.run(current()) == 1

    def reloaded() -> bool:
        if "code changed: restarting 1 worker(s)" in running.output():
            return True
        # a change made before the watcher watches goes unseen: make it again
        tasks.write_text(source.format(2) + f"# {len(running.output())}\n")
        return False

    eventually_blocking(reloaded, timeout=30, every=0.5, what="the reload")
    running.wait_for(r"started worker process", count=2)
    assert asyncio.run(current()) == 2, "the new worker runs the new code"
    stop(running)


@forks
def test_a_supervisor_running_threads_starts_fresh_interpreters_instead(
    started: list[Running], env: dict[str, str], tmp_path: Path
) -> None:
    running = worker(started, env, tmp_path, APP, FORK_APP_THREAD="1")
    running.wait_for(r"fresh interpreter .* other threads \(a-library-thread\)")
    (child,) = running.wait_for(r"started worker process (\d+)")
    assert task_pids(env, 1) == {int(child)}
    assert sorted(importers(env)) == sorted([running.process.pid, int(child)])
    stop(running)
