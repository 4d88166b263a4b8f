"""The wire envelope (:class:`Message`) and its msgpack codec.

The envelope is a msgspec ``Struct`` encoded as a msgpack *array* (field order is the
schema), so it is compact and decodes without building a dict. ``version`` comes first:
a worker that meets a version it does not know dead-letters the message with the reason
instead of guessing. docs/wire-format.md describes every field.
"""

from __future__ import annotations

import inspect
import ipaddress
import os
from pathlib import PurePath
from typing import Any

import msgspec

from conveyor.signing import unsigned

__all__ = [
    "NO_CONVERSION",
    "PLAIN_TYPES",
    "SCHEMA_VERSION",
    "Fanout",
    "Flow",
    "Link",
    "MalformedMessage",
    "Message",
    "Slot",
    "Step",
    "Template",
    "convert",
    "decode_message",
    "encode_message",
    "encode_value",
    "new_task_id",
]

SCHEMA_VERSION = 1


class Message(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """One task invocation as it travels from producer to worker.

    Times are Unix seconds. ``max_attempts`` is ``retries + 1``. ``key`` is the caller's
    idempotency key. ``headers`` carries trace context; ``labels`` free-form tags.
    ``link``: its place in a workflow. ``flow``: its flow-control keys and expiry (None
    for a task without flow options).
    """

    version: int
    task_id: str
    task: str
    queue: str
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    priority: int = 0
    enqueued_at: float = 0.0
    not_before: float = 0.0
    max_attempts: int = 1
    timeout: float | None = None
    result_ttl: float | None = None
    key: str | None = None
    labels: dict[str, str] = {}
    headers: dict[str, str] = {}
    link: Link | None = None
    flow: Flow | None = None


class Flow(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """What a message carries for flow control (wire field 16): the keys its producer
    computed from its arguments, and when it expires (Unix seconds, 0: never). The limits
    themselves are the worker's task options."""

    rate: str = ""
    concurrency: str = ""
    debounce: str = ""
    expires: float = 0.0


class Slot(msgspec.Struct, array_like=True, frozen=True):
    """A member's place in its group: the group's barrier and the member's index there."""

    barrier: str
    index: int


class Step(msgspec.Struct, array_like=True, frozen=True, tag="s"):
    """One task call of a workflow, to publish when its turn comes: ``message`` as the
    producer built it (its task id is its node's id, its ``link`` unset), without the
    value it receives; ``receives`` is False for ``.si()``, which takes no value."""

    message: Message
    receives: bool = True


class Fanout(msgspec.Struct, array_like=True, frozen=True, tag="g"):
    """A group of a workflow, to start when its turn comes: each member a chain of
    templates, every member's first call receiving the same value. ``barrier`` is the
    group's node id, where its members' outcomes are gathered; ``queue`` is the queue of
    its internal gather task (when no callback follows it). ``partial``: a failed member
    does not fail the group; its callback gets every member's :class:`Result`."""

    barrier: str
    members: list[list[Step | Fanout]]
    queue: str = "default"
    partial: bool = False


Template = Step | Fanout
"""What a workflow publishes next: a task call, or a group."""


class Link(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """Where a message stands in a workflow (``conveyor.workflow``), and what follows it.

    ``then``: what to start when this task succeeds, with its value (the rest of a chain).
    ``join``: the group slot that the chain this task ends fills, with its outcome (on
    success once ``then`` is empty; on failure at once). ``gather``: this task is a group's
    callback, and its first argument is the group's results (unless ``receives`` is
    False). ``tail`` and ``tail_task``: the workflow's final task, whose result stands for
    the workflow: when this task fails outside any group, the workflow fails with it, and
    the final task's result says so. ``ttl``: seconds the workflow's records are kept.
    """

    workflow: str
    ttl: float
    then: list[Step | Fanout] = []
    join: Slot | None = None
    gather: str = ""
    partial: bool = False
    receives: bool = True
    tail: str = ""
    tail_task: str = ""


class MalformedMessage(ValueError):
    """A body that is not a message this worker can run; ``reason`` goes to the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# values that travel as their text, as pydantic's JSON mode sends them (taskiq stores a
# returned Path as str): paths and IP addresses/networks; converted back by annotation
_AS_TEXT: tuple[type, ...] = (
    PurePath,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)  # pydantic v2 models, without importing pydantic
    if callable(dump):
        return dump(mode="json")
    if isinstance(obj, _AS_TEXT):
        return str(obj)
    raise TypeError(f"cannot encode objects of type {type(obj).__qualname__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder = msgspec.msgpack.Decoder(Message)


def encode_message(message: Message) -> bytes:
    """Encode ``message``; raises ``TypeError`` for values msgpack cannot carry."""
    return _encoder.encode(message)


def encode_value(value: Any) -> bytes:
    """Encode any supported value (used for results and for argument checks)."""
    return _encoder.encode(value)


def decode_message(body: bytes) -> Message:
    """Decode a body into a :class:`Message`, or raise :class:`MalformedMessage`: never
    anything else, whatever the bytes (nesting too deep for the decoder included). A
    signed body is read without checking its signature (the worker checks it first)."""
    body = unsigned(body)
    try:
        message = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedMessage(_explain(body, exc)) from None
    except Exception as exc:  # RecursionError on deep nesting, MemoryError-like limits
        raise MalformedMessage(
            f"malformed message: cannot be decoded ({type(exc).__name__}: {exc}); {len(body)} bytes"
        ) from None
    if message.version != SCHEMA_VERSION:
        raise MalformedMessage(
            f"unsupported schema version {message.version} (this worker reads {SCHEMA_VERSION})"
        )
    return message


def _explain(body: bytes, exc: Exception) -> str:
    try:
        loose = msgspec.msgpack.decode(body)
    except msgspec.DecodeError:
        return f"malformed message: not msgpack ({exc}); {len(body)} bytes"
    except Exception:  # msgpack, but not data Python holds (a map keyed by a list)
        return f"malformed message: {exc}; {len(body)} bytes"
    is_enveloped = isinstance(loose, list) and loose and isinstance(loose[0], int)
    if is_enveloped and loose[0] != SCHEMA_VERSION:
        return f"unsupported schema version {loose[0]} (this worker reads {SCHEMA_VERSION})"
    return f"malformed message: {exc}"


_ID_BATCH = 256  # ids drawn from one os.urandom call
_random_ids: list[str] = []


def new_task_id() -> str:
    """A fresh task id: 32 hex characters, a random UUID (version 4) as ``uuid4().hex``
    gives, in a fraction of the time (it is on every enqueue's path): the random bytes of
    256 ids come from one ``os.urandom`` call."""
    try:
        return _random_ids.pop()
    except IndexError:
        _random_ids.extend(_draw_ids())
        return _random_ids.pop()


def _repeated(value: int, count: int) -> int:
    """``value`` (16 bytes) repeated ``count`` times, as one big-endian integer."""
    return int.from_bytes(value.to_bytes(16, "big") * count, "big")


# the version nibble (byte 6: 4) and the RFC 4122 variant (byte 8: 10xx) of every id of a
# batch, set by one integer operation on its random bytes
_ID_MASK = _repeated(~((0xF0 << 72) | (0xC0 << 56)) & ((1 << 128) - 1), _ID_BATCH)
_ID_BITS = _repeated((0x40 << 72) | (0x80 << 56), _ID_BATCH)


def _draw_ids() -> list[str]:
    raw = int.from_bytes(os.urandom(16 * _ID_BATCH), "big") & _ID_MASK | _ID_BITS
    text = raw.to_bytes(16 * _ID_BATCH, "big").hex()
    return [text[i : i + 32] for i in range(0, 32 * _ID_BATCH, 32)]


# a forked child must not hand out the ids its parent drew (the parent will)
os.register_at_fork(after_in_child=_random_ids.clear)


# Values of these annotations arrive as they are; PLAIN_TYPES are checked by isinstance
PLAIN_TYPES = (str, int, float, bool, bytes)
NO_CONVERSION = frozenset({str, int, float, bool, bytes, Any, inspect.Parameter.empty, type(None)})


def _dec_hook(kind: type, obj: Any) -> Any:
    if kind is object:  # msgspec asks the hook about ``object`` once a hook is given
        return obj
    validate = getattr(kind, "model_validate", None)  # pydantic v2 models
    if callable(validate):
        return validate(obj)
    if isinstance(kind, type) and issubclass(kind, _AS_TEXT) and isinstance(obj, str):
        try:
            return kind(obj)  # type: ignore[call-arg]  # a PurePath or ipaddress class
        except ValueError as exc:  # a malformed address
            raise msgspec.ValidationError(str(exc)) from None
    raise NotImplementedError(f"cannot convert to {kind!r}")


def convert(value: Any, annotation: Any) -> Any:
    """Convert a decoded wire value to ``annotation`` (dataclasses, datetimes, UUIDs,
    msgspec Structs, pydantic models...)."""
    return msgspec.convert(value, annotation, dec_hook=_dec_hook)
