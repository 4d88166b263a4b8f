"""Crash safety of the embedded SQLite broker, proved with the ledger (issue 3, G1-G3).

Two worker processes share one SQLite file with a backlog of 2,000 tasks; one of them is
SIGKILLed mid-task, again and again, and replaced. The ledger must show 0 lost tasks and
every duplicate execution explained by a kill. A producer SIGKILLed mid-burst loses no
enqueue that had returned.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.chaos.conftest import ClusterFactory
from tests.chaos.harness import ROOT, Producer, drain, wait_for_ledger
from tests.chaos.ledger import Ledger, check, read_ledger
from tests.conftest import CHECKOUT_PATH, eventually

pytestmark = pytest.mark.slow

LEASE = 1.5
REAP = 0.3
SETTINGS = {"lease": LEASE, "reap_interval": REAP, "fetch_wait": 0.2, "heartbeat_interval": 0.5}


async def test_repeatedly_killed_workers_lose_nothing_on_sqlite(
    tmp_path: Path, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    url = f"sqlite:///{tmp_path / 'chaos.db'}"
    workers = cluster(url, **SETTINGS)
    live = [workers.worker(concurrency=8), workers.worker(concurrency=8)]
    rng = random.Random(7)
    async with Producer(url, nemesis) as producer:
        ids = await producer.enqueue_many(
            [("sleep", rng.randint(40, 160)) for _ in range(2000)], parallel=32
        )
        last_kill = time.time()
        for _ in range(5):
            # kill only a worker that is running something, so every kill interrupts tasks
            victim = live[rng.randrange(len(live))]
            await wait_for_ledger(
                workers.ledger_dir,
                lambda rs, pid=victim.pid: any(
                    r["ev"] == "exec_start" and r["pid"] == pid for r in rs
                ),
                20,
                "the victim to start a task",
            )
            # sleep: the nemesis kills at a random moment of the victim's work
            await asyncio.sleep(rng.uniform(0.2, 0.6))
            nemesis.fault("sigkill", victim.pid)
            victim.kill()
            last_kill = time.time()
            live.remove(victim)
            live.append(workers.worker(concurrency=8))
        await drain(producer.app, nemesis, ids, quiet_until=last_kill + LEASE + REAP, timeout=120)
    report = check(workers.ledger())
    print(f"\n[chaos sqlite] {report.summary()}")
    for duplicate in report.unexplained:
        print("UNEXPLAINED", duplicate, report.starts[duplicate.id])
    report.assert_valid()
    assert report.completed == set(ids)
    assert report.lost == set()
    assert len(report.faults) == 5
    # every duplicate is a task that was running in a killed process when it died
    assert all(d.because for d in report.duplicates)
    # G3 behind a 2,000-task backlog: recovered work goes to the front of its queue. A
    # recovered task that the next victim had fetched ahead (held, not yet started) comes
    # back after that worker's lease too: each kill inside its recovery adds one bound
    assert report.max_recovery is not None
    kills = sorted(f.start for f in report.faults if f.kind == "sigkill")
    for recovery in report.recoveries:
        assert recovery.latency is not None, recovery
        killed_at = next(f.start for f in report.faults if f.target == recovery.pid)
        later = sum(1 for t in kills if killed_at < t <= killed_at + recovery.latency)
        assert recovery.latency <= (1 + later) * (LEASE + REAP) + 1.5, (recovery, later)


PRODUCER = textwrap.dedent(
    """
    import asyncio, sys, uuid
    from tests.chaos.harness import Producer
    from tests.chaos.ledger import Ledger

    async def main() -> None:
        ledger = Ledger(sys.argv[2], "producer")
        async with Producer(sys.argv[1], ledger) as producer:
            while True:  # until SIGKILL
                await producer.enqueue_many([("sleep", 1)] * 50, parallel=8)

    asyncio.run(main())
    """
)


async def test_a_killed_producer_loses_no_enqueue_that_returned(
    tmp_path: Path, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    url = f"sqlite:///{tmp_path / 'producer.db'}"
    workers = cluster(url, **SETTINGS)
    env = {**os.environ, "PYTHONPATH": CHECKOUT_PATH}
    producer = subprocess.Popen(  # noqa: ASYNC220 - a real, separate producer process
        [sys.executable, "-c", PRODUCER, url, str(workers.ledger_dir)], env=env, cwd=ROOT
    )

    def enqueued_300() -> bool:
        assert producer.poll() is None, "the producer died on its own"
        return sum(r["ev"] == "enq_ok" for r in read_ledger(workers.ledger_dir)) >= 300

    try:
        await eventually(enqueued_300, timeout=30, what="the producer to get going")
        producer.send_signal(signal.SIGKILL)  # mid-burst: enqueues are in flight
        producer.wait()
    finally:
        if producer.poll() is None:
            producer.kill()
    records = read_ledger(workers.ledger_dir)
    returned = {r["id"] for r in records if r["ev"] == "enq_ok"}
    workers.worker(concurrency=16)
    async with Producer(url, nemesis) as reader:
        await drain(reader.app, nemesis, sorted(returned), timeout=60)
    report = check(workers.ledger())
    print(f"\n[chaos sqlite producer] {report.summary()}")
    assert returned <= report.completed, f"lost: {sorted(returned - report.completed)[:10]}"
    assert report.duplicates == []
    # enqueues that were in flight at the kill either landed whole or not at all
    assert report.completed <= report.invoked
