"""taskiq's message shapes: ``TaskiqMessage`` (what ``Context.message`` and middlewares
see) and ``BrokerMessage`` (what a taskiq broker's ``kick()`` receives).

>>> message = TaskiqMessage(task_id="1", task_name="pkg:add", labels={}, args=[1], kwargs={})
>>> message.model_dump()["args"]
[1]
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Self

__all__ = ["BrokerMessage", "TaskiqMessage"]


@dataclass
class TaskiqMessage:
    """The call a task is running, as taskiq's ``Context.message`` shows it.

    ``args``/``kwargs`` are as sent (before conversion to the annotated types); label
    values are strings (``labels_types`` stays None: Conveyor labels are str to str).
    ``labels["_retries"]`` counts the earlier attempts, as taskiq's retry middleware does;
    a run fired by a schedule has ``labels["schedule_id"]``, as in taskiq.
    """

    task_id: str
    task_name: str
    labels: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    labels_types: dict[str, int] | None = None

    def parse_labels(self) -> None:
        """Nothing to do: label values are strings, as Conveyor keeps them."""

    def model_dump(self, **_: Any) -> dict[str, Any]:
        """The fields as a dict, as pydantic's ``model_dump()`` gives them."""
        return {
            "task_id": self.task_id,
            "task_name": self.task_name,
            "labels": dict(self.labels),
            "labels_types": self.labels_types,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
        }

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with ``update`` applied, as pydantic's ``model_copy()``."""
        copied = copy.deepcopy(self) if deep else replace(self)
        return replace(copied, **(update or {}))


@dataclass
class BrokerMessage:
    """A message as a taskiq broker's ``kick()`` takes it: ``message`` is the encoded
    ``TaskiqMessage``. Conveyor's brokers take their own envelope; this shape is here for
    code that builds or annotates one."""

    task_id: str
    task_name: str
    message: bytes
    labels: dict[str, Any] = field(default_factory=dict)

    def model_dump(self, **_: Any) -> dict[str, Any]:
        """The fields as a dict."""
        return asdict(self)
