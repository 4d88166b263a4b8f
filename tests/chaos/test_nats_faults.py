"""Fault injection against a real NATS JetStream and real worker processes (issue 18).

Each test starts a private ``nats-server -js`` on a port and store directory of its own,
``conveyor`` worker processes on it, drives ``probe`` tasks through them while it injects
one kind of fault, drains the broker, and judges the run with the ledger checker (the
same as the Redis suite's): nothing enqueued is lost (G1), every duplicate execution is
explained by a fault (G2), and the scenario's own bound holds (G3, G5, G6).

On NATS the lease is the consumer's AckWait and the server itself redelivers an expired
one: there is no reaper in the recovery bound, only AckWait. The timeouts are compressed
through ``CONVEYOR_*`` variables (AckWait = ``CONVEYOR_LEASE``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec
import nats
import pytest

from conveyor.brokers.nats.names import Names, token
from conveyor.message import SCHEMA_VERSION, Message, encode_message
from tests.chaos.chaos_app import PROBE_RETRIES
from tests.chaos.conftest import ClusterFactory, NatsServer
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
from tests.conftest import eventually

pytestmark = [pytest.mark.slow, pytest.mark.service("nats")]

LEASE = 2.0
SETTINGS = {
    "lease": LEASE,
    "reap_interval": 0.3,
    "fetch_wait": 0.2,
    "heartbeat_interval": 0.5,
    "grace": 2.0,
}
# scheduling noise allowance on a busy 2-core box, on top of every documented bound
SLACK = 1.5
PREFIX = "chaos"
NAMES = Names(PREFIX)


def _url(server: NatsServer) -> str:
    return f"{server.url}?prefix={PREFIX}"


async def _work_stream_state(server: NatsServer) -> tuple[int, int]:
    """(messages in the work stream, messages handed out and not acked, all queues)."""
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(NAMES.tasks)
        pending = sum(c.num_ack_pending for c in await js.consumers_info(NAMES.tasks))
        return info.state.messages, pending
    finally:
        await nc.close()


# -- server SIGKILL and restart --------------------------------------------------------


async def test_nats_killed_and_restarted_under_load_loses_nothing(
    nats_server: Callable[[], NatsServer], cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """The private nats-server is SIGKILLed while 1,000 tasks flow and restarted on the
    same store 1 s later: no acknowledged enqueue is lost, no worker process exits or
    restarts (G6: they reconnect), and work resumes by itself."""
    server = nats_server()
    url = _url(server)
    workers = cluster(url, **SETTINGS)
    pool = [workers.worker(concurrency=16), workers.worker(concurrency=16)]
    pids = [p.pid for p in pool]
    async with Producer(url, nemesis) as producer:
        load = asyncio.create_task(
            producer.enqueue_many([("sleep", 5)] * 1000, parallel=16, rate=250, retry_for=30)
        )
        await wait_for_ledger(
            workers.ledger_dir, lambda rs: len(starts(rs)) >= 250, 30, "load to flow"
        )
        fid = nemesis.fault_start("nats_sigkill", None)
        server.kill()
        killed_at = time.time()
        await asyncio.sleep(1.0)  # sleep: the outage lasts a second of real time
        await asyncio.to_thread(server.start)
        restarted_at = time.time()
        nemesis.fault_end(fid, "nats_sigkill", None)
        ids = await load
        waited = await drain(
            producer.app, nemesis, ids, quiet_until=restarted_at + LEASE, timeout=60
        )
        # the killed server may not have removed every acked message from the work-queue
        # stream; the reconciliation must delete those copies, not dead-letter them
        leftovers = await _work_stream_state(server)
        assert await producer.app.broker.dead.reconcile() == 0  # type: ignore[attr-defined]
        assert await producer.app.broker.dead_letters() == []
    report = judge(workers)
    assert len(ids) == 1000
    assert report.completed == set(ids)
    assert not report.dead
    assert [p.alive for p in pool] == [True, True], "a worker exited on a broker fault"
    assert all(len(p.started_pids()) == 1 for p in pool)
    assert [p.pid for p in pool] == pids
    resumed = min(r["t"] for r in starts(workers.ledger()) if r["t"] > restarted_at)

    # a copy whose ack the killed server lost comes back after AckWait and is dropped (its
    # task is finished): on a loaded box that can land after the drain, so wait for it,
    # within a few AckWaits, rather than look once
    async def stream_empty() -> bool:
        return await _work_stream_state(server) == (0, 0)

    await eventually(stream_empty, timeout=4 * LEASE + 5.0, every=0.2, what="copies dropped")
    print(
        f"[chaos] nats restart: down {restarted_at - killed_at:.2f}s, first task started "
        f"{resumed - restarted_at:.2f}s after the restart, {report.enq_failures} failed "
        f"enqueue calls retried, {len(report.duplicates)} reruns, drained in {waited:.1f}s; "
        f"(messages, pending) left in the work stream before the reconciliation: {leftovers}"
    )
    assert resumed - restarted_at < 10.0, "workers did not resume after the server healed"


# -- worker SIGKILL --------------------------------------------------------------------


async def test_killed_worker_tasks_come_back_after_ackwait_and_complete(
    nats_server: Callable[[], NatsServer], cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """A worker is SIGKILLed with six tasks in flight: the server redelivers each after
    AckWait, the survivor runs it as attempt 2, none is lost, and only the killed
    attempts run twice."""
    server = nats_server()
    url = _url(server)
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
        assert len(interrupted) == 6, "the tasks should still be running at the kill"
        killed_at = time.time()
        nemesis.fault("sigkill", victim.pid)
        victim.kill()
        # load on the survivor while the dead worker's leases run out
        ids += await producer.enqueue_many([("sleep", 50)] * 100)
        await drain(producer.app, nemesis, ids, quiet_until=killed_at + LEASE, timeout=30)
    report = judge(workers)
    assert report.completed == set(ids)
    assert report.duplicated_ids == interrupted, "only the killed attempts may run twice"
    recoveries = [r for r in report.recoveries if r.kind == "sigkill"]
    assert {r.id for r in recoveries} == interrupted
    assert all(r.latency is not None for r in recoveries)
    # the lease was last renewed up to lease/3 before the kill: back within one AckWait
    assert report.max_recovery is not None and report.max_recovery <= LEASE + SLACK
    for task_id in interrupted:
        (first, second) = report.starts[task_id]
        assert (first["pid"], second["pid"]) == (victim.pid, survivor.pid)
        assert second["attempt"] == 2
    assert await _work_stream_state(server) == (0, 0)
    print(f"[chaos] worker SIGKILL: max recovery {report.max_recovery:.2f}s (AckWait {LEASE}s)")


# -- SIGSTOP (zombie) ------------------------------------------------------------------


async def test_paused_worker_loses_its_task_and_its_late_ack_is_refused(
    nats_server: Callable[[], NatsServer], cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """A worker is SIGSTOPped mid-task for 3.5 AckWaits; the server redelivers the task
    to another worker; when the zombie resumes and finishes, its settlement is refused
    (the job record names the new delivery), its result is never written, and the only
    result is the new owner's."""
    lease = 1.0
    server = nats_server()
    run = await pause_a_worker_mid_task(
        _url(server), cluster, nemesis, {**SETTINGS, "lease": lease}
    )
    assert run.owner_running_at_refusal, "the new owner should still be running"
    assert run.result.return_value == {"pid": run.owner_pid, "attempt": 2}
    assert run.report.executions(run.task_id) == 2
    (duplicate,) = run.report.duplicates
    assert duplicate.because == "sigstop"
    print(
        f"[chaos] SIGSTOP: takeover {run.takeover_after:.2f}s after the pause "
        f"(AckWait {lease}s); zombie resumed {run.resumed_after:.2f}s after it, finished "
        f"{run.zombie_finished_after:.2f}s later and was refused"
    )
    # the last +WPI came up to lease/3 before the pause: redelivered within one AckWait
    assert run.takeover_after <= lease + SLACK
    assert await _work_stream_state(server) == (0, 0)


