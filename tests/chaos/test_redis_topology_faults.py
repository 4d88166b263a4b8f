"""Fault injection on the Redis topologies the tests start themselves (tests/topologies.py):
a 3-master, 3-replica Redis Cluster and a master/replica pair behind three sentinels.

As in test_redis_faults.py, real ``conveyor`` worker processes run ``probe`` tasks while
a fault is injected, and the ledger checker judges the run: nothing enqueued is lost
(G1), every duplicate is explained by a fault (G2), in-flight work restarts within the
lease bound (G3), no worker exits (G6). A failover here is a master SIGKILLed and a
replica promoted (``cluster-node-timeout`` / ``down-after-milliseconds`` 1 s). Replication
is asynchronous: a write acknowledged by the master but not yet sent to its replica is
lost with it (docs/scale.md, "What a failover can lose"); on loopback the replica is
microseconds behind, and these tests assert that nothing acknowledged was lost.

The topologies are shared by the session; each test uses a prefix of its own and leaves
every node running (the killed master restarted, rejoining as a replica).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis

from tests.chaos.conftest import ClusterFactory
from tests.chaos.harness import Producer, drain, in_flight, judge, starts, wait_for_ledger
from tests.chaos.ledger import Ledger
from tests.topologies import RedisCluster, SentinelGroup

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
# Open finding: a master SIGKILLed under this load loses acknowledged enqueues (105 of
# 2,000 on the cluster, 395 on the sentinel group in the first runs), more than a
# loopback replica's lag explains; not diagnosed yet. Kept running so a fix shows up.
_FAILOVER_LOSS = pytest.mark.xfail(
    reason="failover under load loses acknowledged enqueues: open, see docs/scale.md",
    strict=False,
)


def _url(base: str) -> str:
    return f"{base}?prefix=chaos-{uuid.uuid4().hex[:10]}"


async def _kill_master_under_load(
    url: str,
    cluster: ClusterFactory,
    nemesis: Ledger,
    kill: object,
    healthy: object,
) -> None:
    """2,000 tasks enqueued at a steady rate to two workers; ``kill()`` SIGKILLs the
    master mid-load; ``healthy()`` waits for the promoted replica; every task completes,
    no worker exits, and work resumes by itself."""
    assert callable(kill) and callable(healthy)
    workers = cluster(url, **SETTINGS)
    pool = [workers.worker(concurrency=16), workers.worker(concurrency=16)]
    async with Producer(url, nemesis) as producer:
        load = asyncio.create_task(
            producer.enqueue_many([("sleep", 5)] * LOAD, parallel=8, rate=400, retry_for=60)
        )
        await wait_for_ledger(
            workers.ledger_dir, lambda rs: len(starts(rs)) >= 300, 30, "load to flow"
        )
        fid = nemesis.fault_start("master_sigkill", None)
        killed_at = time.time()
        await asyncio.to_thread(kill)
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
    resumed = min(r["t"] for r in starts(workers.ledger()) if r["t"] > failed_over_at)
    print(
        f"[chaos] failover: {failed_over_at - killed_at:.2f}s to a promoted master, first "
        f"start {resumed - failed_over_at:.2f}s after; {report.enq_failures} failed "
        f"enqueue calls retried; {len(report.duplicated_ids)} duplicate runs"
    )
    assert resumed - failed_over_at < 10.0, "workers did not resume after the failover"


@_FAILOVER_LOSS
async def test_cluster_master_killed_under_load_fails_over_losing_nothing(
    redis_cluster: RedisCluster, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    url = _url(redis_cluster.url)
    prefix = url.rsplit("prefix=", 1)[1]
    victim = redis_cluster.master_of(f"{{{prefix}:default}}")

    def healthy() -> None:
        redis_cluster.wait_healthy()

    try:
        await _kill_master_under_load(url, cluster, nemesis, victim.kill, healthy)
        assert victim.port not in redis_cluster.master_ports(), "no replica took over"
    finally:
        if not victim.alive:
            redis_cluster.restart(victim)
        redis_cluster.wait_healthy()


@_FAILOVER_LOSS
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
        await _kill_master_under_load(url, cluster, nemesis, victim.kill, promoted)
    finally:
        if not victim.alive:
            victim.start()  # the sentinels turn it into the new master's replica
        redis_sentinel.wait_replicating()


async def test_cluster_killed_worker_tasks_restart_within_lease(
    redis_cluster: RedisCluster, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """A worker SIGKILLed with tasks in flight: each restarts on the survivor within
    lease + reap interval; only the killed attempts run twice."""
    url = _url(redis_cluster.url)
    workers = cluster(url, **SETTINGS)
    victim = workers.worker(concurrency=6)
    async with Producer(url, nemesis) as producer:
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
        await drain(producer.app, nemesis, ids, quiet_until=killed_at + LEASE + REAP, timeout=30)
    report = judge(workers)
    assert report.completed == set(ids)
    assert report.duplicated_ids == interrupted, "only the killed attempts may run twice"
    assert report.max_recovery is not None
    assert report.max_recovery <= LEASE + REAP + SLACK, report.recoveries
    assert all(report.starts[t][1]["pid"] == survivor.pid for t in interrupted)


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
