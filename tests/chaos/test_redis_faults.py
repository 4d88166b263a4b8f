"""Fault injection against real Redis and real worker processes (reliability.md §6.2).

Each test starts ``conveyor`` worker processes on a Redis key prefix of its own, drives
``probe`` tasks through them while it injects one kind of fault, drains the broker, and
judges the run with the ledger checker: nothing enqueued is lost (G1), every duplicate
execution is explained by a fault (G2), and the scenario's own bound holds (G3, G5, G6).
Timeouts are compressed through ``CONVEYOR_*`` variables; margins are loose because this
runs on a small, noisy machine, but the guarantees are never relaxed.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable

import msgspec
import pytest
import redis
import redis.asyncio as aioredis

from conveyor.brokers.redis.keys import Keys
from conveyor.message import SCHEMA_VERSION, Message, encode_message
from tests.chaos.chaos_app import PROBE_RETRIES
from tests.chaos.conftest import ClusterFactory, RedisServer
from tests.chaos.harness import (
    Producer,
    drain,
    ends,
    in_flight,
    judge,
    pause_a_worker_mid_task,
    starts,
    wait_for_ledger,
)
from tests.chaos.ledger import Ledger

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
# scheduling noise allowance on a busy 2-core box, on top of every documented bound
SLACK = 1.5


def _prefix(url: str) -> str:
    return url.rsplit("prefix=", 1)[1]


# -- S1: SIGKILL ---------------------------------------------------------------------


async def test_killed_worker_tasks_restart_elsewhere_within_lease(
    redis_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S1: a worker is SIGKILLed with tasks in flight; each restarts on the survivor
    within lease + reap interval, none is lost, and only the killed attempts rerun."""
    await check_killed_worker_tasks_restart_elsewhere(redis_url, cluster, nemesis)


async def check_killed_worker_tasks_restart_elsewhere(
    url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S1 on ``url`` (one Redis here; a cluster in test_redis_topology_faults.py)."""
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
        records = workers.ledger()
        interrupted = in_flight(records, victim.pid)
        assert len(interrupted) == 6, "the tasks should still be running at the kill"
        killed_at = time.time()
        nemesis.fault("sigkill", victim.pid)
        victim.kill()
        # load on the survivor while the dead worker's leases run out
        ids += await producer.enqueue_many([("sleep", 50)] * 100)
        await drain(producer.app, nemesis, ids, quiet_until=killed_at + LEASE + REAP, timeout=30)
    report = judge(workers)
    assert report.completed == set(ids)
    assert report.duplicated_ids == interrupted, "only the killed attempts may run twice"
    recoveries = [r for r in report.recoveries if r.kind == "sigkill"]
    assert {r.id for r in recoveries} == interrupted
    assert all(r.latency is not None for r in recoveries)
    bound = LEASE + REAP + SLACK
    assert report.max_recovery is not None and report.max_recovery <= bound, report.recoveries
    for task_id in interrupted:
        (first, second) = report.starts[task_id]
        assert (first["pid"], second["pid"]) == (victim.pid, survivor.pid)
        assert second["attempt"] == 2


# -- S15: malformed entries ----------------------------------------------------------


async def test_raw_malformed_entries_are_dead_lettered_with_their_bytes(
    redis_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S15: entries written straight into the stream, bypassing the client, go to the
    DLQ byte-identical with a reason; nothing stays pending; real tasks still run."""
    workers = cluster(redis_url, **SETTINGS)
    workers.worker(concurrency=4)
    keys = Keys(_prefix(redis_url))
    stream = keys.stream("default", 0)
    valid = Message(SCHEMA_VERSION, "x", "tests.chaos.chaos_app:probe", "default", ["x"])
    unknown = msgspec.structs.replace(valid, task_id="unknown-1", task="nowhere:missing")
    # case -> raw stream fields; entries with both i and b keep i as their id and b as body,
    # others are dead-lettered under their entry id with the msgpack of their raw fields
    # (lib.lua entry_message)
    cases: dict[str, list[bytes]] = {
        "foreign fields": [b"foo", b"bar"],
        "id without body": [b"i", b"only-an-id"],
        "not msgpack": [b"i", b"garbage-1", b"b", b"\xc1\xff not msgpack"],
        "truncated": [b"i", b"truncated-1", b"b", encode_message(valid)[:9]],
        "wrong schema version": [
            b"i",
            b"version-99",
            b"b",
            msgspec.msgpack.encode([99, "version-99", "t", "q"]),
        ],
        "map, not an envelope": [b"i", b"a-map", b"b", msgspec.msgpack.encode({"task": "x"})],
        "unknown task": [b"i", b"unknown-1", b"b", encode_message(unknown)],
    }
    client = aioredis.Redis.from_url(redis_url.split("?")[0])
    expected: dict[str, tuple[str, bytes]] = {}  # DLQ id -> (case, body)
    try:
        async with Producer(redis_url, nemesis) as producer:
            ids = [await producer.enqueue("sleep", 10)]
            for case, fields in cases.items():
                pairs = dict(zip(fields[::2], fields[1::2], strict=True))
                entry = (await client.xadd(stream, pairs)).decode()  # type: ignore[arg-type]
                if b"i" in pairs and b"b" in pairs:
                    task_id, body = pairs[b"i"].decode(), pairs[b"b"]
                else:
                    task_id = entry
                    body = msgspec.msgpack.encode([f.decode() for f in fields])
                nemesis.enq_invoke(task_id)
                nemesis.enq_ok(task_id)
                expected[task_id] = (case, body)
            ids += await producer.enqueue_many([("sleep", 10)] * 20)
            await drain(producer.app, nemesis, ids, timeout=20)
            dead = {e.id: e for e in await producer.app.broker.dead_letters()}
            pending = await client.xpending(stream, keys.group)
            length = await client.xlen(stream)
    finally:
        await client.aclose()
    report = judge(workers)
    assert report.completed == set(ids)
    assert set(dead) == set(expected)
    for task_id, (case, body) in expected.items():
        entry = dead[task_id]
        assert entry.body == body, case
        assert entry.reason, case
        print(f"[chaos] {case}: {entry.reason}")
    assert pending["pending"] == 0
    assert length == 0


# -- S4: SIGTERM ---------------------------------------------------------------------


async def test_sigterm_drains_short_tasks_and_releases_long_ones_at_once(
    redis_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S4: on SIGTERM a worker finishes its short tasks, cancels the long ones at grace
    and releases them uncharged; they restart on another worker at once (not after a
    lease), and the worker exits within grace."""
    grace = 3.0
    workers = cluster(redis_url, **{**SETTINGS, "grace": grace})
    draining = workers.worker(concurrency=4)
    async with Producer(redis_url, nemesis) as producer:
        short = await producer.enqueue_many([("sleep", 4000)] * 2)
        long = await producer.enqueue_many([("long", 8000)] * 2)
        await wait_for_ledger(
            workers.ledger_dir,
            lambda rs: len(in_flight(rs, draining.pid)) == 4,
            20,
            "the first worker to start all four tasks",
        )
        started = min(r["t"] for r in starts(workers.ledger(), draining.pid))
        taker = workers.worker(concurrency=4)
        # SIGTERM 2.5-3.5 s into the tasks: the short ones then need 0.5-1.5 s (< grace),
        # the long ones 4.5-5.5 s (> grace)
        # sleep: the fault's moment on the tasks' timeline (real processes, real time)
        await asyncio.sleep(max(started + 2.5 - time.time(), 0))
        # the premise of the timeline, not a speed bound: SIGTERM comes before the short
        # tasks could end by themselves, and the long ones still outlast the grace
        assert time.time() - started < 3.5, "the second worker took too long to start"
        assert in_flight(workers.ledger(), draining.pid) == set(short + long)
        stopped_at = time.time()
        nemesis.fault("sigterm", draining.pid)
        draining.send(signal.SIGTERM)
        code = await asyncio.to_thread(draining.popen.wait, grace + 10)
        exit_after = time.time() - stopped_at
        await drain(producer.app, nemesis, short + long, timeout=30)
    report = judge(workers)
    print(f"[chaos] SIGTERM: exit code {code} after {exit_after:.2f}s (grace {grace}s)")
    assert code == 0
    assert exit_after <= grace + SLACK
    assert report.completed == set(short + long)
    records = workers.ledger()
    for task_id in short:
        assert [(r["pid"], r["outcome"]) for r in ends(records) if r["id"] == task_id] == [
            (draining.pid, "ok")
        ]
    assert report.duplicated_ids == set(long)
    for task_id in long:
        _, second = report.starts[task_id]
        (cancelled,) = [r for r in ends(records, draining.pid) if r["id"] == task_id]
        assert cancelled["outcome"] == "cancelled"
        assert cancelled["t"] - stopped_at >= grace - 0.5, "cancelled before the grace ended"
        assert second["pid"] == taker.pid
        assert second["attempt"] == 1, "a released attempt is not charged"
        restart = second["t"] - cancelled["t"]
        print(f"[chaos] SIGTERM: released task restarted {restart:.3f}s after its cancel")
        assert restart < REAP + 0.5 < LEASE, "released tasks restart at once, not after a lease"


# -- S5: SIGSTOP (zombie) ------------------------------------------------------------


async def test_paused_worker_loses_its_task_and_its_late_completion_is_rejected(
    redis_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S5: a worker is SIGSTOPped mid-task for 3.5 leases; another worker takes the task
    over; when the zombie resumes and finishes, its ack is refused (not owner), its result
    is never written, and the only result is the new owner's."""
    lease = 1.0
    run = await pause_a_worker_mid_task(redis_url, cluster, nemesis, {**SETTINGS, "lease": lease})
    assert run.owner_running_at_refusal, "the new owner should still be running"
    assert run.result.return_value == {"pid": run.owner_pid, "attempt": 2}
    assert run.report.executions(run.task_id) == 2
    (duplicate,) = run.report.duplicates
    assert duplicate.because == "sigstop"
    print(
        f"[chaos] SIGSTOP: takeover {run.takeover_after:.2f}s after the pause (lease {lease}s); "
        f"zombie resumed {run.resumed_after:.2f}s after it, finished "
        f"{run.zombie_finished_after:.2f}s later and was refused"
    )
    assert run.takeover_after <= lease + REAP + SLACK
    log = run.zombie_log
    assert re.search(rf"task {run.task_id}: lease lost before settling", log), log


# -- S14: poison ---------------------------------------------------------------------


async def test_poison_tasks_are_dead_lettered_after_exactly_max_attempts(
    redis_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S14: a task that always raises, then one that kills its worker every time, are
    dead-lettered after exactly N = retries + 1 started attempts, under a supervisor that
    restarts the dead workers, while 200 normal tasks all complete.

    The normal stream starts after the first crash: a task caught in all N crashes would
    be dead-lettered with the poison (see the xfail test below)."""
    attempts = PROBE_RETRIES + 1
    workers = cluster(redis_url, **SETTINGS)
    supervisor = workers.supervisor(workers=2, concurrency=8)
    async with Producer(redis_url, nemesis) as producer:
        raiser = await producer.enqueue("raise")
        await wait_for_ledger(
            workers.ledger_dir,
            lambda rs: len([r for r in ends(rs) if r["id"] == raiser]) == attempts,
            15,
            "the raiser's attempts",
        )
        crasher = await producer.enqueue("exit")
        await wait_for_ledger(
            workers.ledger_dir,
            lambda rs: [r for r in rs if r["ev"] == "fault_start"],
            15,
            "the first crash",
        )
        # a steady stream of normal tasks for as long as the poison keeps crashing workers
        normal = await producer.enqueue_many([("sleep", 300)] * 200, rate=25)
        waited = await drain(producer.app, nemesis, [crasher, raiser, *normal], timeout=60)
        crasher_result = await producer.app.handle(crasher).result()
    report = judge(workers)
    assert supervisor.alive
    assert report.completed == set(normal)
    assert set(report.dead) == {crasher, raiser}
    assert [r["attempt"] for r in report.starts[crasher]] == list(range(1, attempts + 1))
    assert [r["attempt"] for r in report.starts[raiser]] == list(range(1, attempts + 1))
    assert report.dead[crasher]["reason"].startswith(f"poison: attempt {attempts + 1} exceeds")
    assert report.dead[raiser]["reason"].startswith(f"failed after {attempts} attempt(s)")
    crashes = [f for f in report.faults if f.kind == "self_exit"]
    assert len(crashes) == attempts
    normal_dups = report.duplicated_ids & set(normal)
    records = workers.ledger()
    queued_at = {r["id"]: r["t"] for r in records if r["ev"] == "enq_ok"}
    done_at = {r["id"]: r["t"] for r in ends(records) if r["outcome"] == "ok"}
    waits = sorted(done_at[i] - queued_at[i] for i in normal)
    p50, p99 = waits[len(waits) // 2], waits[int(len(waits) * 0.99) - 1]
    assert crasher_result is not None
    killed = [r for r in report.recoveries if r.id in set(normal)]
    # attempts charged to a normal task that never started it: fetched in the poison's batch
    unstarted = sum(report.starts[i][-1]["attempt"] - len(report.starts[i]) for i in normal)
    print(
        f"[chaos] poison: {len(crashes)} worker crashes, drained in {waited:.1f}s, "
        f"{len(normal_dups)} normal tasks rerun (explained by the crashes); normal task "
        f"enqueue->done p50 {p50:.2f}s p99 {p99:.2f}s max {waits[-1]:.2f}s, max restart "
        f"after a crash {max((r.latency or 0 for r in killed), default=0):.2f}s; "
        f"{unstarted} attempts charged to normal tasks that never started them; "
        f"DLQ attempts field: crasher={report.dead[crasher]['attempts']} "
        f"raiser={report.dead[raiser]['attempts']}, crasher result attempts="
        f"{crasher_result.attempts}; workers started: {len(supervisor.started_pids())}"
    )
    # G5: after its second crash the poison runs alone in its worker, so it can take a
    # normal task down with it at most once (its second attempt still runs beside others)
    assert all(report.executions(i) <= 2 for i in normal), normal_dups
    # G3: any normal task a crash did kill restarted within lease + reap interval, plus one
    # more per later crash that took it down again before it started; the poison held up
    # no other task by more than a lease
    assert all(r.latency is not None for r in killed)
    for recovery in killed:
        fault = next(f for f in crashes if f.target == recovery.pid)
        restarted = fault.start + (recovery.latency or 0)
        again = len([f for f in crashes if fault.start < f.start < restarted])
        assert (recovery.latency or 0) <= (1 + again) * (LEASE + REAP) + SLACK, recovery
    untouched = [
        done_at[i] - queued_at[i]
        for i in normal
        if [r["attempt"] for r in report.starts[i]] == [1]  # never killed, never charged
    ]
    assert max(untouched) <= 0.3 + LEASE + SLACK


async def test_tasks_sharing_a_worker_with_a_poison_task_are_not_dead_lettered(
    redis_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """G5: a task that kills its worker must not take the tasks running beside it to the
    dead-letter queue. One worker process runs five normal tasks and the poison."""
    workers = cluster(redis_url, **SETTINGS)
    workers.supervisor(workers=1, concurrency=8)
    async with Producer(redis_url, nemesis) as producer:
        normal = await producer.enqueue_many([("sleep", 3000)] * 5, parallel=1)
        crasher = await producer.enqueue("exit")
        await drain(producer.app, nemesis, [*normal, crasher], timeout=40)
    report = judge(workers)
    print(f"[chaos] hostages: {sorted(r['reason'][:40] for r in report.dead.values())}")
    assert set(report.dead) == {crasher}
    assert report.completed == set(normal)


# -- S8: broker restart --------------------------------------------------------------


async def test_redis_killed_and_restarted_loses_no_acknowledged_enqueue(
    redis_server: Callable[..., RedisServer], cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S8: a private durable Redis (appendfsync always) is SIGKILLed under load and
    restarted on the same data directory 1 s later: no acknowledged enqueue is lost, no
    worker process exits (G6), and work resumes by itself."""
    server = redis_server(durable=True)
    url = f"{server.url}?prefix=chaos"
    workers = cluster(url, **SETTINGS)
    pool = [workers.worker(concurrency=8), workers.worker(concurrency=8)]
    pids = [p.pid for p in pool]
    async with Producer(url, nemesis) as producer:
        load = asyncio.create_task(
            producer.enqueue_many([("sleep", 20)] * 400, parallel=8, rate=80, retry_for=30)
        )
        await wait_for_ledger(
            workers.ledger_dir, lambda rs: len(starts(rs)) >= 50, 20, "load to flow"
        )
        fid = nemesis.fault_start("redis_sigkill", None)
        server.kill()
        killed_at = time.time()
        await asyncio.sleep(1.0)  # sleep: the outage lasts a second of real time
        await asyncio.to_thread(server.start)
        restarted_at = time.time()
        nemesis.fault_end(fid, "redis_sigkill", None)
        ids = await load
        await drain(producer.app, nemesis, ids, quiet_until=restarted_at + LEASE + REAP)
    report = judge(workers)
    assert report.completed == set(ids)
    assert [p.alive for p in pool] == [True, True], "a worker exited on a broker fault"
    assert all(len(p.started_pids()) == 1 for p in pool)
    assert [p.pid for p in pool] == pids
    resumed = min(r["t"] for r in starts(workers.ledger()) if r["t"] > restarted_at)
    print(
        f"[chaos] redis restart: down {restarted_at - killed_at:.2f}s, first task started "
        f"{resumed - restarted_at:.2f}s after the restart, {report.enq_failures} failed "
        f"enqueue calls retried"
    )
    assert resumed - restarted_at < 10.0, "workers did not resume after the broker healed"


# -- S10: connection kills -----------------------------------------------------------


async def test_workers_recover_from_repeated_client_kills(
    redis_server: Callable[..., RedisServer], cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S10: ``CLIENT KILL TYPE normal`` cuts every worker (and producer) connection,
    again and again, under load; workers reconnect by themselves and nothing is lost.
    (A private Redis: on the shared one this would cut other tests' connections.)"""
    server = redis_server()
    url = f"{server.url}?prefix=chaos"
    workers = cluster(url, **SETTINGS)
    pool = [workers.worker(concurrency=8), workers.worker(concurrency=8)]
    admin = server.client()
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
            for _ in range(8):
                killed += await asyncio.to_thread(
                    admin.client_kill_filter, _type="normal", skipme=True
                )
                await asyncio.sleep(0.5)  # sleep: the nemesis' rhythm, a kill every 0.5 s
            healed_at = time.time()
            nemesis.fault_end(fid, "client_kill", None)
            ids = await load
            await drain(producer.app, nemesis, ids, quiet_until=healed_at + LEASE + REAP)
    finally:
        admin.close()
    report = judge(workers)
    assert report.completed == set(ids)
    assert all(p.alive for p in pool), "a worker exited on a dropped connection"
    after = [r for r in starts(workers.ledger()) if r["t"] > healed_at]
    print(
        f"[chaos] client kill: {killed} connections killed in 8 rounds; {len(after)} starts after"
    )


# -- S7: long task -------------------------------------------------------------------


async def test_task_ten_leases_long_runs_exactly_once(
    redis_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S7: a task running 10x the lease keeps it through renewals: one execution, one
    delivery, while another worker reaps all along."""
    lease = 1.0
    workers = cluster(redis_url, **{**SETTINGS, "lease": lease})
    pool = [workers.worker(concurrency=2), workers.worker(concurrency=2)]
    keys = Keys(_prefix(redis_url))
    client = redis.asyncio.Redis.from_url(redis_url.split("?")[0])
    try:
        async with Producer(redis_url, nemesis) as producer:
            task_id = await producer.enqueue("long", int(10 * lease * 1000))
            await wait_for_ledger(workers.ledger_dir, starts, 20, "the task to start")
            deliveries = []
            for _ in range(4):
                await asyncio.sleep(2 * lease)  # sleep: a look every 2 leases of the run
                (entry,) = await client.xpending_range(
                    keys.stream("default", 0), keys.group, "-", "+", 10
                )
                deliveries.append(entry["times_delivered"])
            await drain(producer.app, nemesis, [task_id], timeout=20)
    finally:
        await client.aclose()
    report = judge(workers)
    assert report.completed == {task_id}
    assert report.executions(task_id) == 1
    assert deliveries == [1, 1, 1, 1], "the entry was reclaimed while running"
    assert all(p.alive for p in pool)


# -- S6: blocked event loop ----------------------------------------------------------


async def test_task_blocking_its_event_loop_for_three_leases_runs_once(
    redis_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S6: a task that blocks its event loop (time.sleep in async code) for 3x the lease
    keeps its lease through the renewal thread; an idle second worker reaping all the
    while does not take it over."""
    lease = 1.0
    workers = cluster(redis_url, **{**SETTINGS, "lease": lease})
    pool = [workers.worker(concurrency=2), workers.worker(concurrency=2)]
    async with Producer(redis_url, nemesis) as producer:
        task_id = await producer.enqueue("block_loop", int(3 * lease * 1000))
        await drain(producer.app, nemesis, [task_id], timeout=20)
    report = judge(workers)
    assert report.completed == {task_id}
    assert report.executions(task_id) == 1
    assert all(p.alive for p in pool)
    ran_on = report.starts[task_id][0]["pid"]
    idle = next(p for p in pool if p.pid != ran_on)
    assert not starts(workers.ledger(), idle.pid)
    assert "lease of task" not in "".join(p.log() for p in pool)


async def test_a_result_the_server_refuses_fails_the_task_once_with_the_reason(
    redis_server: Callable[..., RedisServer],
) -> None:
    """A result over the server's proto-max-bulk-len: Redis refuses the ack's script call.
    The task used to run 3 times and be dead-lettered as "poison: worker killed"; it now
    fails once, naming the refusal, and the tasks settled beside it are unharmed."""
    from conveyor import TaskStatus
    from tests.conftest import eventually, fast_app, nothing_pending

    server = redis_server()
    client = server.client()
    client.config_set("proto-max-bulk-len", 1024 * 1024)
    client.close()
    app = fast_app(server.url, lease=2.0)
    runs: list[int] = []

    @app.task(name="big")
    async def big() -> str:
        runs.append(1)
        return "x" * 2_000_000  # under max_result_bytes (16 MiB), over the server's limit

    @app.task(name="small")
    async def small(n: int) -> int:
        return n

    async with app, app.worker():
        refused = await big.kiq()
        others = [await small.kiq(n) for n in range(5)]
        result = await refused.wait_result(timeout=15)
        assert [await h.get(timeout=5) for h in others] == list(range(5))
        # settled: a redelivery would leave it pending (leased until the lease runs out)
        await eventually(lambda: nothing_pending(app), what="nothing pending")
    assert runs == [1]
    assert result.status is TaskStatus.FAILED
    assert result.error is not None
    assert "result not stored: the broker refused it" in result.error.message
    assert "invalid bulk length" in result.error.message
