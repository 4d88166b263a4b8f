"""RabbitMQ only: the URL, the paths the conformance suite cannot reach on purpose (stale
copies, lost acks, a lost connection, RabbitMQ's own delivery limit, messages not written
by Conveyor), classic queues, and fire-and-forget without a record store."""

from __future__ import annotations

import dataclasses
import logging
import time
import types
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aio_pika
import aiormq
import pytest

from conveyor import Conveyor
from conveyor.brokers.base import (
    Ack,
    BrokerOptions,
    Capability,
    Outgoing,
    Place,
    Retry,
    StoredResult,
    TaskLocation,
)
from conveyor.brokers.rabbitmq import RabbitMQBroker, delete_namespace
from conveyor.brokers.rabbitmq.settings import AmqpSettings
from conveyor.brokers.rabbitmq.topology import MAX_DELAY_MS, delay_headers
from conveyor.errors import BrokerUnavailable, ConfigurationError, PartialPublish
from conveyor.testing import conformance
from conveyor.testing.conformance import conformance_options
from tests.conftest import eventually

from .conftest import AMQP_URL, REDIS_URL, _cleanup, service_unavailable


def _url(**params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"prefix": _prefix(), **params}.items())
    return f"{AMQP_URL}?{query}"


def _prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def _broker(
    url: str, options: BrokerOptions | None = None, *, records: bool = True
) -> AsyncIterator[RabbitMQBroker]:
    options = dataclasses.replace(
        options or conformance_options(), result_url=REDIS_URL if records else None
    )
    broker = RabbitMQBroker(url, options)
    try:
        await broker.connect()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        yield broker
    finally:
        await broker.close()
        await _cleanup(url)


def factory_for(
    url: str, *, records: bool = True
) -> Callable[[BrokerOptions], AbstractAsyncContextManager[RabbitMQBroker]]:
    """A conformance factory: a fresh broker on ``url`` for each check's options."""

    @asynccontextmanager
    async def factory(options: BrokerOptions) -> AsyncIterator[RabbitMQBroker]:
        async with _broker(url, options, records=records) as opened:
            yield opened

    return factory


@pytest.fixture
async def broker() -> AsyncIterator[RabbitMQBroker]:
    async with _broker(_url()) as opened:
        yield opened


async def _publish_raw(broker: RabbitMQBroker, body: bytes, **properties: Any) -> None:
    """Publish as a program that is not Conveyor would: straight onto the work queue."""
    connection = await aio_pika.connect(broker.settings.server_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties),
            routing_key=broker.names.work("default"),
        )


def _other(body: bytes = b"x") -> Outgoing:
    return Outgoing(task_id=uuid.uuid4().hex, queue="other", body=body)


def _out(body: bytes = b"x", **kw: Any) -> Outgoing:
    return Outgoing(task_id=uuid.uuid4().hex, queue="default", body=body, **kw)


# -- the URL ------------------------------------------------------------------------------


def test_url_parameters_are_ours_or_aio_pikas() -> None:
    s = AmqpSettings.from_url(
        "amqps://u:pw@h:5671/vh?prefix=app&queue_type=CLASSIC&heartbeat=30"
        "&delivery_limit=5&consumer_timeout=7200&results=redis%3A%2F%2Fr%3A6379%2F0"
    )
    assert s.server_url == "amqps://u:pw@h:5671/vh?heartbeat=30"
    assert (s.prefix, s.queue_type, s.quorum, s.delivery_limit) == ("app", "classic", False, 5)
    assert (s.consumer_timeout, s.result_url) == (7200.0, "redis://r:6379/0")
    assert AmqpSettings.from_url("amqp://h/", "redis://x").result_url == "redis://x"


@pytest.mark.parametrize(
    "query",
    [
        "queue_type=stream",
        "delivery_limit=0",
        "delivery_limit=2.5",
        "consumer_timeout=nan",
        "prefix=",
        "max_priority=256",
        "publish_timeout=x",
    ],
)
def test_bad_url_parameters_name_the_parameter_not_the_password(query: str) -> None:
    name = query.split("=")[0]
    with pytest.raises(ConfigurationError, match=name) as raised:
        AmqpSettings.from_url(f"amqp://u:S3CRET@h/?{query}")
    assert "S3CRET" not in str(raised.value)


