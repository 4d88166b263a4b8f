"""Fault injection against real RabbitMQ and real worker processes (reliability.md §6.2).

Each test runs ``conveyor`` worker processes on a prefix of its own, drives ``probe``
tasks through them while it injects one fault, drains the broker, and judges the run
with the ledger checker: nothing enqueued is lost (G1), every duplicate execution is
explained by a fault (G2), and the scenario's own bound holds (G3, G5, G6).

Worker deaths, SIGTERM, poison and malformed messages run on the shared server (their
faults touch only this test's processes); a broker killed with ``kill -9`` and cut
connections run on a private node (``rabbit_node``) that the module starts and kills.
Task records and results live in the shared Redis under the test's prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import aio_pika
import msgspec
import pytest

from conveyor.brokers.rabbitmq import delete_namespace
from conveyor.errors import BrokerUnavailable
from conveyor.message import SCHEMA_VERSION, Message, encode_message
from tests.brokers.conftest import AMQP_URL, REDIS_URL, service_unavailable
from tests.chaos.chaos_app import PROBE_RETRIES
from tests.chaos.conftest import ClusterFactory, RabbitNode
from tests.chaos.harness import (
    Producer,
    drain,
    ends,
    in_flight,
    judge,
    starts,
    wait_for_ledger,
)
from tests.chaos.ledger import Ledger

pytestmark = [pytest.mark.slow, pytest.mark.service("rabbitmq")]

LEASE = 2.0
REAP = 0.3
SETTINGS = {
    "lease": LEASE,
    "reap_interval": REAP,
    "fetch_wait": 0.2,
    "heartbeat_interval": 0.5,
    "grace": 2.0,
    "fault_pause_max": 1.0,
}
# scheduling noise allowance on a busy 2-core box, on top of every documented bound
SLACK = 1.5


def _url(server: str) -> str:
    """``server`` with a fresh prefix, and the shared Redis for records and results."""
    results = quote(REDIS_URL, safe="")
    return f"{server}?prefix=chaos-{uuid.uuid4().hex[:12]}&results={results}"


async def _forget(url: str) -> None:
    with contextlib.suppress(BrokerUnavailable):
        await delete_namespace(url)


@pytest.fixture
async def amqp_url() -> AsyncIterator[str]:
    """The shared RabbitMQ, under a prefix of this test's own; deleted after."""
    url = _url(AMQP_URL)
    try:
        connection = await aio_pika.connect(url.split("?")[0], timeout=5)
    except Exception as exc:
        service_unavailable(f"RabbitMQ at {AMQP_URL} is unreachable: {exc}")
    await connection.close()
    try:
        yield url
    finally:
        await _forget(url)


@pytest.fixture
def node_url(rabbit_node: RabbitNode) -> Iterator[str]:
    url = _url(rabbit_node.url)
    try:
        yield url
    finally:
        if rabbit_node.process is None:
            rabbit_node.start()  # a test that failed while its node was down
        asyncio.run(_forget(url))


# -- S1: SIGKILL ---------------------------------------------------------------------


