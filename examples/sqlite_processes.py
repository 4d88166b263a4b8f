"""Several processes on one SQLite file: this script is the producer, and
`conveyor worker` runs two worker processes; they share nothing but the database file.

What it shows: tasks run in other processes, results come back across processes,
a worker process that dies mid-task is restarted and its task runs again once the lease
expires, `conveyor status` and `conveyor dlq` read the same file from yet another
process, and SIGTERM stops the workers gracefully. Takes about 5 s; everything lives in
a temporary directory that is deleted at the end.

Run: python examples/sqlite_processes.py        (docs/sqlite.md)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conveyor import Context, Conveyor, Depends, TaskFailed

# Every process imports this module: the script itself (the producer) and each worker
# process (`conveyor worker sqlite_processes:app`). The producer picks a fresh directory
# and the workers inherit it through the environment, so all of them open the same file.
if "EXAMPLE_DB_DIR" not in os.environ:
    os.environ["EXAMPLE_DB_DIR"] = tempfile.mkdtemp(prefix="conveyor-example-")
DB_DIR = Path(os.environ["EXAMPLE_DB_DIR"])

# An absolute path gives four slashes: sqlite:////tmp/conveyor-example-xyz/tasks.db.
# A short lease makes the crash below recover in about a second (the default is 30 s).
app = Conveyor(f"sqlite:///{DB_DIR / 'tasks.db'}", lease=1.0, reap_interval=0.2)


# Explicit names: this file runs as __main__ in the producer but is imported as
# `sqlite_processes` by the workers, so the default names (module:function) would differ.
@app.task(name="example.whoami")
async def whoami(n: int) -> int:
    await asyncio.sleep(0.01)
    return os.getpid()


@app.task(name="example.crash_once", retries=1)
async def crash_once(ctx: Context = Depends()) -> str:
    """Kills its worker process on the first attempt, like SIGKILL or an OOM kill."""
    marker = DB_DIR / "crashed"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)  # no cleanup, no settlement: the lease has to expire
    return f"attempt {ctx.attempt} ran in process {os.getpid()}"


@app.task(name="example.always_fails")
async def always_fails() -> None:
    raise RuntimeError("broken on purpose")


APP = "sqlite_processes:app"  # module:attribute, imported from this file's directory


def conveyor(*args: str) -> list[str]:
    """The `conveyor` command, run from this directory so `sqlite_processes` imports."""
    return [sys.executable, "-m", "conveyor.cli", *args]


async def produce() -> None:
    async with app:  # a producer: connects, runs no worker
        for _ in range(300):  # wait (up to 30 s) until both worker processes report in
            if len(await app.broker.workers()) >= 2:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the worker processes did not start")
        handles = await app.enqueue_many([(whoami, (n,), {}) for n in range(40)])
        pids = [await h.get(timeout=30) for h in handles]
        print(f"40 tasks ran in worker processes {sorted(set(pids))} (producer is {os.getpid()})")

        started = time.monotonic()
        value = await (await crash_once.kiq()).get(timeout=30)
        print(f"crash_once: {value}, {time.monotonic() - started:.1f} s after its first")
        print(f"  attempt killed process {(DB_DIR / 'crashed').read_text()}")

        try:
            await (await always_fails.kiq()).get(timeout=30)
        except TaskFailed as exc:
            print("always_fails:", exc.error.type, exc.error.message)


def main() -> int:
    here = Path(__file__).resolve().parent
    workers = subprocess.Popen(
        conveyor("worker", APP, "--workers", "2", "--concurrency", "4", "--log-level", "WARNING"),
        cwd=here,
        start_new_session=True,  # its own process group, so cleanup can reach every child
    )
    try:
        asyncio.run(produce())
        for command in (["status", APP], ["dlq", APP, "list"]):
            print(f"$ conveyor {' '.join(command)}")
            shown = subprocess.run(
                conveyor(*command), cwd=here, capture_output=True, text=True, check=True
            )
            print(shown.stdout.rstrip())
        print("(a killed process stays listed until its heartbeat expires, 15 s by default)")
        workers.send_signal(signal.SIGTERM)  # graceful: finish running tasks, then exit
        code = workers.wait(timeout=30)
        print("workers stopped, exit code", code)
        return code
    finally:
        if workers.poll() is None:
            os.killpg(workers.pid, signal.SIGKILL)
            workers.wait()
        shutil.rmtree(DB_DIR, ignore_errors=True)  # tasks.db, -wal, -shm, tasks.db.wake/


if __name__ == "__main__":
    raise SystemExit(main())