def test_delays_are_written_in_binary_from_the_highest_bit() -> None:
    assert delay_headers(1) == (0, {"d0": "1"})
    assert delay_headers(6) == (2, {"d0": "0", "d1": "1", "d2": "1"})
    top, bits = delay_headers(10**15)  # beyond the cascade: capped, re-delayed on arrival
    assert top == 35 and all(v == "1" for v in bits.values())
    assert sum(2**k for k, v in enumerate(bits.values()) if v == "1") == MAX_DELAY_MS


async def test_no_password_in_the_unreachable_error_or_the_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = RabbitMQBroker("amqp://guest:S3CRET@127.0.0.1:1/?prefix=x", conformance_options())
    with pytest.raises(BrokerUnavailable) as raised:
        await broker.connect()
    assert "S3CRET" not in str(raised.value) and "127.0.0.1" in str(raised.value)
    assert "S3CRET" not in caplog.text
    assert "S3CRET" not in repr(broker)


async def test_a_wrong_password_is_a_configuration_error_without_it() -> None:
    url = AMQP_URL.replace("guest:guest", "guest:WR0NG")
    broker = RabbitMQBroker(f"{url}?prefix={_prefix()}", conformance_options())
    try:
        with pytest.raises(ConfigurationError, match="refused the login") as raised:
            await broker.connect()
    except BrokerUnavailable as exc:  # no server at all
        service_unavailable(str(exc))
    assert "WR0NG" not in str(raised.value)


# -- copies, lost acks, a lost connection ----------------------------------------------------


async def test_a_redelivery_after_the_ack_was_lost_is_dropped(broker: RabbitMQBroker) -> None:
    """The result is stored and the record finished, then the connection dies before the
    AMQP ack: RabbitMQ redelivers the message, and the claim drops it unrun."""
    item = _out(b"once")
    await broker.publish([item])
    (d,) = await broker.fetch(["default"], 1, 5.0)
    session = await broker.session()
    await session.connection.close()  # the ack can no longer reach RabbitMQ
    assert await d.ack(StoredResult(item.task_id, b"done", 60.0))
    assert await broker.result_store().get(item.task_id) == b"done"
    assert await broker.fetch(["default"], 1, 1.0) == []  # reconnects; the copy is dropped
    depth = {q.queue: q for q in await broker.queue_depths()}["default"]
    assert (depth.ready, depth.running) == (0, 0)


async def test_a_retry_or_dead_letter_after_the_connection_died_runs_again(
    broker: RabbitMQBroker,
) -> None:
    """Its message was requeued with the channel: the settlement is refused (the worker
    hears it lost its lease) and the task runs again, its crash counted."""
    item = _out(b"again")
    await broker.publish([item])
    (d,) = await broker.fetch(["default"], 1, 5.0)
    await (await broker.session()).connection.close()
    assert not await d.retry(0.0)
    (again,) = await conformance._fetch_all(broker, ["default"], 1, wait=5.0)
    assert (again.task_id, again.attempt, again.crashes) == (item.task_id, 2, 1)
    assert await again.ack()


async def test_the_leases_of_a_dead_channel_end_with_it(broker: RabbitMQBroker) -> None:
    """RabbitMQ requeues what a dead channel delivered: the deliveries still in hand lose
    their lease at once (a body fetched ahead checks it before starting), renewals say so,
    and the redelivery runs with the next attempt number."""
    item = _out(b"ahead")
    await broker.publish([item])
    (d,) = await broker.fetch(["default"], 1, 5.0)
    assert d.lease_until == float("inf") and broker.renew([d], 30.0) == [True]
    await (await broker.session()).connection.close()
    assert d.lease_until == float("-inf")
    assert broker.renew([d], 30.0) == [False]
    assert await broker.extend_leases([d], 30.0) == [False]
    (again,) = await conformance._fetch_all(broker, ["default"], 1, wait=5.0)
    assert (again.task_id, again.attempt) == (item.task_id, 2)
    assert not await d.ack()  # fenced: the redelivery owns the task
    assert await again.ack()


async def test_a_publish_timeout_closes_the_connection_so_its_deliveries_come_back(
    broker: RabbitMQBroker,
) -> None:
    """A session dropped after an error is closed, not left open: an open connection
    would keep what it delivered unacknowledged for as long as it lives."""
    item = _out(b"stuck?")
    await broker.publish([item])
    (d,) = await broker.fetch(["default"], 1, 5.0)
    session = await broker.session()
    broker._link.drop(session)
    assert d.lease_until == float("-inf")
    await eventually(lambda: session.connection.is_closed, timeout=10.0)
    (again,) = await conformance._fetch_all(broker, ["default"], 1, wait=5.0)
    assert (again.task_id, again.attempt) == (item.task_id, 2)
    assert await again.ack()


async def test_the_retry_of_a_publish_reported_failed_that_landed_and_ran_is_absorbed(
    broker: RabbitMQBroker,
) -> None:
    """The confirm of a publish is lost (so its record is undone), yet RabbitMQ had taken
    the message, and it runs. The producer retries with the same task id: that is the same
    enqueue, not a second run. A later publish of the id is a new run, as ever."""
    item = _out(b"landed", reused_id=True)
    ((task_id, copy),) = await broker.records.register([item])
    session = await broker.session()
    await broker._send(session, "default", task_id, item.body, 0, copy)
    await broker.records.unregister([(task_id, copy)])  # as a publish timeout does
    (d,) = await broker.fetch(["default"], 1, 5.0)
    assert (d.task_id, d.attempt) == (item.task_id, 1) and await d.ack()
    assert await broker.publish([item]) == [item.task_id]  # the producer's retry
    assert await broker.fetch(["default"], 1, 0.5) == []
    assert await broker.publish([item]) == [item.task_id]  # on purpose, later: runs again
    (again,) = await broker.fetch(["default"], 1, 5.0)
    assert again.task_id == item.task_id and await again.ack()


async def test_a_publish_reported_failed_after_its_task_ran_is_not_run_again(
    broker: RabbitMQBroker,
) -> None:
    """The confirm is lost, and by the time the publish is undone its copy has run to
    the end: the undo leaves the record and marks it, so the producer's retry is the same
    enqueue and the task does not run a second time."""
    item = _out(b"ran", reused_id=True)
    ((task_id, copy),) = await broker.records.register([item])
    await broker._send(await broker.session(), "default", task_id, item.body, 0, copy)
    (d,) = await broker.fetch(["default"], 1, 5.0)
    assert await d.ack()
    await broker.records.unregister([(task_id, copy)])  # the publish "failed"
    assert await broker.publish([item]) == [item.task_id]  # the producer's retry
    assert await broker.fetch(["default"], 1, 0.5) == []


async def test_a_stale_copy_is_dropped(broker: RabbitMQBroker) -> None:
    """A retry publishes copy 2; copy 1 showing up again (its ack lost) is dropped."""
    item = _out(b"c")
    await broker.publish([item])
    (d,) = await broker.fetch(["default"], 1, 5.0)
    assert await d.retry(0.0)
    (second,) = await broker.fetch(["default"], 1, 5.0)
    assert second.attempt == 2
    await _publish_raw(broker, b"c", message_id=item.task_id, headers={"x-conveyor-copy": 1})
    assert await broker.fetch(["default"], 1, 1.0) == []
    assert await second.ack()


async def test_a_fetch_resumes_after_the_server_closed_the_connection(
    broker: RabbitMQBroker,
) -> None:
    await (await broker.session()).connection.close()
    item = _out(b"after")
    assert await broker.publish([item]) == [item.task_id]
    (d,) = await broker.fetch(["default"], 1, 5.0)
    assert d.body == b"after" and await d.ack()


async def test_an_unroutable_publish_raises_and_admits_the_key_again(
    broker: RabbitMQBroker,
) -> None:
    """mandatory: a queue deleted behind the broker's back makes the publish fail; the
    record is undone, so the same key is admitted once the queue is back."""
    session = await broker.session()
    await session.publisher.queue_delete(broker.names.work("default"))
    item = _out(b"lost", key="k-1", key_ttl=30.0)
    with pytest.raises(BrokerUnavailable, match="not published"):
        await broker.publish([item])
    assert await broker.locate(item.task_id) is None
    broker.declared_queues.discard("default")
    broker._topology.declared.discard(broker.names.work("default"))
    assert await broker.publish([item]) == [item.task_id]


