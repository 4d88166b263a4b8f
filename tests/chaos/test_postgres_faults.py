"""Fault injection against PostgreSQL and real worker processes, judged by the ledger.

- a private cluster (``initdb`` on its own port and data directory, as the ``postgres``
  user) SIGKILLed and restarted under about a thousand tasks: nothing committed is lost,
  no worker exits (G1, G6);
- a worker SIGKILLed mid-task: its tasks restart within lease + reap (G3);
- a worker SIGSTOPped past its lease: the task is taken over and the zombie's late
  settlement is refused (fencing).
The repeated ``pg_terminate_backend`` of a worker's connections is in
tests/brokers/test_postgres.py (one process, same ledger-free check: every task completes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.brokers.conftest import (
    POSTGRES_URL,
    drop_postgres_schema,
    require_module,
    service_unavailable,
)
from tests.chaos.conftest import ClusterFactory, _free_port
from tests.chaos.harness import (
    Producer,
    drain,
    in_flight,
    judge,
    pause_a_worker_mid_task,
    starts,
    wait_for_ledger,
)
from tests.chaos.ledger import Ledger
from tests.conftest import eventually_blocking

pytestmark = [pytest.mark.slow, pytest.mark.service("postgres")]

asyncpg = require_module("asyncpg")

LEASE = 2.0
REAP = 0.3
SETTINGS = {
    "lease": LEASE,
    "reap_interval": REAP,
    "fetch_wait": 0.2,
    "heartbeat_interval": 0.5,
    "grace": 2.0,
}
SLACK = 1.5  # scheduling noise on a busy 2-core box, on top of every documented bound
PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """The shared server, with a schema of this test's own, dropped after."""
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        service_unavailable(f"PostgreSQL at {POSTGRES_URL}: {exc}")
    await conn.close()
    url = f"{POSTGRES_URL}?prefix=chaos_{uuid.uuid4().hex[:12]}"
    yield url
    await drop_postgres_schema(url)


