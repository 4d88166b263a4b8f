"""Running the corpus: every (sample, side) once per pytest session, a few at a time.

The per-check tests in ``test_corpus.py`` ask for a run's results; the first request
starts every run the session's selected tests need (three at a time, longest first:
the 2-core CI machine is kept busy without starving the worker processes under test),
and each request waits for its own run only.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType

from tests.compat.drivers import DRIVERS
from tests.compat.harness import CheckResult, Run, Side, SideName, Unavailable

__all__ = ["Corpus", "Outcome"]

PARALLEL_RUNS = 3


@dataclass(frozen=True)
class Outcome:
    results: dict[str, CheckResult]
    unavailable: str | None = None


def execute(sample: str, side_name: SideName) -> Outcome:
    """Run ``sample`` on ``side_name`` from scratch and return every declared check's result."""
    driver: ModuleType = DRIVERS[sample]
    try:
        side = Side.make(side_name)
    except Exception as exc:  # the environment could not be built: every check says why
        reason = f"environment for the {side_name} side not built: {exc}"
        return Outcome({name: CheckResult(False, reason) for name in driver.CHECKS})
    run = Run(
        sample,
        side,
        driver.CHECKS,
        services=frozenset(driver.SERVICES),
        locks=tuple(driver.LOCKS),
    )
    try:
        run.prepare()
        driver.drive(run)
    except Unavailable as exc:
        return Outcome({}, unavailable=str(exc))
    except Exception:
        run.fill_missing(f"not reached: the driver stopped:\n{traceback.format_exc()}")
    finally:
        run.close()
    run.fill_missing("not reached: the driver did not record this check")
    return Outcome(dict(run.results))


class Corpus:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL_RUNS, thread_name_prefix="compat")
        self._futures: dict[tuple[str, SideName], Future[Outcome]] = {}
        self._lock = threading.Lock()

    def prefetch(self, runs: Iterable[tuple[str, SideName]]) -> None:
        wanted = sorted(set(runs), key=lambda run: -DRIVERS[run[0]].COST)
        for run in wanted:
            self._submit(run)

    def _submit(self, run: tuple[str, SideName]) -> Future[Outcome]:
        with self._lock:
            if run not in self._futures:
                self._futures[run] = self._pool.submit(execute, *run)
            return self._futures[run]

    def outcome(self, sample: str, side: SideName) -> Outcome:
        return self._submit((sample, side)).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