async def test_killed_worker_tasks_restart_elsewhere_at_once(
    amqp_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S1: a worker is SIGKILLed with six tasks running. RabbitMQ requeues its unacked
    messages as soon as the socket closes (that is the lease), so each restarts on the
    survivor at once, as attempt 2 with its crash counted; nothing is lost and only the
    killed attempts rerun."""
    workers = cluster(amqp_url, **SETTINGS)
    victim = workers.worker(concurrency=6)
    async with Producer(amqp_url, nemesis) as producer:
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
        nemesis.fault("sigkill", victim.pid)
        victim.kill()
        ids += await producer.enqueue_many([("sleep", 50)] * 100)
        await drain(producer.app, nemesis, ids, timeout=30)
    report = judge(workers)
    assert report.completed == set(ids)
    assert report.duplicated_ids == interrupted, "only the killed attempts may run twice"
    recoveries = [r for r in report.recoveries if r.kind == "sigkill"]
    assert {r.id for r in recoveries} == interrupted
    print(f"[chaos] SIGKILL: restarted {report.max_recovery:.2f}s after the kill at most")
    assert report.max_recovery is not None and report.max_recovery <= SLACK
    for task_id in interrupted:
        first, second = report.starts[task_id]
        assert (first["pid"], second["pid"]) == (victim.pid, survivor.pid)
        assert second["attempt"] == 2


# -- S4: SIGTERM ---------------------------------------------------------------------


async def test_sigterm_drains_short_tasks_and_releases_long_ones_at_once(
    amqp_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S4: on SIGTERM a worker finishes its short tasks, cancels the long ones at grace
    and releases them uncharged (basic.nack with requeue, the record's attempt taken
    back); they restart on another worker at once, as attempt 1."""
    grace = 3.0
    workers = cluster(amqp_url, **{**SETTINGS, "grace": grace})
    draining = workers.worker(concurrency=4)
    async with Producer(amqp_url, nemesis) as producer:
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
        # the premise of the timeline, not a speed bound
        assert time.time() - started < 3.5, "the second worker took too long to start"
        stopped_at = time.time()
        nemesis.fault("sigterm", draining.pid)
        draining.send(signal.SIGTERM)
        code = await asyncio.to_thread(draining.popen.wait, grace + 10)
        await drain(producer.app, nemesis, short + long, timeout=30)
    report = judge(workers)
    assert code == 0
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
        assert (second["pid"], second["attempt"]) == (taker.pid, 1)
        restart = second["t"] - cancelled["t"]
        print(f"[chaos] SIGTERM: released task restarted {restart:.3f}s after its cancel")
        assert restart < 1.0 < LEASE, "released tasks restart at once, not after a lease"


# -- S14: poison ---------------------------------------------------------------------


async def test_poison_tasks_are_dead_lettered_after_exactly_max_attempts(
    amqp_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S14: a task that always raises, and one that kills its worker every time, are
    dead-lettered after exactly N = retries + 1 started attempts (counted in the task
    records, which RabbitMQ's redeliveries after each crash go through), under a
    supervisor that restarts the dead workers, while normal tasks all complete."""
    attempts = PROBE_RETRIES + 1
    workers = cluster(amqp_url, **SETTINGS)
    supervisor = workers.supervisor(workers=2, concurrency=8)
    async with Producer(amqp_url, nemesis) as producer:
        raiser = await producer.enqueue("raise")
        crasher = await producer.enqueue("exit")
        await wait_for_ledger(
            workers.ledger_dir,
            lambda rs: [r for r in rs if r["ev"] == "fault_start"],
            15,
            "the first crash",
        )
        normal = await producer.enqueue_many([("sleep", 200)] * 100, rate=40)
        await drain(producer.app, nemesis, [crasher, raiser, *normal], timeout=60)
    report = judge(workers)
    assert supervisor.alive
    assert report.completed == set(normal)
    assert set(report.dead) == {crasher, raiser}
    assert [r["attempt"] for r in report.starts[crasher]] == list(range(1, attempts + 1))
    assert [r["attempt"] for r in report.starts[raiser]] == list(range(1, attempts + 1))
    assert report.dead[crasher]["reason"].startswith(f"poison: attempt {attempts + 1} exceeds")
    assert report.dead[raiser]["reason"].startswith(f"failed after {attempts} attempt(s)")
    assert len([f for f in report.faults if f.kind == "self_exit"]) == attempts
    # G5: from its second crash the poison runs alone, so it takes a normal task down once
    assert all(report.executions(i) <= 2 for i in normal)


async def test_a_worker_killer_reaches_the_dlq_through_rabbitmqs_delivery_limit(
    amqp_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S14 on RabbitMQ's own limit: with ``delivery_limit=1`` below Conveyor's poison
    limit, a task that kills its worker is dead-lettered by RabbitMQ itself (at least
    once, into its DLQ) after two deliveries; a reap marks its task dead in the records,
    so the broker drains and the dead letter carries the reason.

    The normal tasks come after the crashes: RabbitMQ counts a delivery for every
    message a dying consumer held, prefetched ones included, so a limit this low would
    dead-letter innocent tasks too (the quorum-queue caveat; docs/rabbitmq.md). The
    default limit, 20, sits far above Conveyor's own poison limit (the test above)."""
    url = f"{amqp_url}&delivery_limit=1"
    workers = cluster(url, **{**SETTINGS, "poison_after": 10})
    supervisor = workers.supervisor(workers=1, concurrency=4)
    async with Producer(url, nemesis) as producer:
        crasher = await producer.enqueue("exit")
        await wait_for_ledger(
            workers.ledger_dir,
            lambda rs: len([r for r in rs if r["ev"] == "fault_start"]) == 2,
            20,
            "the two crashes",
        )
        normal = await producer.enqueue_many([("sleep", 50)] * 20)
        await drain(producer.app, nemesis, [crasher, *normal], timeout=40)
        status = await producer.app.handle(crasher).status()
    report = judge(workers)
    assert supervisor.alive
    assert report.completed == set(normal)
    assert set(report.dead) == {crasher}
    assert len(report.starts[crasher]) == 2
    assert report.dead[crasher]["reason"].startswith("poison: RabbitMQ's delivery limit (1)")
    assert status.status.value == "dead"


# -- S15: malformed messages ---------------------------------------------------------


async def test_raw_malformed_messages_are_dead_lettered_with_their_bytes(
    amqp_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S15: bytes published straight onto the work queue by another program go to the
    DLQ byte-identical with a reason; nothing stays queued or unacked; real tasks run."""
    workers = cluster(amqp_url, **SETTINGS)
    workers.worker(concurrency=4)
    prefix = amqp_url.split("prefix=", 1)[1].split("&")[0]
    valid = Message(SCHEMA_VERSION, "x", "tests.chaos.chaos_app:probe", "default", ["x"])
    unknown = msgspec.structs.replace(valid, task_id="unknown-1", task="nowhere:missing")
    cases = {
        "garbage-1": b"\xc1\xff not msgpack",
        "truncated-1": encode_message(valid)[:9],
        "version-99": msgspec.msgpack.encode([99, "version-99", "t", "q"]),
        "a-map": msgspec.msgpack.encode({"task": "x"}),
        "unknown-1": encode_message(unknown),
        "empty-1": b"",
    }
    async with Producer(amqp_url, nemesis) as producer:
        ids = [await producer.enqueue("sleep", 10)]
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            for task_id, body in cases.items():
                nemesis.enq_invoke(task_id)
                await channel.default_exchange.publish(
                    aio_pika.Message(body, message_id=task_id, delivery_mode=2),
                    routing_key=f"{prefix}.default",
                )
                nemesis.enq_ok(task_id)
        ids += await producer.enqueue_many([("sleep", 10)] * 20)
        await drain(producer.app, nemesis, ids, timeout=20)
        dead = {e.id: e for e in await producer.app.broker.dead_letters()}
        (depth,) = [d for d in await producer.app.broker.queue_depths() if d.queue == "default"]
    report = judge(workers)
    assert report.completed == set(ids)
    assert set(dead) == set(cases)
    for task_id, body in cases.items():
        assert dead[task_id].body == body, task_id
        assert dead[task_id].reason, task_id
        print(f"[chaos] {task_id}: {dead[task_id].reason}")
    assert (depth.ready, depth.running, depth.dead) == (0, 0, len(cases))


# -- S8: broker kill -9 and restart --------------------------------------------------


async def test_rabbitmq_killed_and_restarted_under_load_loses_nothing(
    rabbit_node: RabbitNode, node_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S8: the private node is SIGKILLed while 1,000 tasks flow, and restarted on its data
    directory: no confirmed enqueue is lost (quorum queues confirm after the write is
    synced), no worker process exits (G6), and work resumes by itself within seconds."""
    workers = cluster(node_url, **SETTINGS)
    pool = [workers.worker(concurrency=16), workers.worker(concurrency=16)]
    pids = [p.pid for p in pool]
    # a publish caught by the kill may wait for a confirm that never comes: the producer
    # gives up on it after 5 s and tries again (30 s, the default, twice over, outlasted
    # retry_for on a loaded 2-core box while the restarted node elected its leaders)
    async with Producer(f"{node_url}&publish_timeout=5", nemesis) as producer:
        await producer.app.broker.queue_depths()  # the queues exist (declared at connect)
        await asyncio.to_thread(rabbit_node.write_queue_registry)  # before any task
        load = asyncio.create_task(
            producer.enqueue_many([("sleep", 5)] * 1000, parallel=16, rate=250, retry_for=60)
        )
        await wait_for_ledger(
            workers.ledger_dir, lambda rs: len(starts(rs)) >= 150, 20, "load to flow"
        )
        fid = nemesis.fault_start("rabbitmq_sigkill", None)
        rabbit_node.kill()
        killed_at = time.time()
        await asyncio.sleep(1.0)  # sleep: the outage lasts a second of real time, then a boot
        await asyncio.to_thread(rabbit_node.start)
        restarted_at = time.time()
        nemesis.fault_end(fid, "rabbitmq_sigkill", None)
        ids = await load
        await drain(producer.app, nemesis, ids, timeout=60)
    report = judge(workers)
    assert len(ids) == 1000
    assert report.completed == set(ids)
    assert [p.alive for p in pool] == [True, True], "a worker exited on a broker fault"
    assert [p.pid for p in pool] == pids and all(len(p.started_pids()) == 1 for p in pool)
    resumed = min(r["t"] for r in starts(workers.ledger()) if r["t"] > restarted_at)
    print(
        f"[chaos] rabbitmq kill -9: down {restarted_at - killed_at:.2f}s (boot included), "
        f"first task started {resumed - restarted_at:.2f}s after the node listened, "
        f"{report.enq_failures} failed enqueue calls retried, "
        f"{len(report.duplicated_ids)} tasks ran twice (explained by the fault)"
    )
    assert resumed - restarted_at < 10.0, "workers did not resume after the broker healed"


# -- S10: connection cuts ------------------------------------------------------------


async def test_workers_recover_from_repeated_connection_cuts(
    rabbit_node: RabbitNode, node_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S10: ``rabbitmqctl close_all_connections`` cuts every worker and producer
    connection, again and again, under load: acks on a dead channel are never sent
    (their messages were requeued; a finished task's copy is dropped when it comes back),
    workers reconnect by themselves and nothing is lost."""
    workers = cluster(node_url, **SETTINGS)
    pool = [workers.worker(concurrency=8), workers.worker(concurrency=8)]
    async with Producer(node_url, nemesis) as producer:
        load = asyncio.create_task(
            producer.enqueue_many([("sleep", 30)] * 1000, parallel=8, rate=100, retry_for=30)
        )
        await wait_for_ledger(
            workers.ledger_dir, lambda rs: len(starts(rs)) >= 20, 20, "load to flow"
        )
        fid = nemesis.fault_start("connection_cut", None)
        for _ in range(6):
            await asyncio.to_thread(rabbit_node.close_connections)
            await asyncio.sleep(0.5)  # sleep: the nemesis' rhythm, a cut every 0.5 s
        healed_at = time.time()
        nemesis.fault_end(fid, "connection_cut", None)
        ids = await load
        ids += await producer.enqueue_many([("sleep", 10)] * 100)  # and work after the cuts
        await drain(producer.app, nemesis, ids, timeout=30)
    report = judge(workers)
    assert report.completed == set(ids)
    assert all(p.alive for p in pool), "a worker exited on a dropped connection"
    after = [r for r in starts(workers.ledger()) if r["t"] > healed_at]
    print(
        f"[chaos] connection cuts: 6 rounds, {len(after)} starts after, "
        f"{len(report.duplicated_ids)} tasks ran twice (explained by the cuts)"
    )


# -- S11: a blocked connection (memory alarm) ----------------------------------------


async def test_publishers_blocked_by_a_memory_alarm_fail_clearly_and_resume(
    rabbit_node: RabbitNode, node_url: str, cluster: ClusterFactory, nemesis: Ledger
) -> None:
    """S11: a memory alarm blocks every publisher. An enqueue then fails after
    ``publish_timeout`` saying why (never hangs, never claims success), the workers keep
    running, and once the alarm clears the retried enqueues land and run: none lost."""
    url = f"{node_url}&publish_timeout=1"
    workers = cluster(url, **SETTINGS)
    pool = [workers.worker(concurrency=8)]
    async with Producer(url, nemesis) as producer:
        before = await producer.enqueue_many([("sleep", 10)] * 50)
        await drain(producer.app, nemesis, before, timeout=20)
        fid = nemesis.fault_start("memory_alarm", None)
        await asyncio.to_thread(rabbit_node.memory_alarm, True)
        try:
            with pytest.raises(BrokerUnavailable, match="memory or disk alarm"):
                await producer.app.enqueue_many([(producer.probe, ("blocked", "sleep", 10), {})])
            # a producer that retries, as a web app would, while the alarm lasts
            load = asyncio.create_task(
                producer.enqueue_many([("sleep", 10)] * 50, parallel=4, retry_for=60)
            )
            await asyncio.sleep(2.0)  # sleep: the alarm lasts two seconds of real time
            assert not load.done(), "an enqueue returned while RabbitMQ blocked publishers"
        finally:
            await asyncio.to_thread(rabbit_node.memory_alarm, False)
            cleared_at = time.time()
            nemesis.fault_end(fid, "memory_alarm", None)
        during = await load
        await drain(producer.app, nemesis, before + during, timeout=30)
    report = judge(workers)
    assert report.completed == set(before + during)
    assert all(p.alive for p in pool), "a worker exited while publishers were blocked"
    assert report.enq_failures > 0, "no enqueue failed while publishers were blocked"
    resumed = min(r["t"] for r in starts(workers.ledger()) if r["t"] > cleared_at)
    print(
        f"[chaos] memory alarm: {report.enq_failures} enqueue calls failed and were retried; "
        f"first task started {resumed - cleared_at:.2f}s after the alarm cleared"
    )
    assert resumed - cleared_at < 10.0