async def test_a_half_published_batch_says_which_messages_went_through(
    broker: RabbitMQBroker,
) -> None:
    """One queue of a batch was deleted behind the broker's back: its message fails, the
    other's is published. The error says so per message, so that no caller of kiq() whose
    message landed hears "failed" and enqueues it a second time."""
    await broker.publish([_other()])  # declared, then deleted below
    session = await broker.session()
    await session.publisher.queue_delete(broker.names.work("other"))
    good, bad = _out(b"good"), _other(b"bad")
    with pytest.raises(PartialPublish, match="1 of 2") as caught:
        await broker.publish([good, bad])
    first, second = caught.value.outcomes
    assert first == good.task_id and isinstance(second, BrokerUnavailable)
    (d,) = await broker.fetch(["default"], 1, 5.0)
    assert d.task_id == good.task_id and await d.ack()
    assert await broker.locate(bad.task_id) is None  # its record was undone


# -- messages Conveyor did not write ----------------------------------------------------------


async def test_raw_bytes_without_a_message_id_land_in_the_dlq_byte_identical(
    broker: RabbitMQBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client other than aio-pika may publish without a message id (aiormq always sets
    one): with no task id to keep records by, the message goes to the DLQ as it is."""
    raw = b"\xc1\x00not msgpack\xff"
    await _publish_raw(broker, raw)
    take = broker._inbox.take

    def without_ids(*args: Any) -> Any:
        taken = take(*args)
        for item in taken:
            item.message.header.properties.message_id = None
        return taken

    monkeypatch.setattr(broker._inbox, "take", without_ids)
    assert await broker.fetch(["default"], 1, 1.0) == []
    (entry,) = await eventually(broker.dead_letters, what="the dead letter")
    assert (entry.body, entry.queue) == (raw, "default")
    assert entry.reason.startswith("malformed message: no message id")


async def test_raw_bytes_with_a_message_id_are_delivered_as_they_are(
    broker: RabbitMQBroker,
) -> None:
    """The worker then dead-letters them as malformed (behaviour of the core)."""
    raw = b"\x93\x01\x02"
    await _publish_raw(broker, raw, message_id="hand-made")
    (d,) = await broker.fetch(["default"], 1, 5.0)
    assert (d.task_id, d.body, d.attempt) == ("hand-made", raw, 1)
    assert await d.dead_letter("malformed message: test")
    (entry,) = await broker.dead_letters()
    assert (entry.id, entry.body, entry.attempts) == ("hand-made", raw, 1)


# -- RabbitMQ's own poison limit ----------------------------------------------------------------


async def test_rabbitmqs_delivery_limit_dead_letters_with_a_reason() -> None:
    """A message handed back more often than ``delivery_limit`` (workers that die before
    the records could count it, or no records) is dead-lettered by RabbitMQ itself, at
    least once, and listed with the reason."""
    async with _broker(_url(delivery_limit="1")) as broker:
        item = _out(b"poison")
        await broker.publish([item])
        for _ in range(2):  # two deliveries handed back: over the limit of 1
            (d,) = await broker.fetch(["default"], 1, 5.0)
            assert await d.extend_lease(0.0)
            assert await broker.reap() == 1
        (entry,) = await eventually(broker.dead_letters, what="RabbitMQ's dead letter")
        assert (entry.id, entry.body, entry.attempts) == (item.task_id, b"poison", 2)
        assert entry.reason.startswith("poison: RabbitMQ's delivery limit (1) reached")
        # the records say running until a reap takes the copy the intake got: the reap
        # that handed the delivery back takes it too when RabbitMQ routed it in time
        before = await broker.locate(item.task_id)
        assert before in (TaskLocation(Place.LEASED, 2), TaskLocation(Place.DEAD, 2))
        await broker.reap()
        assert await broker.locate(item.task_id) == TaskLocation(Place.DEAD, 2)
        (depth,) = await broker.queue_depths()
        assert (depth.ready, depth.running, depth.dead) == (0, 0, 1)
        assert await broker.requeue_dead([item.task_id]) == 1
        (again,) = await broker.fetch(["default"], 1, 5.0)
        assert (again.task_id, again.attempt) == (item.task_id, 1)


# -- classic queues -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "check",
    [
        conformance.check_publish_fetch_ack,
        conformance.check_delay,
        conformance.check_retry_with_delay,
        conformance.check_dead_letter,
        conformance.check_release_is_uncharged,
        conformance.check_lease_expiry_redelivers_and_fences,
        conformance.check_abort,
    ],
    ids=lambda c: c.__name__.removeprefix("check_"),
)
async def test_classic_queues(check: Callable[[Any], Any]) -> None:
    await check(factory_for(_url(queue_type="classic")))


async def test_classic_queues_favour_priorities() -> None:
    async with _broker(_url(queue_type="classic")) as broker:
        await broker.publish([_out(b"low"), _out(b"high", priority=9)])
        got = await broker.fetch(["default"], 2, 5.0)
        assert got[0].body == b"high"


async def test_quorum_queues_put_priorities_above_0_in_a_band_taken_first(
    broker: RabbitMQBroker,
) -> None:
    """Quorum queues have no priorities before RabbitMQ 4: a message of priority > 0 goes
    to ``<queue>.high``, which a fetch takes before the rest of what has arrived."""
    await broker.publish([_out(b"low"), _out(b"high", priority=9), _out(b"low2")])
    session = await broker.session()
    high = await session.publisher.queue_declare(broker.names.work("default", True), passive=True)
    low = await session.publisher.queue_declare(broker.names.work("default"), passive=True)
    assert (high.message_count, low.message_count) == (1, 2)
    (depth,) = await broker.queue_depths()
    assert depth.ready == 3
    got: list[bytes] = []
    while len(got) < 3:  # the consumers fill the inbox; each fetch takes what arrived
        got += [d.body for d in await broker.fetch(["default"], 3, 5.0)]
    assert sorted(got) == [b"high", b"low", b"low2"]
    assert got.index(b"low") < got.index(b"low2"), "FIFO within a band"


async def test_a_delayed_message_reaches_exactly_one_band(broker: RabbitMQBroker) -> None:
    """The end of the delay cascade routes on a header without the ``x-`` prefix (headers
    exchanges ignore those: both bands then got a copy)."""
    soon = time.time() + 0.05
    await broker.publish(
        [_out(b"low", not_before=soon), _out(b"high", priority=1, not_before=soon)]
    )
    got = await conformance._fetch_all(broker, ["default"], 2, wait=5.0)
    assert sorted(d.body for d in got) == [b"high", b"low"]
    assert await broker.settle([(d, Ack()) for d in got]) == [True, True]
    assert await broker.fetch(["default"], 2, 0.5) == []
    (depth,) = await broker.queue_depths()
    assert (depth.ready, depth.delayed, depth.running) == (0, 0, 0)


def test_a_fetch_takes_the_high_band_of_what_arrived_first() -> None:
    from conveyor.brokers.rabbitmq.consume import Inbox, Incoming

    live: Any = types.SimpleNamespace(alive=True)  # a session: only .alive is read
    message: Any
    inbox = Inbox()
    for source, message in [("p.q", "low"), ("p.q.high", "high"), ("p.q", "low2")]:
        inbox.put(Incoming("q", source, live, message))
    assert [i.message for i in inbox.take(["p.q.high", "p.q"], 2)] == ["high", "low"]
    assert [i.message for i in inbox.take(["p.q.high", "p.q"], 2)] == ["low2"]


# -- without a record store ---------------------------------------------------------------------


async def test_fire_and_forget_without_a_record_store() -> None:
    """No results= and ledger=false: tasks run; waiting for a result says how to add a
    store; keys, which need records, are refused; status reads find nothing."""
    url = _url(ledger="false")
    app = Conveyor(url, environ={}, lease=1.0, fetch_wait=0.1)
    ran: list[int] = []

    @app.task(name="rabbit.record", retries=1)
    async def record(n: int) -> None:
        ran.append(n)
        if n == 2 and ran.count(2) == 1:
            raise ValueError("once")

    try:
        await app.connect()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        assert app.broker.capabilities == {Capability.QUEUE}
        async with app.worker():
            one, two = await record.kiq(1), await record.kiq(2)
            await eventually(lambda: sorted(ran) == [1, 2, 2], what="both tasks, one retried")
        with pytest.raises(ConfigurationError, match="results="):
            await one.wait_result(timeout=1)
        with pytest.raises(ConfigurationError, match="results="):
            await record.with_options(key="k").kiq(3)
        assert await app.broker.locate(two.task_id) is None
    finally:
        await app.close()
        await _cleanup(url)


async def test_without_a_store_attempts_come_from_the_headers_and_delivery_count() -> None:
    async with _broker(_url(ledger="false"), records=False) as broker:
        await broker.publish([_out(b"n")])
        (d,) = await broker.fetch(["default"], 1, 5.0)
        assert await d.retry(0.0)
        (d,) = await broker.fetch(["default"], 1, 5.0)
        assert d.attempt == 2
        assert await d.release()  # uncharged
        (d,) = await broker.fetch(["default"], 1, 5.0)
        assert d.attempt == 2
        assert await broker.settle([(d, Retry(0.0, charge=False))]) == [True]  # uncharged
        (d,) = await broker.fetch(["default"], 1, 5.0)
        assert d.attempt == 2
        assert await d.extend_lease(0.0) and await broker.reap() == 1  # handed back: charged
        (d,) = await broker.fetch(["default"], 1, 5.0)
        assert d.attempt == 3
        await broker.settle([(d, Ack())])


async def test_a_server_without_per_queue_consumer_timeouts_is_named_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from conveyor.brokers.rabbitmq import broker as module

    module._WARNED.clear()
    caplog.set_level(logging.WARNING, "conveyor.rabbitmq")
    async with _broker(_url()) as first:
        version = (await first.session()).server_version
        assert not [r for r in caplog.records if "consumer_timeout" in r.getMessage()]
        async with _broker(_url()) as second:
            for broker in (first, second):  # a consumer meets it: said by the first fetch
                assert await broker.fetch(["default"], 1, 0.0) == []
    warnings = [r for r in caplog.records if "consumer_timeout" in r.getMessage()]
    assert len(warnings) == (1 if version < module.CONSUMER_TIMEOUT_SINCE else 0)


async def test_delete_namespace_leaves_no_queue_exchange_or_key() -> None:
    url = _url()
    async with _broker(url) as broker:
        await broker.publish([_out(b"now"), _out(b"later", not_before=time.time() + 0.01)])
        (d,) = await broker.fetch(["default"], 1, 5.0)
        assert await d.dead_letter("test")
        names = broker.names
        queues = [names.work("default"), names.work("default", high=True), names.dlq("default")]
        queues += [names.intake, names.delay(3)]
        exchanges = [names.dlx("default"), names.delay(3), names.delay_out]
        await delete_namespace(url, REDIS_URL)
        connection = await aio_pika.connect(broker.settings.server_url)
        async with connection:
            for kind, name in [("queue", q) for q in queues] + [("exchange", x) for x in exchanges]:
                channel = await (await connection.channel()).get_underlay_channel()
                look = channel.queue_declare if kind == "queue" else channel.exchange_declare
                with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
                    await look(name, passive=True)
        assert await broker.records.queues() == []


async def test_a_workflow_step_whose_publish_was_lost_is_sent_again_by_a_reap(
    broker: RabbitMQBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A settlement registers the next step of a workflow with its record (one script),
    then publishes it to RabbitMQ. A worker that dies between the two leaves it in the
    outbox: a reap sends it again, as a new copy, and it runs once."""
    from conveyor.brokers.base import Follow
    from conveyor.brokers.rabbitmq import broker as rabbit

    step = Outgoing("next-step", "default", b"next", key="next-step", key_ttl=60.0)
    await broker.publish([Outgoing("first", "default", b"first")])
    (first,) = await conformance._fetch_all(broker, ["default"], 1)
    lost: list[str] = []

    async def publish_lost(self: RabbitMQBroker, pending: Any) -> None:
        lost.extend(p.task_id for p in pending)  # the worker died before publishing

    monkeypatch.setattr(rabbit.RabbitMQBroker, "_publish_pending", publish_lost)
    assert await first.ack(None, Follow("wf", publish=(step,)))
    assert lost == ["next-step"]
    monkeypatch.undo()
    assert await broker.fetch(["default"], 1, 0.3) == []
    assert await broker.records.locate("next-step") == TaskLocation(Place.WAITING, 0)
    await broker.reap()  # within the grace: the publish may still be on its way
    assert await broker.fetch(["default"], 1, 0.3) == []
    monkeypatch.setattr(rabbit, "OUTBOX_GRACE", -1.0)
    await broker.reap()
    (again,) = await conformance._fetch_all(broker, ["default"], 1)
    assert (again.task_id, again.body, again.attempt) == ("next-step", b"next", 1)
    assert await again.ack()
    await broker.reap()
    assert await broker.fetch(["default"], 1, 0.3) == [], "sent twice"
