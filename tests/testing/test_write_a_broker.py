"""docs/write-a-broker.md tells the truth about its broker. tests/docs/test_snippets.py
runs the page's test file (the shipped suites on the page's broker, through the plugin);
here: that file runs both suites, the broker declares QUEUE and RESULTS only, and the
counts the pages give are the suites' own."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.brokers import _REGISTRY
from conveyor.brokers.base import Capability
from conveyor.testing.behaviour import BEHAVIOUR_CHECKS, behaviour_checks_for
from conveyor.testing.conformance import CHECKS, checks_for
from tests.docs.programs import ROOT
from tests.docs.test_snippets import files_of

PAGE = "docs/write-a-broker.md"


def test_the_page_proves_its_broker_with_both_suites() -> None:
    files = files_of(PAGE)
    assert set(files) == {"listbroker.py", "conftest.py", "test_listbroker.py"}
    assert "import test_behaviour, test_conformance" in files["test_listbroker.py"]
    assert 'pytest_plugins = ["conveyor.testing.plugin"]' in files["conftest.py"]


def test_the_page_broker_declares_queue_and_results_and_the_counts_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "listbroker.py"
    source.write_text(files_of(PAGE)["listbroker.py"])
    spec = importlib.util.spec_from_file_location("listbroker", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "listbroker", module)
    monkeypatch.setitem(_REGISTRY, "list", ("", "", None))  # undone after the test
    spec.loader.exec_module(module)
    capabilities = module.ListBroker.capabilities
    assert capabilities == {Capability.QUEUE, Capability.RESULTS}

    ran = len(checks_for(capabilities)), len(behaviour_checks_for(capabilities))
    skipped = len(CHECKS) + len(BEHAVIOUR_CHECKS) - sum(ran)
    page = (ROOT / PAGE).read_text()
    assert f"{ran[0]} conformance and {ran[1]} behaviour checks run" in page
    assert f"{sum(ran)} passed, {skipped} skipped" in page
    assert f"by hand\n({len(CHECKS)} checks)" in page
    assert f"on it ({len(BEHAVIOUR_CHECKS)} checks)" in page
    testing = (ROOT / "docs/testing.md").read_text()
    assert f"{len(CHECKS)} async checks" in testing
    assert f"{len(BEHAVIOUR_CHECKS)} async checks" in testing


def test_the_page_broker_type_checks_strictly(tmp_path: Path) -> None:
    # a QUEUE-only broker hands itself to Delivery and must satisfy the protocols it claims.
    # In a subprocess: mypy's main raises this process's recursion limit for good.
    source = tmp_path / "listbroker.py"
    source.write_text(files_of(PAGE)["listbroker.py"])
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / ".mypy"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
