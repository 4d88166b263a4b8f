"""``taskiq.abc.serializer``: taskiq's serializer interface, for code that defines one.

Conveyor's brokers encode messages and results with msgpack themselves; a serializer
passed to a compat backend or source (``serializer=...``) is logged as ignored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

__all__ = ["TaskiqSerializer"]


class TaskiqSerializer(ABC):
    """Turns values into bytes and back (taskiq's ``dumpb``/``loadb``)."""

    @abstractmethod
    def dumpb(self, value: Any) -> bytes:
        """``value`` as bytes."""

    @abstractmethod
    def loadb(self, value: bytes) -> Any:
        """The value ``value`` encodes."""
