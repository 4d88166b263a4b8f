"""One driver per corpus sample: what a user of the sample does, as named checks.

Each module declares ``CHECKS`` (every check it records, in order), ``SERVICES``
(``redis``, ``postgres``), ``LOCKS`` (named resources a run holds alone, across pytest
sessions), ``COST`` (rough seconds, to start the long runs first) and
``drive(run)``.
"""

from __future__ import annotations

from types import ModuleType

from tests.compat.drivers import (
    caviardeul,
    docs_dynamics,
    docs_extending,
    docs_introduction,
    docs_schedule_redis,
    docs_state,
    docs_testing_guide,
    fastapi_template,
    taskiq_deduplication,
    taskiq_fastapi_readme,
    taskiq_redis_readme,
)

__all__ = ["DRIVERS"]

DRIVERS: dict[str, ModuleType] = {
    module.__name__.rsplit(".", 1)[1]: module
    for module in (
        docs_introduction,
        docs_state,
        docs_extending,
        docs_dynamics,
        docs_schedule_redis,
        docs_testing_guide,
        taskiq_redis_readme,
        taskiq_fastapi_readme,
        fastapi_template,
        caviardeul,
        taskiq_deduplication,
    )
}
