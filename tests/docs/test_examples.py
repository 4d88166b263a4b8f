"""Every example runs as examples/README.md promises: ``python examples/<name>.py`` from
any directory "runs in a few seconds, exits 0 and leaves nothing behind", neither in the
directory it was started from nor in the temporary directory (``TMPDIR``).

Examples run by another test are not run again here; ``RUN_ELSEWHERE`` says where, and
``test_examples_run_elsewhere_are_run_there`` keeps that list honest.
"""

from __future__ import annotations

import pytest

from tests.brokers.conftest import AMQP_URL, NATS_URL, POSTGRES_URL, REDIS_URL
from tests.docs.conftest import Launcher
from tests.docs.programs import PYTHON, ROOT, Program

EXAMPLES = ROOT / "examples"

RUN_ELSEWHERE = {
    "dashboard.py": "tests/dashboard/test_example.py",
    "taskiq_migration.py": "tests/integration/test_taskiq_compat.py",
    "fastapi_app/app": "tests/integration/test_fastapi_app.py",  # python -m app
}


def _program(path: str) -> Program:
    if path == "redis_quickstart.py":
        return Program(
            path,
            (PYTHON, str(EXAMPLES / path)),
            env={"EXAMPLE_REDIS_URL": REDIS_URL},
            needs="redis",
        )
    if path == "rabbitmq_quickstart.py":
        return Program(
            path,
            (PYTHON, str(EXAMPLES / path)),
            env={"EXAMPLE_AMQP_URL": AMQP_URL, "EXAMPLE_REDIS_URL": REDIS_URL},
            needs="rabbitmq",
        )
    if path == "postgres_transactional.py":
        return Program(
            path,
            (PYTHON, str(EXAMPLES / path)),
            env={"EXAMPLE_POSTGRES_URL": POSTGRES_URL},
            needs="postgres",
        )
    if path == "outbox_relay.py":
        return Program(
            path,
            (PYTHON, str(EXAMPLES / path)),
            env={"EXAMPLE_POSTGRES_URL": POSTGRES_URL, "EXAMPLE_REDIS_URL": REDIS_URL},
            needs="postgres",
        )
    if path == "nats_app.py":
        return Program(
            path, (PYTHON, str(EXAMPLES / path)), env={"NATS_URL": NATS_URL}, needs="nats"
        )
    if path == "fastapi_app/tests":  # the example service's own tests, as its README runs them
        return Program(
            path, (PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / path))
        )
    return Program(path, (PYTHON, str(EXAMPLES / path)))


SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if p.name not in RUN_ELSEWHERE)
PROGRAMS = [_program(path) for path in [*SCRIPTS, "fastapi_app/tests"]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "program",
    [
        pytest.param(
            p, id=f"examples/{p.id}", marks=[pytest.mark.service(p.needs)] if p.needs else []
        )
        for p in PROGRAMS
    ],
)
def test_example_runs_exits_0_and_leaves_nothing_behind(
    program: Program, launched: Launcher
) -> None:
    outcome = launched.outcome(program)
    assert outcome.returncode == 0, outcome.report()
    assert not outcome.left_behind, f"left behind: {outcome.left_behind}\n{outcome.report()}"


@pytest.mark.parametrize(("example", "test"), sorted(RUN_ELSEWHERE.items()))
def test_examples_run_elsewhere_are_run_there(example: str, test: str) -> None:
    assert (EXAMPLES / example).exists(), example
    assert example.split("/")[0] in (ROOT / test).read_text(), test
