"""The decoder and the worker against hostile bytes (issue 14): random bytes, truncated
and over-nested msgpack, wrong types in every field of the envelope. Every input must end
in a Message or a MalformedMessage, and in a worker, in a result or the dead-letter queue
with a reason: never in an exception that escapes."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor import Conveyor, TaskStatus
from conveyor.brokers.base import Outgoing
from conveyor.message import (
    SCHEMA_VERSION,
    MalformedMessage,
    Message,
    decode_message,
    encode_message,
)
from conveyor.signing import SIGNED_PREFIX, sign
from tests.conftest import CHECKOUT_PATH, fast_app

ROOT = Path(__file__).resolve().parents[2]

# any msgpack-able value, nested a little
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)

_FIELDS = 15  # Message's fields, in wire order


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """A version-1 envelope with a random value in some fields: wrong types everywhere."""
    good = msgspec.msgpack.decode(
        encode_message(Message(SCHEMA_VERSION, "t", "fuzz:task", "default", [1], {"a": 2}))
    )
    fields: list[Any] = list(good) + [None] * (_FIELDS - len(good))
    for index in draw(st.sets(st.integers(0, _FIELDS - 1), max_size=4)):
        fields[index] = draw(values)
    cut = draw(st.integers(min_value=1, max_value=_FIELDS))
    return msgspec.msgpack.encode(fields[:cut])


def _nested(depth: int, opener: bytes) -> bytes:
    return opener * depth + b"\xc0"


bodies = st.one_of(
    st.binary(max_size=200),
    envelopes(),
    envelopes().flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),  # truncated
    st.integers(1, 200_000).map(lambda d: _nested(d, b"\x91")),  # arrays in arrays
    st.integers(1, 200_000).map(lambda d: _nested(d, b"\x81\xa1k")),  # maps in maps
    st.binary(max_size=60).map(lambda b: SIGNED_PREFIX + b),  # looks signed, is not
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_the_decoder_answers_a_message_or_malformed_and_nothing_else(body: bytes) -> None:
    try:
        message = decode_message(body)
    except MalformedMessage as exc:
        reason = exc.reason
        assert reason
    else:
        assert isinstance(message, Message)


def _app() -> Conveyor:
    app = fast_app()

    @app.task(name="fuzz:task")
    async def task(a: int = 0, *rest: Any, **extra: Any) -> int:
        return a

    return app


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bodies, min_size=1, max_size=25))
def test_every_hostile_body_ends_in_a_result_or_the_dlq(batch: list[bytes]) -> None:
    caught: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "worker bug" in record.getMessage():
                caught.append(record)

    handler = Catch()
    logging.getLogger("conveyor").addHandler(handler)
    try:
        asyncio.run(_run_batch(batch))
    finally:
        logging.getLogger("conveyor").removeHandler(handler)
    assert caught == [], caught[0].getMessage()


def _ids(batch: list[bytes]) -> list[str]:
    """The body's own task id where it has a new one (so valid calls run), else fuzz-N (a
    body whose id differs from the broker's is itself hostile: dead-lettered)."""
    ids: list[str] = []
    for n, body in enumerate(batch):
        try:
            claimed = msgspec.msgpack.decode(body)[1]
        except Exception:
            claimed = None
        fresh = isinstance(claimed, str) and claimed and claimed not in ids and n % 2 == 0
        ids.append(claimed if fresh else f"fuzz-{n}")
    return ids


async def _run_batch(batch: list[bytes]) -> None:
    app = _app()
    ids = _ids(batch)
    async with app:
        await app.broker.publish(
            [Outgoing(i, "default", b) for i, b in zip(ids, batch, strict=True)]
        )
        async with app.worker(concurrency=8):
            results = await asyncio.gather(*(app.handle(i).wait_result(timeout=10) for i in ids))
        dead = {e.id: e for e in await app.broker.dead_letters(limit=1000)}
    for task_id, result in zip(ids, results, strict=True):
        assert result.status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.DEAD)
        if result.status is not TaskStatus.SUCCEEDED:
            assert dead[task_id].reason  # in the DLQ, with why
            assert dead[task_id].body == batch[ids.index(task_id)]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_coverage_guided_fuzzing_finds_no_crash(tmp_path: Path) -> None:
    """A short libFuzzer run (tests/fuzz/decoder.py); run it for hours by hand."""
    env = {**os.environ, "PYTHONPATH": CHECKOUT_PATH}
    corpus = tmp_path / "corpus"  # seeds: real messages, plain and signed, to mutate
    corpus.mkdir()
    seed = encode_message(Message(SCHEMA_VERSION, "t1", "app:send", "default", ["a", 1]))
    (corpus / "plain").write_bytes(seed)
    (corpus / "signed").write_bytes(sign(seed, "fuzz-key"))
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests/fuzz/decoder.py"), str(corpus), "-runs=200000"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
