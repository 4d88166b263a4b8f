"""Integrations with web frameworks; each module imports its framework, nothing else does.

- :mod:`conveyor.integrations.fastapi`: lifespan, ``init()`` and shared ``Depends``.
- :mod:`conveyor.integrations.sqlalchemy`: ``with_options(session=...)`` published after
  the session commits, on brokers outside your database.
"""

__all__: list[str] = []
