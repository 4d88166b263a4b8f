"""taskiq's exception names for the errors Conveyor raises in the same places.

- ``TaskiqError`` is :class:`conveyor.ConveyorError`, the base of every Conveyor error.
- ``TaskiqResultTimeoutError`` is :class:`conveyor.ResultTimeout` (``wait_result()`` ran
  out of time).
- ``ResultGetError`` is :class:`conveyor.ResultMissing` (no result stored for the task).
"""

from __future__ import annotations

from conveyor.errors import ConveyorError, ResultMissing, ResultTimeout

__all__ = ["ResultGetError", "TaskiqError", "TaskiqResultTimeoutError"]

TaskiqError = ConveyorError
TaskiqResultTimeoutError = ResultTimeout
ResultGetError = ResultMissing
