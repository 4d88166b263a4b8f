"""Integrations with web frameworks; each module imports its framework, nothing else does.

- :mod:`conveyor.integrations.fastapi`: lifespan, ``init()`` and shared ``Depends``.
"""

__all__: list[str] = []
