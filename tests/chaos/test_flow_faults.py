"""Flow control under real worker processes, proved with the ledger (issue 21).

- A rate limit of 20/s, served by three worker processes from two ``conveyor worker``
  commands (two hosts' worth): in no one-second window do more tasks start than the
  limit plus the bucket size, and every task runs, once.
- A concurrency limit of 2, with a worker SIGKILLed while it holds a permit: the permit
  comes back within the lease bound, and at no instant do more than 2 run.

``CONVEYOR_CHAOS_FLOW_SECONDS`` sets how long the rate test's backlog lasts at the limit
(30 s by default, as issue 21 asks).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor import BrokerUnavailable, Conveyor
from conveyor.testing.behaviour import max_in_window
from tests.brokers.conftest import _cleanup, _url_for, service_unavailable, with_results
from tests.chaos import flow_app
from tests.chaos.conftest import ClusterFactory
from tests.chaos.harness import wait_for_ledger
from tests.chaos.ledger import Ledger, Record, check

pytestmark = pytest.mark.slow

APP = "tests.chaos.flow_app:app"
LEASE = 1.5
REAP = 0.3
PERMIT_WAIT = 0.2
SETTINGS = {
    "lease": LEASE,
    "reap_interval": REAP,
    "fetch_wait": 0.2,
    "heartbeat_interval": 0.5,
    "permit_wait": PERMIT_WAIT,
}
SECONDS = float(os.environ.get("CONVEYOR_CHAOS_FLOW_SECONDS", "30"))


@pytest.fixture(params=["redis", "sqlite", "amqp"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    made = _url_for(request.param, tmp_path)
    try:
        yield with_results(made)  # amqp: its records, results and flow state in Redis
    finally:
        await _cleanup(made)


async def _connected(url: str) -> Conveyor:
    app = Conveyor(url, environ={})
    try:
        await app.connect()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    return app


def _starts(records: list[Record], task_ids: set[str]) -> list[float]:
    return [r["t"] for r in records if r["ev"] == "exec_start" and r["id"] in task_ids]


def max_running(records: list[Record], kills: dict[int, float]) -> int:
    """The most executions running at one instant: each from its exec_start to its
    exec_end, or to the SIGKILL of its process when it has none."""
    ends = {(r["pid"], r["id"]): r["t"] for r in records if r["ev"] == "exec_end"}
    edges: list[tuple[float, int]] = []
    for r in records:
        if r["ev"] != "exec_start":
            continue
        end = ends.get((r["pid"], r["id"]), kills.get(r["pid"]))
        assert end is not None, f"{r['id']} started on {r['pid']} and never ended"
        edges += [(r["t"], 1), (end, -1)]
    running = most = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start
        running += step
        most = max(most, running)
    return most


async def test_rate_limit_holds_across_processes_and_hosts(
    url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    app = await _connected(url)
    workers = cluster(url, **SETTINGS)
    workers.supervisor(2, concurrency=8, app=APP)  # "host" one: two processes
    workers.supervisor(1, concurrency=8, app=APP)  # "host" two: one process
    limited = app.register(flow_app.limited.fn, flow_app.limited.options)
    total = int(flow_app.RATE * SECONDS) + flow_app.RATE  # the bucket, then SECONDS at the limit
    async with app:
        ids = []
        for _ in range(total):
            handle = await limited.kiq(20)
            nemesis.enq_invoke(handle.task_id)
            nemesis.enq_ok(handle.task_id)
            ids.append(handle.task_id)
        began = time.monotonic()
        for task_id in ids:
            assert (await app.handle(task_id).wait_result(timeout=SECONDS * 3 + 30)).status == (
                "succeeded"
            )
            nemesis.result(task_id, "succeeded")
        took = time.monotonic() - began
    report = check(workers.ledger())
    starts = _starts(workers.ledger(), set(ids))
    busiest = max_in_window(starts)
    span = max(starts) - min(starts)
    print(
        f"\n[chaos rate {url.split(':')[0]}] {total} tasks in {took:.1f}s, starts over "
        f"{span:.1f}s, busiest second {busiest} (bound {2 * flow_app.RATE}); {report.summary()}"
    )
    report.assert_valid()
    assert report.completed == set(ids)
    assert not report.duplicates
    assert busiest <= flow_app.RATE + flow_app.RATE  # the limit plus the bucket size
    # the limit bound the run: the backlog past the bucket took about SECONDS
    assert span >= (total - flow_app.RATE) / flow_app.RATE * 0.9
    assert len({r["pid"] for r in workers.ledger() if r["ev"] == "exec_start"}) >= 2


async def test_killed_permit_holder_returns_its_permit_within_the_lease(
    url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    app = await _connected(url)
    workers = cluster(url, **SETTINGS)
    survivor_proc = workers.worker(concurrency=4, app=APP)
    victim_proc = workers.worker(concurrency=4, app=APP)
    narrow = app.register(flow_app.narrow.fn, flow_app.narrow.options)
    async with app:
        # two long tasks take both permits; then a backlog of short ones waits for them
        long_ids = [(await narrow.kiq(8000)).task_id for _ in range(2)]
        ledger_dir = workers.ledger_dir
        holders = await wait_for_ledger(
            ledger_dir,
            lambda rs: (
                len({r["id"] for r in rs if r["ev"] == "exec_start"}) == 2
                and {r["pid"] for r in rs if r["ev"] == "exec_start"}
            ),
            20,
            "both permits to be held",
        )
        short_ids = [(await narrow.kiq(300)).task_id for _ in range(8)]
        ids = long_ids + short_ids
        for task_id in ids:
            nemesis.enq_invoke(task_id)
            nemesis.enq_ok(task_id)
        victim = victim_proc if victim_proc.pid in holders else survivor_proc
        assert victim.pid in holders
        killed_at = time.time()
        nemesis.fault("sigkill", victim.pid)
        victim.kill()
        replacement = workers.worker(concurrency=4, app=APP)
        assert replacement.alive
        for task_id in ids:
            result = await app.handle(task_id).wait_result(timeout=60)
            nemesis.result(task_id, result.status.value)
    records = workers.ledger()
    report = check(records)
    # the first start after the kill: a short task, or the killed long one run again
    firsts = sorted(r["t"] for r in records if r["ev"] == "exec_start" and r["t"] > killed_at)
    returned_after = firsts[0] - killed_at
    bound = LEASE + PERMIT_WAIT * 1.5 + 1.0  # the lease, a waiter's wait, a claim
    most = max_running(records, {victim.pid: killed_at})
    print(
        f"\n[chaos permit {url.split(':')[0]}] first start after the kill "
        f"{returned_after:.2f}s (bound {bound:.2f}s), most running {most}; {report.summary()}"
    )
    report.assert_valid()
    assert report.completed == set(ids)
    assert most <= flow_app.PERMITS, f"{most} ran at once under a limit of {flow_app.PERMITS}"
    # the dead worker's permit held for the rest of its lease (renewed every lease/3, so
    # at least 2/3 of it), then came back within the lease bound
    assert returned_after >= LEASE * 2 / 3 - 0.2, returned_after
    assert returned_after <= bound, returned_after
    if len(holders) == 2:  # the survivor's long task still held the other permit then
        survivor_end = max(
            r["t"]
            for r in records
            if r["ev"] == "exec_end" and r["id"] in long_ids and r["pid"] != victim.pid
        )
        assert firsts[0] < survivor_end