# -- poison ----------------------------------------------------------------------------


async def test_a_task_that_kills_its_worker_every_time_is_dead_lettered(
    nats_server: Callable[[], NatsServer], cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """A task that raises every time and one that kills its worker every time (under a
    supervisor that restarts it) are dead-lettered after exactly retries + 1 started
    attempts with their reason, and nothing loops: no more starts, nothing left in the
    work stream, while 100 normal tasks all complete."""
    attempts = PROBE_RETRIES + 1
    server = nats_server()
    url = _url(server)
    workers = cluster(url, **SETTINGS)
    supervisor = workers.supervisor(workers=2, concurrency=8)
    async with Producer(url, nemesis) as producer:
        raiser = await producer.enqueue("raise")
        crasher = await producer.enqueue("exit")
        await wait_for_ledger(
            workers.ledger_dir,
            lambda rs: [r for r in rs if r["ev"] == "fault_start"],
            15,
            "the first crash",
        )
        normal = await producer.enqueue_many([("sleep", 100)] * 100, rate=25)
        waited = await drain(producer.app, nemesis, [crasher, raiser, *normal], timeout=60)
        crasher_result = await producer.app.handle(crasher).result()
        # nothing loops: no more starts of the poison for two more AckWaits
        started = len(starts(workers.ledger()))
        await asyncio.sleep(2 * LEASE)  # sleep: time for a redelivery that must not come
        assert len(starts(workers.ledger())) == started
    report = judge(workers)
    assert supervisor.alive
    assert report.completed == set(normal)
    assert set(report.dead) == {crasher, raiser}
    assert [r["attempt"] for r in report.starts[crasher]] == list(range(1, attempts + 1))
    assert [r["attempt"] for r in report.starts[raiser]] == list(range(1, attempts + 1))
    assert report.dead[crasher]["reason"].startswith(f"poison: attempt {attempts + 1} exceeds")
    assert report.dead[raiser]["reason"].startswith(f"failed after {attempts} attempt(s)")
    assert len([f for f in report.faults if f.kind == "self_exit"]) == attempts
    assert crasher_result is not None and crasher_result.status.value == "dead"
    # a crash may take the normal tasks running beside it down once (G5)
    assert all(report.executions(i) <= 2 for i in normal)
    assert await _work_stream_state(server) == (0, 0)
    print(
        f"[chaos] poison: {attempts} crashes, drained in {waited:.1f}s, "
        f"{len(report.duplicated_ids & set(normal))} normal tasks rerun (explained), "
        f"workers started: {len(supervisor.started_pids())}; "
        f"reasons: {report.dead[crasher]['reason'][:60]!r}, {report.dead[raiser]['reason'][:40]!r}"
    )


# -- malformed bytes -------------------------------------------------------------------


async def test_raw_malformed_messages_are_dead_lettered_byte_identical(
    nats_server: Callable[[], NatsServer], cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """Messages published straight onto the work subject, bypassing the client (with and
    without the task-id header, and one on a priority level no client noted, written
    before the worker starts), go to the DLQ byte-identical with a reason; nothing stays
    in the work stream or pending; real tasks still run."""
    server = nats_server()
    url = _url(server)
    workers = cluster(url, **SETTINGS)
    valid = Message(SCHEMA_VERSION, "x", "tests.chaos.chaos_app:probe", "default", ["x"])
    unknown = msgspec.structs.replace(valid, task_id="unknown-1", task="nowhere:missing")
    # case -> (task-id header or None, raw body)
    cases: dict[str, tuple[str | None, bytes]] = {
        "empty, no header": (None, b""),
        "not msgpack, no header": (None, b"\xc1\xff not msgpack"),
        "json, no header": (None, b'{"task": "x"}'),
        "not msgpack": ("garbage-1", b"\xc1\xff not msgpack"),
        "truncated": ("truncated-1", encode_message(valid)[:9]),
        "wrong schema version": ("version-99", msgspec.msgpack.encode([99, "version-99", "t"])),
        "map, not an envelope": ("a-map", msgspec.msgpack.encode({"task": "x"})),
        "unknown task": ("unknown-1", encode_message(unknown)),
    }
    expected: dict[str, tuple[str, bytes]] = {}  # DLQ id -> (case, body)
    async with Producer(url, nemesis) as producer:  # its connect makes the streams
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            level_body = b"\xc1 on an unnoted level"
            await js.publish(
                NAMES.queue_subject("default", 5), level_body, headers={"Conveyor-Task": "level-5"}
            )
            nemesis.enq_invoke("level-5")
            nemesis.enq_ok("level-5")
            expected["level-5"] = ("priority level no client noted", level_body)
            workers.worker(concurrency=4)
            ids = [await producer.enqueue("sleep", 10)]
            for case, (task_id, body) in cases.items():
                headers = {"Conveyor-Task": token(task_id)} if task_id else None
                ack = await js.publish(NAMES.queue_subject("default"), body, headers=headers)
                dlq_id = task_id or f"nats-{NAMES.tasks}-{ack.seq}"
                nemesis.enq_invoke(dlq_id)
                nemesis.enq_ok(dlq_id)
                expected[dlq_id] = (case, body)
        finally:
            await nc.close()
        ids += await producer.enqueue_many([("sleep", 10)] * 20)
        await drain(producer.app, nemesis, ids, timeout=20)
        dead = {e.id: e for e in await producer.app.broker.dead_letters()}
    report = judge(workers)
    assert report.completed == set(ids)
    assert set(dead) == set(expected)
    for task_id, (case, body) in expected.items():
        entry = dead[task_id]
        assert entry.body == body, case
        assert entry.reason, case
        print(f"[chaos] {case}: {entry.reason}")
    assert await _work_stream_state(server) == (0, 0)
    # nothing loops: the dead letters stay where they are
    # sleep: one more AckWait, in which a message left unsettled would come back
    await asyncio.sleep(LEASE)
    assert await _work_stream_state(server) == (0, 0)
