"""Calling kiq with wrong arguments is a mypy error (ParamSpec typing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.slow
def test_wrong_kiq_calls_are_mypy_errors() -> None:
    target = HERE / "kiq_wrong_calls.py"
    expected = {
        number: re.search(r"# E: ([\w-]+)", line).group(1)  # type: ignore[union-attr]
        for number, line in enumerate(target.read_text().splitlines(), start=1)
        if "# E:" in line
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file",
            "/dev/null",
            str(target),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    found: dict[int, set[str]] = {}
    for match in re.finditer(r"kiq_wrong_calls\.py:(\d+): error: .*\[([\w-]+)\]", run.stdout):
        found.setdefault(int(match.group(1)), set()).add(match.group(2))
    for number, code in expected.items():
        assert code in found.get(number, set()), f"line {number}: expected [{code}]\n{run.stdout}"
    assert set(found) == set(expected), run.stdout


@pytest.mark.slow
def test_correct_usage_type_checks() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file",
            "/dev/null",
            str(HERE / "kiq_types.py"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout
