"""Issue 16's proof: real taskiq code, unchanged, on real taskiq and on Conveyor.

One test per (sample, check, side). The ``taskiq`` side must pass in full: a failure
there means the check (or the sample) is wrong, not Conveyor. On the ``conveyor`` side
every check that does not pass today is listed in ``KNOWN_GAPS.toml`` with the error it
gives, and runs as a strict xfail: fixing a gap turns its test into a failure until the
entry is deleted.

Samples, their sources and licences: ``corpus/<sample>/SOURCE.md``; what each check
does: ``drivers/<sample>.py``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers.conftest import service_unavailable
from tests.compat.corpus_runner import Corpus
from tests.compat.drivers import DRIVERS
from tests.compat.harness import SideName

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

KNOWN_GAPS_FILE = Path(__file__).with_name("KNOWN_GAPS.toml")
KNOWN_GAPS: dict[str, dict[str, str]] = tomllib.loads(KNOWN_GAPS_FILE.read_text())


def _cases() -> list[object]:
    cases: list[object] = []
    for sample, driver in DRIVERS.items():
        for check in driver.CHECKS:
            for side in ("taskiq", "conveyor"):
                marks = []
                gap = KNOWN_GAPS.get(sample, {}).get(check) if side == "conveyor" else None
                if gap is not None:
                    marks.append(pytest.mark.xfail(strict=True, reason=gap))
                cases.append(
                    pytest.param(sample, check, side, marks=marks, id=f"{sample}:{check}:{side}")
                )
    return cases


@pytest.fixture(scope="session")
def corpus(request: pytest.FixtureRequest) -> Iterator[Corpus]:
    """The session's runs, started together when the first check asks for one."""
    runner = Corpus()
    needed: set[tuple[str, SideName]] = set()
    for item in request.session.items:
        if isinstance(item, pytest.Function) and item.get_closest_marker("corpus_run"):
            params = item.callspec.params
            needed.add(
                (str(params["sample"]), "taskiq" if params["side"] == "taskiq" else "conveyor")
            )
    runner.prefetch(needed)
    yield runner
    runner.close()


@pytest.mark.corpus_run
@pytest.mark.parametrize(("sample", "check", "side"), _cases())
def test_check(corpus: Corpus, sample: str, check: str, side: SideName) -> None:
    outcome = corpus.outcome(sample, side)
    if outcome.unavailable is not None:
        service_unavailable(outcome.unavailable)
    result = outcome.results[check]
    assert result.ok, result.detail


def test_known_gaps_name_real_checks() -> None:
    """A gap entry for a check that does not exist would hide nothing: catch typos."""
    for sample, checks in KNOWN_GAPS.items():
        assert sample in DRIVERS, f"KNOWN_GAPS.toml: no sample {sample!r}"
        for check, reason in checks.items():
            assert check in DRIVERS[sample].CHECKS, f"KNOWN_GAPS.toml: no check {sample}:{check}"
            assert reason.strip(), f"KNOWN_GAPS.toml: {sample}:{check} needs the error it gives"


def test_every_sample_names_its_source_and_licence() -> None:
    corpus_dir = Path(__file__).with_name("corpus")
    assert sorted(p.name for p in corpus_dir.iterdir() if p.is_dir()) == sorted(DRIVERS)
    for sample in DRIVERS:
        source = (corpus_dir / sample / "SOURCE.md").read_text()
        assert "https://github.com/" in source and "Commit" in source, sample
        licence = (corpus_dir / sample / "LICENSE").read_text()
        assert "MIT License" in licence or "Apache License" in licence or "BSD" in licence, sample
