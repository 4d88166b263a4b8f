"""Worker process management: spawn, measure (RSS, CPU) via /proc, and kill reliably.

Every process the harness starts gets its own session (so its process group holds its
children) and an environment marker ``BENCH_RUN_TOKEN``; :meth:`ProcessGroup.kill` kills
the groups, every descendant it can find, and then any process still carrying the token,
so a run never leaves workers behind, also on failure or timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Field 4 (ppid) follows the parenthesised command name, which may hold spaces.
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(roots: Iterable[int]) -> list[int]:
    """The roots and all their live descendants."""
    kids = _children_map()
    out: list[int] = []
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if os.path.exists(f"/proc/{pid}"):
            out.append(pid)
        stack.extend(kids.get(pid, ()))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the peak resident set size of a live process, in bytes (0 if gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pids_with_token(token: str) -> list[int]:
    needle = f"BENCH_RUN_TOKEN={token}".encode()
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


@dataclass
class Snapshot:
    cpu_s: float
    rss_total: int
    rss_by_pid: dict[int, int]


class ProcessGroup:
    """A set of worker processes started for one run."""

    def __init__(self, token: str, log_dir: Path) -> None:
        self.token = token
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def spawn(self, cmd: list[str], env: Mapping[str, str], cwd: Path, label: str) -> None:
        log = self.log_dir / f"{label}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd, env={**env, "BENCH_RUN_TOKEN": self.token}, cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)

    def exited(self) -> list[tuple[int, int]]:
        """(index, returncode) of root processes that have exited."""
        return [(i, rc) for i, p in enumerate(self.procs) if (rc := p.poll()) is not None]

    def all_pids(self) -> list[int]:
        return descendants(p.pid for p in self.procs)

    def snapshot(self) -> Snapshot:
        pids = self.all_pids()
        rss = {pid: peak_rss_bytes(pid) for pid in pids}
        return Snapshot(sum(cpu_seconds(pid) for pid in pids), sum(rss.values()), rss)

    def kill(self, grace: float = 0.0) -> None:
        pids = set(self.all_pids())
        if grace > 0:
            for p in self.procs:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(p.poll() is None for p in self.procs):
                time.sleep(0.05)
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
        for pid in pids | set(pids_with_token(self.token)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        # Anything that escaped its group (double fork, setsid) still has the token.
        for _ in range(20):
            left = pids_with_token(self.token)
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def log_tail(self, chars: int = 1500) -> str:
        parts = []
        for log in self.logs:
            try:
                text = log.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                parts.append(f"[{log.name}] …{text[-chars:]}")
        return "\n".join(parts)
