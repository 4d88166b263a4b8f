"""Optional HMAC signing: a worker with signing keys runs only what a key holder sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import TaskStatus
from conveyor.brokers.base import Outgoing
from conveyor.message import SCHEMA_VERSION, Message, encode_message
from conveyor.signing import InvalidSignature, sign, unsigned, verified
from tests.conftest import connected_app


def test_a_signature_by_any_listed_key_verifies_and_nothing_else_does() -> None:
    body = b"\x94payload"
    signed = sign(body, "new")
    assert verified(signed, ("new", "old")) == body
    assert verified(sign(body, "old"), ("new", "old")) == body  # rotation: old still accepted
    assert unsigned(signed) == body and unsigned(body) == body
    forged = signed[:-1] + b"X"
    for bad in (body, forged, sign(body, "stolen"), signed[:10], b""):
        with pytest.raises(InvalidSignature, match="signature invalid"):
            verified(bad, ("new", "old"))


@pytest.mark.parametrize("scheme", ["memory", "sqlite", "redis"])
async def test_signed_work_runs_and_unsigned_or_forged_work_is_dead_lettered(
    scheme: str, tmp_path: Path
) -> None:
    async with connected_app(scheme, tmp_path, signing_keys=("k2", "k1")) as app:
        ran: list[str] = []

        @app.task(name="transfer")
        async def transfer(to: str) -> str:
            ran.append(to)
            return to

        good = await transfer.kiq("alice")
        raw = encode_message(Message(SCHEMA_VERSION, "inject-1", "transfer", "default", ["eve"]))
        forged = sign(raw, "guessed")
        await app.broker.publish(
            [
                Outgoing("inject-1", "default", raw),
                Outgoing("inject-2", "default", forged.replace(b"inject-1", b"inject-2")),
                Outgoing("oldkey-1", "default", sign(raw.replace(b"inject-1", b"oldkey-1"), "k1")),
            ]
        )
        async with app.worker():
            assert await good.get(timeout=10) == "alice"
            unsigned_result = await app.handle("inject-1").wait_result(timeout=10)
            forged_result = await app.handle("inject-2").wait_result(timeout=10)
            old_key = await app.handle("oldkey-1").wait_result(timeout=10)
            dead = {e.id: e for e in await app.broker.dead_letters()}
    assert ran == ["alice", "eve"]  # the one signed by the previous key ran; eve via "oldkey-1"
    assert old_key.status is TaskStatus.SUCCEEDED
    assert unsigned_result.status is forged_result.status is TaskStatus.DEAD
    assert dead["inject-1"].reason == "signature invalid: the message is not signed"
    assert dead["inject-2"].reason.startswith("signature invalid: signed by none")
    assert dead["inject-1"].body == raw  # the raw bytes are kept
