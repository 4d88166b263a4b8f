"""Running the ``conveyor`` command from integration tests."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import eventually_blocking

__all__ = ["ROOT", "Running", "run_cli"]

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``conveyor <args>`` to completion from the repository root, capturing text."""
    return subprocess.run(
        [sys.executable, "-m", "conveyor.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Running:
    """A ``conveyor`` command running in its own process group, its output in a file."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        self.started = time.monotonic()
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "conveyor.cli", *args],
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float) -> tuple[int, float, list[str]]:
        """(exit code, seconds since start, output lines)."""
        code = self.process.wait(timeout)
        return code, time.monotonic() - self.started, self.output().splitlines()

    def wait_for(self, pattern: str, timeout: float = 20, count: int = 1) -> list[str]:
        def found() -> list[str] | None:
            matches = re.findall(pattern, self.output())
            if len(matches) >= count:
                return matches
            assert self.process.poll() is None, "the command exited"
            return None

        try:
            return eventually_blocking(found, timeout=timeout, every=0.05)
        except AssertionError as exc:
            raise AssertionError(
                f"{pattern!r} x{count} not in the output ({exc}):\n{self.output()}"
            ) from None
