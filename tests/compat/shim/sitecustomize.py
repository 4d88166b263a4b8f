"""Loaded by every process of a corpus run (``PYTHONPATH`` starts with this directory).

Samples hard-code their Redis URL (``redis://localhost:6379``, ``/1``), so two runs at once
(baseline and Conveyor, or two developers) would share keys. With
``COMPAT_REDIS_DB_BASE=N`` set, every redis-py connection (sync and asyncio, whoever opens
it: the sample, taskiq, Conveyor) selects database N instead of 0 and N+1 instead of any
other number (samples use 0 and one more: 1, or 15 for a library's own tests); the run owns
databases N and N+1 and flushes them afterwards. Nothing else is changed.
"""

import os

_BASE = os.environ.get("COMPAT_REDIS_DB_BASE")


def _install(base: int) -> None:
    import redis.asyncio.connection as async_connection
    import redis.connection as sync_connection

    def mapped(db: object) -> int:
        return base if int(db) == 0 else base + 1  # type: ignore[call-overload]

    for module in (sync_connection, async_connection):
        cls = module.AbstractConnection
        original = cls.__init__

        def __init__(self, *args, __original=original, **kwargs):
            if args:  # redis.connection.AbstractConnection(db, ...) positionally
                args = (mapped(args[0]), *args[1:])
            else:
                kwargs["db"] = mapped(kwargs.get("db", 0))
            __original(self, *args, **kwargs)

        cls.__init__ = __init__


if _BASE is not None:
    _install(int(_BASE))
