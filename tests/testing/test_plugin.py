"""``pytest -p conveyor.testing.plugin``: one fixture gives a broker both suites as test
items, the checks of undeclared capabilities skip saying so, a failing check shows the
values it compared, a hung one fails, and ``manual_clock`` is a fixture.

Each test runs pytest in a fresh directory, as a user would (``-W error``: the plugin
raises no warning).
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

from tests.docs.programs import PYTHON, Outcome, Program, run

# a conftest.py that proves two brokers: memory://, and the same declaring only what the
# page's broker declares (docs/write-a-broker.md)
PROVE_TWO_BROKERS = """
import pytest

from conveyor.brokers import register_broker
from conveyor.brokers.base import Capability
from conveyor.brokers.memory import MemoryBroker

pytest_plugins = ["conveyor.testing.plugin"]


class Limited(MemoryBroker):
    capabilities = frozenset({Capability.QUEUE, Capability.RESULTS})


register_broker("limited", "conftest:Limited", "conveyor.brokers.memory:MemoryResultStore")


@pytest.fixture(params=["memory://", "limited://"])
def conveyor_broker_url(request: pytest.FixtureRequest) -> str:
    return request.param
"""

SUITES = """
from conveyor.testing.plugin import test_behaviour, test_conformance  # noqa: F401
"""


# every warning an error, as in this project; pytest-asyncio, installed here, warns unless
# its loop scope is set
STRICT = ("-W", "error", "-o", "asyncio_default_fixture_loop_scope=function")


def pytest_in(tmp_path: Path, files: dict[str, str], *args: str) -> tuple[dict[str, str], Outcome]:
    """Run pytest on ``files`` in a fresh directory; each test's outcome by name
    ("passed", "skipped: <reason>" or "failure: <message>"), and the run."""
    report = tmp_path / "report.xml"
    argv = (PYTHON, "-m", "pytest", "-p", "no:cacheprovider", *STRICT, *args)
    outcome = run(Program("plugin", (*argv, f"--junit-xml={report}"), files), tmp_path / "run")
    assert report.exists(), outcome.report()
    found = {}
    for case in ElementTree.parse(report).iter("testcase"):
        name = case.get("name", "")
        found[name] = "passed"
        for kind in ("skipped", "failure", "error"):
            for element in case.iter(kind):
                found[name] = f"{kind}: {element.get('message', '')}"
    return found, outcome


def test_a_broker_url_fixture_gets_the_checks_of_its_capabilities(tmp_path: Path) -> None:
    picked = "publish_fetch_ack or priority_then_fifo or abort_queued or retries_then_dead"
    found, outcome = pytest_in(
        tmp_path, {"conftest.py": PROVE_TWO_BROKERS, "test_brokers.py": SUITES}, "-k", picked
    )
    assert outcome.returncode == 0, outcome.report()
    assert found == {
        "test_conformance[memory://-publish_fetch_ack]": "passed",
        "test_conformance[limited://-publish_fetch_ack]": "passed",
        "test_conformance[memory://-priority_then_fifo]": "passed",
        "test_conformance[limited://-priority_then_fifo]": (
            "skipped: limited:// does not declare priority"
        ),
        "test_behaviour[memory://-retries_then_dead_letter]": "passed",
        "test_behaviour[limited://-retries_then_dead_letter]": "passed",
        "test_behaviour[memory://-abort_queued_task_never_runs]": "passed",
        "test_behaviour[limited://-abort_queued_task_never_runs]": (
            "skipped: limited:// does not declare abort"
        ),
    }


def test_a_failing_check_fails_its_item_showing_what_it_compared(tmp_path: Path) -> None:
    conftest = """
import pytest

from conveyor.brokers import register_broker
from conveyor.brokers.memory import MemoryBroker

pytest_plugins = ["conveyor.testing.plugin"]


class Backwards(MemoryBroker):
    async def publish(self, batch):
        return list(reversed(await super().publish(batch)))


register_broker("backwards", "conftest:Backwards", "conveyor.brokers.memory:MemoryResultStore")


@pytest.fixture
def conveyor_broker_url() -> str:
    return "backwards://"
"""
    found, outcome = pytest_in(
        tmp_path, {"conftest.py": conftest, "test_it.py": SUITES}, "-k", "publish_fetch_ack"
    )
    assert outcome.returncode == 1, outcome.report()
    (message,) = found.values()
    # rewritten like a test's own assert: the two lists, not a bare AssertionError
    assert message.startswith("failure: AssertionError: assert ['"), message
    assert "] == ['" in message, message


def test_a_hung_check_fails_after_the_check_timeout(tmp_path: Path) -> None:
    conftest = """
import asyncio

import pytest

import conveyor.testing.plugin
from conveyor.brokers import register_broker
from conveyor.brokers.memory import MemoryBroker

conveyor.testing.plugin.CHECK_TIMEOUT = 0.5


class Hangs(MemoryBroker):
    async def publish(self, batch):
        await asyncio.Event().wait()


register_broker("hangs", "conftest:Hangs", "conveyor.brokers.memory:MemoryResultStore")


@pytest.fixture
def conveyor_broker_url() -> str:
    return "hangs://"
"""
    found, outcome = pytest_in(
        tmp_path,
        {"conftest.py": conftest, "test_it.py": SUITES},
        "-p",
        "conveyor.testing.plugin",
        "-k",
        "test_conformance and publish_fetch_ack",
    )
    assert outcome.returncode == 1, outcome.report()
    assert found == {
        "test_conformance[publish_fetch_ack]": (
            "failure: Failed: check_publish_fetch_ack did not end within 0.5 s"
        )
    }


def test_manual_clock_is_a_fixture_at_the_current_time(tmp_path: Path) -> None:
    test = """
import time

from conveyor.testing import ManualClock


def test_clock(manual_clock: ManualClock) -> None:
    start = manual_clock.now()
    assert abs(start - time.time()) < 60
    manual_clock.advance(30)
    assert manual_clock.now() == start + 30
"""
    found, outcome = pytest_in(tmp_path, {"test_clock.py": test}, "-p", "conveyor.testing.plugin")
    assert outcome.returncode == 0, outcome.report()
    assert found == {"test_clock": "passed"}