class PrivateCluster:
    """A PostgreSQL cluster of this test's own: ``initdb`` in a temporary directory, run
    by the ``postgres`` user (initdb refuses root) on a free port; fsync and synchronous
    commit on, so a commit that returned survives SIGKILL of every server process."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        self.data = self.directory / "data"
        self.port = _free_port()
        self._as_postgres = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as_postgres, *argv], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
            "-w",
            "-t",
            "30",
            "start",
        )

    def server_pids(self) -> list[int]:
        """The postmaster and every process it started."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return []
        postmaster = int(pid_file.read_text().split()[0])
        children = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(postmaster)], capture_output=True, text=True
        ).stdout.split()
        return [postmaster, *map(int, children)]

    def kill9(self) -> None:
        """SIGKILL the postmaster and its backends at once, like a power cut of the host's
        processes (no shutdown checkpoint: the restart runs crash recovery)."""
        for pid in self.server_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

        def gone() -> bool:
            return all(not Path(f"/proc/{pid}").exists() for pid in self.server_pids()[:1])

        eventually_blocking(gone, timeout=10, what="the server processes to die")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        for pid in self.server_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def private_cluster() -> Iterator[PrivateCluster]:
    if not (PG_BIN / "initdb").exists():
        service_unavailable(f"PostgreSQL server binaries not found in {PG_BIN}")
    cluster = PrivateCluster()
    try:
        cluster.init()
        cluster.start()
    except (subprocess.CalledProcessError, OSError) as exc:
        cluster.stop()
        service_unavailable(f"cannot run a private PostgreSQL cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_postgres_killed_and_restarted_loses_nothing_committed(
    private_cluster: PrivateCluster, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """Every process of a private cluster is SIGKILLed under a 1,000-task load and the
    cluster restarted on the same data directory a second later: no acknowledged enqueue
    is lost, duplicates are explained by the kill, no worker exits, work resumes."""
    url = f"{private_cluster.url}?prefix=chaos"
    workers = cluster(url, **SETTINGS)
    pool = [workers.worker(concurrency=16), workers.worker(concurrency=16)]
    pids = [p.pid for p in pool]
    async with Producer(url, nemesis) as producer:
        load = asyncio.create_task(
            producer.enqueue_many([("sleep", 5)] * 1000, parallel=8, rate=250, retry_for=60)
        )
        await wait_for_ledger(
            workers.ledger_dir, lambda rs: len(starts(rs)) >= 150, 30, "load to flow"
        )
        fid = nemesis.fault_start("postgres_sigkill", None)
        await asyncio.to_thread(private_cluster.kill9)
        killed_at = time.time()
        await asyncio.sleep(1.0)  # sleep: the outage lasts a second of real time
        await asyncio.to_thread(private_cluster.start)
        restarted_at = time.time()
        nemesis.fault_end(fid, "postgres_sigkill", None)
        ids = await load
        await drain(producer.app, nemesis, ids, quiet_until=restarted_at + LEASE + REAP, timeout=90)
    report = judge(workers)
    assert len(ids) == 1000
    assert report.completed == set(ids), "a committed task was lost"
    assert [p.alive for p in pool] == [True, True], "a worker exited on a broker fault"
    assert [p.pid for p in pool] == pids
    resumed = min(r["t"] for r in starts(workers.ledger()) if r["t"] > restarted_at)
    print(
        f"[chaos] postgres kill -9: down {restarted_at - killed_at:.2f}s, first start "
        f"{resumed - restarted_at:.2f}s after the restart; {len(report.duplicates)} "
        f"duplicates, {report.enq_failures} failed enqueue calls retried"
    )
    assert resumed - restarted_at < 15.0, "workers did not resume after the server healed"


async def test_killed_worker_tasks_restart_elsewhere_within_lease(
    postgres_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """A worker is SIGKILLed with six tasks in flight; each restarts on the survivor within
    lease + reap interval, none is lost, and only the killed attempts run twice."""
    workers = cluster(postgres_url, **SETTINGS)
    victim = workers.worker(concurrency=6)
    async with Producer(postgres_url, nemesis) as producer:
        ids = await producer.enqueue_many([("sleep", 6000)] * 6)
        await wait_for_ledger(
            workers.ledger_dir,
            lambda rs: len(in_flight(rs, victim.pid)) == 6,
            20,
            "the victim to start all six tasks",
        )
        survivor = workers.worker(concurrency=16)
        interrupted = in_flight(workers.ledger(), victim.pid)
        killed_at = time.time()
        nemesis.fault("sigkill", victim.pid)
        victim.kill()
        ids += await producer.enqueue_many([("sleep", 50)] * 100)
        await drain(producer.app, nemesis, ids, quiet_until=killed_at + LEASE + REAP, timeout=40)
    report = judge(workers)
    assert report.completed == set(ids)
    assert report.duplicated_ids == interrupted, "only the killed attempts may run twice"
    bound = LEASE + REAP + SLACK
    assert report.max_recovery is not None and report.max_recovery <= bound, report.recoveries
    for task_id in interrupted:
        (first, second) = report.starts[task_id]
        assert (first["pid"], second["pid"]) == (victim.pid, survivor.pid)
        assert second["attempt"] == 2


async def test_paused_worker_loses_its_task_and_its_late_completion_is_rejected(
    postgres_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """A worker SIGSTOPped mid-task for 3.5 leases: another takes the task over; the
    zombie resumes, finishes, and its settlement is refused (a stale lease token); the
    only result stored is the new owner's."""
    lease = 1.0
    run = await pause_a_worker_mid_task(
        postgres_url, cluster, nemesis, {**SETTINGS, "lease": lease}
    )
    assert run.result.return_value == {"pid": run.owner_pid, "attempt": 2}
    assert run.report.executions(run.task_id) == 2
    (duplicate,) = run.report.duplicates
    assert duplicate.because == "sigstop"
    assert run.takeover_after <= lease + REAP + SLACK
