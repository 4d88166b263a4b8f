"""The two Python environments a corpus sample runs in, built on first use and cached.

- the baseline: a virtualenv with real taskiq, from ``requirements-taskiq.txt``;
- the Conveyor side: the project's own venv, plus ``requirements-extras.txt`` (what the
  samples need besides taskiq: Django, pytest plugins...) installed with ``--target``
  into a directory put on ``PYTHONPATH``.

Both are keyed by a hash of their requirements file and the interpreter version, under
the git-ignored ``tests/compat/.cache``; a changed pin builds a new one. Building takes a
minute the first time (pip downloads, then its cache); a lock file keeps two pytest
sessions from building the same one at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["CACHE", "HERE", "conveyor_bin", "extras_dir", "taskiq_venv"]

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
BUILD_TIMEOUT = 900.0


def _key(requirements: Path) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


@contextmanager
def _build_lock() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "build.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pip(python: Path, *args: str) -> None:
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


def _base_python() -> str:
    """The interpreter this venv was made from: the baseline runs on the same Python."""
    return str(getattr(sys, "_base_executable", sys.executable))


def taskiq_venv() -> Path:
    """The baseline venv's directory, built from ``requirements-taskiq.txt`` if missing."""
    requirements = HERE / "requirements-taskiq.txt"
    target = CACHE / f"venv-taskiq-{_key(requirements)}"
    if (target / ".complete").exists():
        return target
    with _build_lock():
        if (target / ".complete").exists():
            return target
        # built in place (a venv's scripts name their interpreter by absolute path); a
        # build that died half way has no .complete and is started over
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(
            [_base_python(), "-m", "venv", str(target)], check=True, timeout=BUILD_TIMEOUT
        )
        _pip(target / "bin" / "python", "--no-deps", "-r", str(requirements))
        (target / ".complete").write_text(requirements.read_text())
        _prune("venv-taskiq-", keep=target)
    return target


def extras_dir() -> Path:
    """The directory holding the samples' own dependencies for the Conveyor side."""
    requirements = HERE / "requirements-extras.txt"
    target = CACHE / f"extras-{_key(requirements)}"
    if (target / ".complete").exists():
        return target
    with _build_lock():
        if (target / ".complete").exists():
            return target
        building = target.with_name(target.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        _pip(Path(sys.executable), "--no-deps", "--target", str(building), "-r", str(requirements))
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
        (target / ".complete").write_text(requirements.read_text())
        _prune("extras-", keep=target)
    return target


def _prune(prefix: str, keep: Path) -> None:
    """Environments of older pins: a changed requirements file left them behind."""
    for old in CACHE.glob(prefix + "*"):
        if old != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def conveyor_bin() -> Path:
    """The project venv's scripts directory (``python``, ``conveyor``)."""
    return Path(sys.executable).parent
