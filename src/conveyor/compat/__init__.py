"""Compatibility layers for code written against other task queues.

- :mod:`conveyor.compat.taskiq`: taskiq and taskiq-redis names (``InMemoryBroker``,
  ``RedisStreamBroker``, ``TaskiqDepends``, ``TaskiqScheduler``...) on Conveyor; see
  docs/migrating-from-taskiq.md.
"""

__all__: list[str] = []
