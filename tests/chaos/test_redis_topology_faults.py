"""Fault injection on the Redis topologies the tests start themselves (tests/topologies.py):
a 3-master, 3-replica Redis Cluster and a master/replica pair behind three sentinels.

As in test_redis_faults.py, real ``conveyor`` worker processes run ``probe`` tasks while
a fault is injected, and the ledger checker judges the run: nothing enqueued is lost
(G1), every duplicate is explained by a fault (G2), in-flight work restarts within the
lease bound (G3), no worker exits (G6). A failover here is a master SIGKILLed and a
replica promoted (``cluster-node-timeout`` / ``down-after-milliseconds`` 1 s). Replication
is asynchronous: a write acknowledged by the master but not yet sent to its replica is
lost with it (docs/scale.md, "What a failover can lose"). The tests kill a master only
once its replica finished its full sync (``replicas_in_sync``); from then on a loopback
replica receives each write in the same event-loop turn as the client's reply, so the
window is microseconds wide and these tests assert that nothing acknowledged was lost.

The topologies are shared by the session; each test uses a prefix of its own and leaves
every node running (the killed master restarted, rejoining as a replica).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.chaos.conftest import ClusterFactory
from tests.chaos.harness import Producer, drain, judge, starts, wait_for_ledger
from tests.chaos.ledger import Ledger
from tests.chaos.test_redis_faults import check_killed_worker_tasks_restart_elsewhere
from tests.topologies import Node, RedisCluster, SentinelGroup, replicas_in_sync

pytestmark = [pytest.mark.slow, pytest.mark.service("redis")]

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
LOAD = 2000


def _url(base: str) -> str:
    return f"{base}?prefix=chaos-{uuid.uuid4().hex[:10]}"


async def _kill_master_under_load(
    url: str,
    cluster: ClusterFactory,
    nemesis: Ledger,
    victim: Node,
    healthy: Callable[[], None],
) -> None:
    """2,000 tasks enqueued at a steady rate to two workers; the ``victim`` master is
    SIGKILLed mid-load, once its replica is checked in sync; ``healthy()`` waits for the
    promoted replica. Every acknowledged task completes (the replica had every write the
    master acknowledged: loopback replication lags by microseconds, see the module
    docstring), a task running at the kill runs again within the lease bound of the
    promotion (G3), no worker exits (G6), and work resumes by itself."""
    workers = cluster(url, **SETTINGS)
    pool = [workers.worker(concurrency=16), workers.worker(concurrency=16)]
    async with Producer(url, nemesis) as producer:
        load = asyncio.create_task(
            producer.enqueue_many([("sleep", 5)] * LOAD, parallel=8, rate=400, retry_for=60)
        )
        await wait_for_ledger(
            workers.ledger_dir, lambda rs: len(starts(rs)) >= 300, 30, "load to flow"
        )
        assert replicas_in_sync(victim.port), "the victim's replica is not in sync"
        fid = nemesis.fault_start("master_sigkill", None)
        killed_at = time.time()
        await asyncio.to_thread(victim.kill)
        await asyncio.to_thread(healthy)
        failed_over_at = time.time()
        nemesis.fault_end(fid, "master_sigkill", None)
        ids = await load
        await drain(
            producer.app, nemesis, ids, quiet_until=failed_over_at + LEASE + REAP, timeout=60
        )
    report = judge(workers)
    assert len(ids) == LOAD
    assert report.completed == set(ids), "an acknowledged enqueue was lost in the failover"
    assert all(p.alive for p in pool), "a worker exited on a failover"
    records = workers.ledger()
    resumed = min(r["t"] for r in starts(records) if r["t"] > failed_over_at)
    # G3: a task whose attempt was running at the kill starts again (its lease lapses on
    # the promoted master, the reaper requeues it) within lease + reap of the promotion
    late = {
        task: t - failed_over_at
        for task, t in _rerun_after(records, killed_at).items()
        if t - failed_over_at > LEASE + REAP + SLACK
    }
    assert not late, f"interrupted tasks restarted past the lease bound: {late}"
    print(
        f"[chaos] failover: {failed_over_at - killed_at:.2f}s to a promoted master, first "
        f"start {resumed - failed_over_at:.2f}s after; {report.enq_failures} failed "
        f"enqueue calls retried; {len(report.duplicated_ids)} duplicate runs"
    )
    assert resumed - failed_over_at < 10.0, "workers did not resume after the failover"


def _rerun_after(records: list[dict[str, Any]], killed_at: float) -> dict[str, float]:
    """Tasks with an attempt started before ``killed_at`` and another after it: when
    the first later attempt started."""
    first: dict[str, float] = {}
    again: dict[str, float] = {}
    for record in sorted(starts(records), key=lambda r: r["t"]):
        task = record["id"]
        if record["t"] <= killed_at:
            first.setdefault(task, record["t"])
        elif task in first:
            again.setdefault(task, record["t"])
    return again


async def test_cluster_master_killed_under_load_fails_over_losing_nothing(
    redis_cluster: RedisCluster, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    url = _url(redis_cluster.url)
    prefix = url.rsplit("prefix=", 1)[1]
    victim = redis_cluster.master_of(f"{{{prefix}:default}}")

    def healthy() -> None:  # the promoted replica has no replica of its own until the restart
        redis_cluster.wait_healthy(replicated=False)

    try:
        await _kill_master_under_load(url, cluster, nemesis, victim, healthy)
        assert victim.port not in redis_cluster.master_ports(), "no replica took over"
    finally:
        if not victim.alive:
            redis_cluster.restart(victim)
        redis_cluster.wait_healthy()


async def test_sentinel_master_killed_under_load_fails_over_losing_nothing(
    redis_sentinel: SentinelGroup, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    url = _url(redis_sentinel.url)
    victim = redis_sentinel.current_master()

    def promoted() -> None:
        deadline = time.monotonic() + 30
        while redis_sentinel.current_master() is victim:
            assert time.monotonic() < deadline, "the sentinels promoted no replica"
            time.sleep(0.05)  # sleep: polling the sentinels

    try:
        await _kill_master_under_load(url, cluster, nemesis, victim, promoted)
    finally:
        if not victim.alive:
            victim.start()  # the sentinels turn it into the new master's replica
        redis_sentinel.wait_replicating()


async def test_cluster_killed_worker_tasks_restart_within_lease(
    redis_cluster: RedisCluster, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """A worker SIGKILLed with tasks in flight: each restarts on the survivor within
    lease + reap interval; only the killed attempts run twice (the one-server test's
    scenario and checks, on the cluster)."""
    await check_killed_worker_tasks_restart_elsewhere(_url(redis_cluster.url), cluster, nemesis)


async def test_cluster_workers_recover_from_client_kills_on_every_master(
    redis_cluster: RedisCluster, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """``CLIENT KILL TYPE normal`` on every master, again and again, under load: the
    workers reconnect by themselves and nothing is lost. (Other tests' connections to the
    private cluster are cut too: none runs at the same time.)"""
    url = _url(redis_cluster.url)
    workers = cluster(url, **SETTINGS)
    pool = [workers.worker(concurrency=8), workers.worker(concurrency=8)]
    admins = [redis.Redis(port=port) for port in sorted(redis_cluster.master_ports())]
    killed = 0
    try:
        async with Producer(url, nemesis) as producer:
            load = asyncio.create_task(
                producer.enqueue_many([("sleep", 30)] * 400, parallel=8, rate=70, retry_for=30)
            )
            await wait_for_ledger(
                workers.ledger_dir, lambda rs: len(starts(rs)) >= 20, 20, "load to flow"
            )
            fid = nemesis.fault_start("client_kill", None)
            for _ in range(6):
                for admin in admins:
                    killed += await asyncio.to_thread(
                        admin.client_kill_filter, _type="normal", skipme=True
                    )
                await asyncio.sleep(0.5)  # sleep: the nemesis' rhythm, a round every 0.5 s
            healed_at = time.time()
            nemesis.fault_end(fid, "client_kill", None)
            ids = await load
            await drain(producer.app, nemesis, ids, quiet_until=healed_at + LEASE + REAP)
    finally:
        for admin in admins:
            admin.close()
    report = judge(workers)
    assert report.completed == set(ids)
    assert killed > 0
    assert all(p.alive for p in pool), "a worker exited on a dropped connection"
    assert [r for r in starts(workers.ledger()) if r["t"] > healed_at], "work did not resume"


# -- scheduler HA across a failover ---------------------------------------------------

SCHED_SECONDS = 18.0
SCHED_KILL_AT = 6.0


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
@pytest.mark.timeout(SCHED_SECONDS + 120)
async def test_three_schedulers_enqueue_each_tick_once_across_a_master_failover(
    topology: str, request: pytest.FixtureRequest, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """Three ``conveyor scheduler`` processes fire the same schedules (1 s, 1 s
    catch-up, 5 s) while the master holding the queue (and with it the ticks'
    idempotency keys) is SIGKILLed and its replica promoted. No tick is enqueued twice
    or run twice (a run interrupted by the failover may run again: explained by the
    fault), none runs early, no scheduler exits; the catch-up schedule runs every tick of
    the run, the failover's included; the skip schedule runs every tick before the kill
    and from grace after the promotion (ticks of the outage older than grace are
    skipped by its policy)."""
    from tests.chaos.scheduler_app import CATCH_UP, SKIP
    from tests.chaos.test_scheduler_faults import (
        APP,
        EDGE,
        GRACE,
        INTERVALS,
        _cluster,
        _finish,
        _judge,
        _sends,
    )

    if topology == "sentinel":
        group: SentinelGroup = request.getfixturevalue("redis_sentinel")
        url = _url(group.url)
        victim = group.current_master()

        def promoted() -> None:
            deadline = time.monotonic() + 30
            while group.current_master() is victim:
                assert time.monotonic() < deadline, "the sentinels promoted no replica"
                time.sleep(0.05)  # sleep: polling the sentinels

        def restore() -> None:
            if not victim.alive:
                victim.start()
            group.wait_replicating()
    else:
        nodes: RedisCluster = request.getfixturevalue("redis_cluster")
        url = _url(nodes.url)
        victim = nodes.master_of(f"{{{url.rsplit('prefix=', 1)[1]}:default}}")

        def promoted() -> None:
            nodes.wait_healthy(replicated=False)

        def restore() -> None:
            if not victim.alive:
                nodes.restart(victim)
            nodes.wait_healthy()

    try:
        workers = _cluster(cluster, url)
        schedulers = [workers.scheduler(APP) for _ in range(3)]
        started = time.time()
        await asyncio.sleep(SCHED_KILL_AT)  # sleep: ticks to judge before the failover
        assert replicas_in_sync(victim.port), "the victim's replica is not in sync"
        fid = nemesis.fault_start("master_sigkill", None)
        killed_at = time.time()
        await asyncio.to_thread(victim.kill)
        await asyncio.to_thread(promoted)
        healed_at = time.time()
        nemesis.fault_end(fid, "master_sigkill", None)
        # sleep: ticks to judge after the failover, in the schedules' real time
        await asyncio.sleep(max(started + SCHED_SECONDS - time.time(), 0.0))
        ended = time.time()
        assert all(s.alive for s in schedulers), "a scheduler exited on a failover"
        records = await _finish(workers, nemesis, schedulers)
    finally:
        await asyncio.to_thread(restore)

    reports = _judge(
        [workers],
        records,
        started + EDGE,
        ended - EDGE,
        exactly=(CATCH_UP,),
        allow_explained_reruns=True,
    )
    skip = reports[SKIP]
    assert skip.missing(started + EDGE, killed_at - 0.5) == []
    assert skip.missing(healed_at + GRACE + 1.0, ended - EDGE) == []
    for proc in schedulers:
        assert _sends(records, proc.pid, after=healed_at), f"{proc} sent nothing after"
    checked = sum(len(r.expected(started + EDGE, ended - EDGE)) for r in reports.values())
    rejected = sum(r.rejected for r in reports.values())
    assert rejected > checked, "fewer rejected copies than ticks: the schedulers did not compete"
    print(
        f"[chaos scheduler] {topology} failover: {healed_at - killed_at:.1f}s to a promoted "
        f"master; {checked} ticks checked, {sum(r.admitted for r in reports.values())} "
        f"admitted, {rejected} rejected, {sum(len(r.reruns) for r in reports.values())} "
        f"reruns over {len(INTERVALS)} schedules"
    )
