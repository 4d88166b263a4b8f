"""`conveyor worker --concurrency/--workers`: a count below 1 is a usage error naming
the option, not silently replaced (0) or a crash loop (-5); CONVEYOR_CONCURRENCY goes
through the settings' checks (issue 14)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli import main

APP = "no_such_module_for_option_tests:app"


@pytest.mark.parametrize(
    ("args", "option", "shown"),
    [
        (["--concurrency", "0"], "'--concurrency'", "0 is not in the range 1<=x<=10000"),
        (["--concurrency", "-5"], "'--concurrency'", "-5 is not in the range 1<=x<=10000"),
        (["-c", "0"], "'--concurrency'", "0 is not in the range"),
        (["--max-async-tasks", "0"], "'--max-async-tasks'", "0 is not in the range"),
        (["--concurrency", "10001"], "'--concurrency'", "10001 is not in the range"),
        (["--concurrency", "many"], "'--concurrency'", "'many' is not a valid integer"),
        (["--workers", "0"], "'--workers'", "0 is not in the range x>=1"),
        (["-w", "-1"], "'--workers'", "-1 is not in the range x>=1"),
    ],
)
def test_a_count_below_one_is_a_usage_error_naming_the_option(
    args: list[str], option: str, shown: str
) -> None:
    result = CliRunner().invoke(main, ["worker", APP, *args])
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output
    assert option in result.output
    assert shown in result.output


@pytest.mark.parametrize("args", [["-c", "1"], ["-c", "10000"], ["-w", "1"], ["-w", "3"]])
def test_counts_in_range_are_accepted(args: list[str]) -> None:
    result = CliRunner().invoke(main, ["worker", APP, *args])
    # the options parsed: the command ran and failed on the app that does not exist
    assert result.exit_code == 2, result.output
    assert "Invalid value" not in result.output
    assert "cannot import 'no_such_module_for_option_tests'" in result.output


def test_conveyor_concurrency_in_the_environment_is_checked_like_any_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"settings_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from conveyor import Conveyor\n\napp = Conveyor('memory://')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        result = CliRunner(env={"CONVEYOR_CONCURRENCY": "0"}).invoke(
            main, ["worker", f"{module}:app"]
        )
    finally:
        sys.modules.pop(module, None)
    assert result.exit_code == 2, result.output
    assert (
        "setting concurrency must be an integer >= 1 and <= 10000, got 0 "
        "(from CONVEYOR_CONCURRENCY)" in result.output
    )
