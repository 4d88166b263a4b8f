"""Run Python programs the way a reader runs them: a fresh, empty working directory, a
clean environment (no ``CONVEYOR_*`` from the machine, its own ``TMPDIR``), a timeout.

Every program of the selected tests is started when the first of them needs its outcome
(see ``launched`` in conftest.py), a few at a time, so a test only waits for its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


@dataclass(frozen=True)
class Program:
    """One process: ``argv`` run in an empty directory into which ``files`` are written
    first. ``needs`` names a service ("redis") without which it cannot run."""

    id: str
    argv: tuple[str, ...]
    files: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    needs: str | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class Outcome:
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float
    left_behind: list[str]  # files it created in its directory or its TMPDIR

    def report(self) -> str:
        code = "timed out" if self.returncode is None else f"exit code {self.returncode}"
        return (
            f"{code} after {self.seconds:.1f} s\n"
            f"--- stdout (end) ---\n{self.stdout[-3000:]}\n"
            f"--- stderr (end) ---\n{self.stderr[-5000:]}"
        )


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without Conveyor's settings, which a reader's shell
    would not have, plus ``extra``. ``PYTHONPATH`` is only this checkout's ``src``: the
    package a reader installed from it, whatever this environment has installed (a
    worktree may share its venv with another checkout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ next to the examples
    env.update(extra)
    return env


def run(program: Program, workdir: Path) -> Outcome:
    """Run ``program`` in ``workdir/cwd`` with ``TMPDIR=workdir/tmp``."""
    cwd, tmp = workdir / "cwd", workdir / "tmp"
    cwd.mkdir(parents=True)
    tmp.mkdir()
    for relative, text in program.files.items():
        path = cwd / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    written = {cwd / relative for relative in program.files}
    written |= {parent for path in written for parent in path.parents if cwd in parent.parents}
    env = clean_environ(TMPDIR=str(tmp), **program.env)

    started = time.monotonic()
    process = subprocess.Popen(
        program.argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a timeout kills its children too
    )
    try:
        stdout, stderr = process.communicate(timeout=program.timeout)
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        returncode = None
    seconds = time.monotonic() - started

    left = [p for p in sorted(cwd.rglob("*")) if p not in written]
    left += sorted(tmp.rglob("*"))
    return Outcome(
        returncode,
        stdout,
        stderr,
        seconds,
        [str(p.relative_to(workdir)) for p in left],
    )
