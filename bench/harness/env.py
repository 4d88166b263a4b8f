"""Virtualenvs (one per peer, created by the harness) and machine facts."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from harness.adapter import BENCH_DIR, Adapter, Venv
from harness.redisc import Redis

VENVS_DIR = BENCH_DIR / ".venvs"


class SetupError(Exception):
    """A peer's virtualenv could not be created or installed."""


def _version_of(python: str) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:3])"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()
        return int(out[0]), int(out[1]), int(out[2])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def find_pythons() -> list[tuple[tuple[int, int, int], str]]:
    """Working interpreters on this machine (PATH, pyenv, this one), newest first."""
    candidates: list[str] = []
    for minor in range(14, 9, -1):
        if exe := shutil.which(f"python3.{minor}"):
            candidates.append(exe)  # may be a pyenv shim that fails: checked below
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.*/bin/python3"), reverse=True)
    candidates.append(sys.executable)
    seen: set[str] = set()
    found: list[tuple[tuple[int, int, int], str]] = []
    for exe in candidates:
        if (v := _version_of(exe)) is None:
            continue
        real = os.path.realpath(exe)
        if real in seen or v in (f[0] for f in found):
            continue
        seen.add(real)
        found.append((v, exe))
    return sorted(found, reverse=True)


def choose_python(adapter: Adapter, pythons: list[tuple[tuple[int, int, int], str]],
                  preferred: str) -> str:
    """The preferred interpreter (a path, or a version like "3.12") if the adapter accepts
    it, else the oldest one found that it accepts."""
    if os.sep in preferred:
        v = _version_of(preferred)
        if v is not None and v[:2] >= adapter.min_python:
            return preferred
    else:
        for v, exe in pythons:
            if ".".join(map(str, v[:2])) == preferred and v[:2] >= adapter.min_python:
                return exe
    ok = [(v, exe) for v, exe in pythons if v[:2] >= adapter.min_python]
    if not ok:
        raise SetupError(
            f"needs Python >= {'.'.join(map(str, adapter.min_python))}; none found "
            f"(have {', '.join('.'.join(map(str, v)) for v, _ in pythons)})"
        )
    return sorted(ok)[0][1]


def ensure_venv(adapter: Adapter, python: str, log) -> Venv:  # type: ignore[no-untyped-def]
    """Create bench/.venvs/<name> and pip-install the adapter's requirements (idempotent)."""
    venv = Venv(VENVS_DIR / adapter.name)
    stamp = venv.path / ".bench-stamp"
    want = hashlib.sha256(
        json.dumps([os.path.realpath(python), list(adapter.requirements)]).encode()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == want and Path(venv.python).exists():
        _compile_editable(adapter, venv)
        return venv
    if venv.path.exists():
        shutil.rmtree(venv.path)
    log(f"[setup] {adapter.name}: creating venv with {python} and installing "
        f"{' '.join(adapter.requirements)}")
    VENVS_DIR.mkdir(parents=True, exist_ok=True)
    for cmd in (
        [python, "-m", "venv", str(venv.path)],
        [venv.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *adapter.requirements],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            errors = [ln for ln in tail if "ERROR" in ln] or tail[-5:]
            raise SetupError(f"`{' '.join(cmd[:4])} ...` failed: " + " / ".join(errors[-3:]))
    stamp.write_text(want)
    _compile_editable(adapter, venv)
    return venv


def _compile_editable(adapter: Adapter, venv: Venv) -> None:
    """Byte-compile an editable requirement's sources (this checkout's, for Conveyor) for
    the venv's Python, as pip does for every file of a wheel it installs. Workers run
    with PYTHONDONTWRITEBYTECODE, so without this every worker start would compile the
    package's uncached modules again, a cost no installed peer pays. Run on every use:
    only files changed since are compiled."""
    requirements = list(adapter.requirements)
    for flag, target in zip(requirements, requirements[1:]):
        if flag != "-e":
            continue
        src = Path(target.split("[", 1)[0]) / "src"
        if src.is_dir():
            subprocess.run([venv.python, "-m", "compileall", "-q", str(src)],
                           capture_output=True, timeout=300, check=False)


def peer_versions(adapter: Adapter, venv: Venv) -> dict[str, str]:
    code = (
        "import json, sys, importlib.metadata as m\n"
        "out = {'python': sys.version.split()[0]}\n"
        f"for d in {list(adapter.distributions)!r}:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: out[d] = 'missing'\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([venv.python, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    return dict(json.loads(proc.stdout))


def machine_facts(redis_host: str, redis_port: int) -> dict[str, str]:
    facts: dict[str, str] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "harness python": sys.version.split()[0],
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                facts["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    try:
        with Redis(redis_host, redis_port) as r:
            info = r.info("server")
            facts["redis-server"] = info.get("redis_version", "?")
    except OSError as exc:
        facts["redis-server"] = f"unreachable ({exc})"
    return facts
