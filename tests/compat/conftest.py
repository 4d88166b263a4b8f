"""The compat corpus' pytest hooks: its marker; the corpus and probes are not our tests
(they run in their own processes, on each side)."""

from __future__ import annotations

import pytest

collect_ignore = ["corpus", "probes", "shim"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "corpus_run: a check of a corpus run (tests/compat/test_corpus.py)"
    )
