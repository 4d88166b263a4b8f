"""The shipped suites say what each check needs, and pick the checks of a capability set."""

from __future__ import annotations

from conveyor.brokers.base import Capability
from conveyor.testing import behaviour, conformance
from conveyor.testing.behaviour import (
    BEHAVIOUR_CHECKS,
    BEHAVIOUR_REQUIRES,
    behaviour_checks_for,
)
from conveyor.testing.conformance import CHECKS, checks_for

QUEUE, RESULTS, ABORT = Capability.QUEUE, Capability.RESULTS, Capability.ABORT


def test_every_check_of_each_module_is_in_its_suite() -> None:
    for module, suite in ((conformance, CHECKS), (behaviour, BEHAVIOUR_CHECKS)):
        defined = {name for name in vars(module) if name.startswith("check_")}
        assert {check.__name__ for check in suite} == defined, module.__name__
        assert all(check.__doc__ for check in suite), "each check says what it proves"


def test_every_behaviour_check_runs_a_worker_and_reads_results() -> None:
    assert all({QUEUE, RESULTS} <= needs for needs in BEHAVIOUR_REQUIRES.values())


def test_a_broker_gets_the_checks_of_what_it_declares() -> None:
    assert behaviour_checks_for(Capability) == BEHAVIOUR_CHECKS
    assert checks_for(Capability) == CHECKS
    queue_and_results = [c.__name__ for c in behaviour_checks_for({QUEUE, RESULTS})]
    assert queue_and_results == [
        "check_retries_then_dead_letter",
        "check_long_task_keeps_its_lease",
        "check_zombie_cannot_settle",
        "check_poison_task_is_dead_lettered",
        "check_crashes_are_counted",
        "check_graceful_stop_releases_uncharged",
        "check_unique_task_is_enqueued_once",
        "check_expired_task_never_runs",
    ]
    with_abort = {c.__name__ for c in behaviour_checks_for({QUEUE, RESULTS, ABORT})}
    assert with_abort - set(queue_and_results) == {
        "check_abort_queued_task_never_runs",
        "check_abort_running_task_is_cancelled",
    }
    assert behaviour_checks_for({QUEUE}) == []  # without results, no worker check can read
