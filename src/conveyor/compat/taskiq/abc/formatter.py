"""``taskiq.abc.formatter``: the interface of a taskiq message formatter, for code that
defines one. Conveyor's brokers encode messages themselves (msgpack, docs/wire-format.md);
a custom broker's ``kick()`` receives JSON, as taskiq's default formatter writes it."""

from __future__ import annotations

from abc import ABC, abstractmethod

from conveyor.compat.taskiq.message import BrokerMessage, TaskiqMessage

__all__ = ["TaskiqFormatter"]


class TaskiqFormatter(ABC):
    """Turns a ``TaskiqMessage`` into a ``BrokerMessage`` and bytes back into one."""

    @abstractmethod
    def dumps(self, message: TaskiqMessage) -> BrokerMessage:
        """``message`` as a broker sends it."""

    @abstractmethod
    def loads(self, message: bytes) -> TaskiqMessage:
        """The message ``message`` encodes."""
