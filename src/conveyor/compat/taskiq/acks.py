"""``taskiq.acks``: the acknowledgement shapes a custom taskiq broker's ``listen()``
yields. Conveyor's brokers acknowledge a message once its result is stored (taskiq's
``WHEN_SAVED``), whatever a task's ``acknowledge_type`` label says."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["AckableMessage", "AcknowledgeType"]


@enum.unique
class AcknowledgeType(str, enum.Enum):  # noqa: UP042 (taskiq's: a str enum)
    """When taskiq acknowledges a message. Conveyor always acknowledges after the
    result is stored (``WHEN_SAVED``): the others could lose a task whose worker dies."""

    WHEN_RECEIVED = "when_received"
    WHEN_EXECUTED = "when_executed"
    WHEN_SAVED = "when_saved"
    MANUAL = "manual"


@dataclass
class AckableMessage:
    """A received message with the callable that acknowledges it."""

    data: bytes
    ack: Callable[[], Awaitable[None] | None]
