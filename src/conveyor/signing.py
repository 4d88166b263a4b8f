"""Optional HMAC signing of message bodies, so that only holders of the key can enqueue
work a worker will run (docs/security.md says what it does and does not protect).

A signed body is ``0xC1 "S" <HMAC-SHA256 of the message, 32 bytes> <the message>``.
``0xC1`` is the one byte msgpack never uses, so a signed body cannot be mistaken for a
plain message, nor a plain one for a signed body. Producers sign with the first of
``signing_keys``; workers accept a signature by any of them, which is how keys rotate:
add the new key last on every worker, then first on every producer, then drop the old.

>>> body = sign(b"\\x93...", "k1")                         # doctest: +SKIP
>>> verified(body, ("k1",)) == b"\\x93..."                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

__all__ = ["SIGNED_PREFIX", "InvalidSignature", "sign", "unsigned", "verified"]

SIGNED_PREFIX = b"\xc1S"
_MAC_SIZE = hashlib.sha256().digest_size
_HEADER = len(SIGNED_PREFIX) + _MAC_SIZE


class InvalidSignature(ValueError):
    """A body that is not signed by any of the worker's keys (or not signed at all)."""


def sign(body: bytes, key: str) -> bytes:
    """``body`` with its signature by ``key`` in front."""
    mac = hmac.new(key.encode(), body, hashlib.sha256).digest()
    return SIGNED_PREFIX + mac + body


def verified(body: bytes, keys: Sequence[str]) -> bytes:
    """The message inside a body signed by one of ``keys``; raises
    :class:`InvalidSignature` for an unsigned, truncated or forged body."""
    if len(body) < _HEADER or not body.startswith(SIGNED_PREFIX):
        raise InvalidSignature("signature invalid: the message is not signed")
    mac, message = body[len(SIGNED_PREFIX) : _HEADER], body[_HEADER:]
    for key in keys:
        if hmac.compare_digest(mac, hmac.new(key.encode(), message, hashlib.sha256).digest()):
            return message
    raise InvalidSignature("signature invalid: signed by none of this worker's signing keys")


def unsigned(body: bytes) -> bytes:
    """The message inside ``body``, signed or not, without checking the signature (for
    reading: the dashboard, ``conveyor dlq show``)."""
    if body.startswith(SIGNED_PREFIX) and len(body) >= _HEADER:
        return body[_HEADER:]
    return body
