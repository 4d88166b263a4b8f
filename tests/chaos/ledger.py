"""The chaos ledger and its checker (reliability.md §6.1), for every broker.

Every process appends JSON lines to a file of its own in one directory, opened with
``O_APPEND`` and written with one ``os.write`` per record: no user-space buffer, so a
record written before a SIGKILL is in the page cache and survives it.

Records (each carries ``ev``, ``t`` = ``time.time()`` and the writer's ``pid``):

=============  ==========================  ==================================================
ev             writer                      fields
=============  ==========================  ==================================================
enq_invoke     producer, before enqueue    id
enq_ok         producer, enqueue returned  id
enq_fail       producer, enqueue raised    id, error (the producer retries with the same id)
exec_start     worker, before user code    id, attempt
exec_end       worker, after user code     id, outcome: ok | error | cancelled
fault_start    nemesis (test, or a task)   fid, kind, target (a pid, or None: every process)
fault_end      nemesis                     fid, kind, target
dlq            drain, read from the broker id, reason, attempts
result         drain, read from the store  id, status
tick_send      scheduler, before_enqueue   schedule, fire, scheduled_for, id (the copy's id)
tick_enqueued  scheduler, after_enqueue    schedule, fire, scheduled_for, id (admitted copy)
tick_run       worker, in a scheduled task schedule, fire, scheduled_for, id, attempt
=============  ==========================  ==================================================

The checker is Jepsen's ``total-queue`` plus the duplicate rule of G2, with
A = invoked, OK = enqueue returned, C = completed (``exec_end ok`` *and* a stored
``succeeded`` result: the worker finished it and the broker took the ack), D = dead-lettered:

- ``lost = OK - C - D`` must be empty (G1);
- ``unexpected = (C | D) - A`` must be empty;
- ``both = C & D`` must be empty (exactly one terminal state);
- every pair of consecutive ``exec_start`` of one id must be *explained*: the earlier
  attempt raised (an explicit retry), or a fault touching the pid that ran it (or every
  process) was active between the earlier start and the later one (G2);
- attempt numbers of one id never go down.

Scheduler ticks (G7) are judged per schedule by :func:`check_ticks`: every tick in a
window ran, under exactly one task id, exactly once, never before its fire time, and the
broker admitted at most one copy of it, whatever the schedulers did.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LEDGER_DIR_ENV",
    "TICK_LEDGER_ENV",
    "Duplicate",
    "Ledger",
    "Recovery",
    "Report",
    "Rerun",
    "TickReport",
    "check",
    "check_ticks",
    "fire_key",
    "read_ledger",
    "tick_ledger",
    "worker_ledger",
]

LEDGER_DIR_ENV = "CONVEYOR_CHAOS_LEDGER"

Record = dict[str, Any]

# faults after which an interrupted attempt must be picked up by another worker (G3)
PROCESS_FAULTS = frozenset({"sigkill", "self_exit", "sigstop", "sigterm"})


class Ledger:
    """One process's append-only ledger file."""

    _fault_ids = itertools.count(1)

    def __init__(self, directory: str | Path, role: str, *, path: str | Path | None = None) -> None:
        """A file of this process's own in ``directory``; or, with ``path``, that file,
        which several processes may share (each record is one ``O_APPEND`` write)."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pid = os.getpid()
        self.path = (
            Path(path)
            if path is not None
            else self.directory / f"{role}-{self.pid}-{uuid.uuid4().hex[:6]}.jsonl"
        )
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
        )

    def record(self, ev: str, **fields: Any) -> None:
        if self._fd is None:
            raise RuntimeError(f"ledger {self.path} is closed")
        line = json.dumps({"ev": ev, "t": time.time(), "pid": self.pid, **fields}) + "\n"
        os.write(self._fd, line.encode())  # one write per record, O_APPEND: no torn lines

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- producer --------------------------------------------------------------------

    def enq_invoke(self, task_id: str) -> None:
        self.record("enq_invoke", id=task_id)

    def enq_ok(self, task_id: str) -> None:
        self.record("enq_ok", id=task_id)

    def enq_fail(self, task_id: str, error: str) -> None:
        self.record("enq_fail", id=task_id, error=error)

    # -- worker ----------------------------------------------------------------------

    def exec_start(self, task_id: str, attempt: int) -> None:
        self.record("exec_start", id=task_id, attempt=attempt)

    def exec_end(self, task_id: str, outcome: str) -> None:
        self.record("exec_end", id=task_id, outcome=outcome)

    # -- nemesis ---------------------------------------------------------------------

    def fault_start(self, kind: str, target: int | None) -> str:
        """Open a fault window on ``target`` (a pid; None for every process)."""
        fid = f"{self.pid}-{next(self._fault_ids)}"
        self.record("fault_start", fid=fid, kind=kind, target=target)
        return fid

    def fault_end(self, fid: str, kind: str, target: int | None) -> None:
        self.record("fault_end", fid=fid, kind=kind, target=target)

    def fault(self, kind: str, target: int | None) -> str:
        """An instantaneous fault (SIGKILL, SIGTERM): start and end at once."""
        fid = self.fault_start(kind, target)
        self.fault_end(fid, kind, target)
        return fid

    # -- drain -----------------------------------------------------------------------

    def dlq(self, task_id: str, reason: str, attempts: int) -> None:
        self.record("dlq", id=task_id, reason=reason, attempts=attempts)

    def result(self, task_id: str, status: str) -> None:
        self.record("result", id=task_id, status=status)


_worker_ledger: Ledger | None = None


def worker_ledger() -> Ledger:
    """This process's ledger, in the directory named by ``$CONVEYOR_CHAOS_LEDGER``."""
    global _worker_ledger
    if _worker_ledger is None or _worker_ledger.pid != os.getpid():
        directory = os.environ.get(LEDGER_DIR_ENV)
        if not directory:
            raise RuntimeError(f"set {LEDGER_DIR_ENV} to the chaos ledger directory")
        _worker_ledger = Ledger(directory, "worker")
    return _worker_ledger


def read_ledger(directory: str | Path) -> list[Record]:
    """Every record of every process, in time order (a torn last line is ignored)."""
    records: list[Record] = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # only a writer killed mid-write can leave one, and never ours
    records.sort(key=lambda r: r["t"])
    return records


# -- the checker ---------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    fid: str
    kind: str
    target: int | None
    start: float
    end: float | None  # None: never healed

    def touches(self, pid: int, start: float, until: float) -> bool:
        """True if this fault hit ``pid`` while [start, until] was in progress."""
        if self.target is not None and self.target != pid:
            return False
        return self.start <= until and (self.end is None or self.end >= start)


@dataclass(frozen=True)
class Duplicate:
    """Two consecutive starts of one task; ``because`` is None when nothing explains it."""

    id: str
    first_pid: int
    first_attempt: int
    first_start: float
    second_pid: int
    second_attempt: int
    second_start: float
    because: str | None


@dataclass(frozen=True)
class Recovery:
    """How long an attempt interrupted by a process fault took to start again."""

    id: str
    kind: str
    pid: int
    latency: float | None  # None: it never started again


@dataclass
class Report:
    invoked: set[str] = field(default_factory=set)
    ok: set[str] = field(default_factory=set)
    enq_failures: int = 0
    started: set[str] = field(default_factory=set)
    finished_ok: set[str] = field(default_factory=set)
    completed: set[str] = field(default_factory=set)
    dead: dict[str, Record] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    unexpected: set[str] = field(default_factory=set)
    both: set[str] = field(default_factory=set)
    recovered: set[str] = field(default_factory=set)
    starts: dict[str, list[Record]] = field(default_factory=dict)
    duplicates: list[Duplicate] = field(default_factory=list)
    attempts_regressions: list[str] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    @property
    def unexplained(self) -> list[Duplicate]:
        return [d for d in self.duplicates if d.because is None]

    @property
    def duplicated_ids(self) -> set[str]:
        return {d.id for d in self.duplicates}

    @property
    def max_recovery(self) -> float | None:
        latencies = [r.latency for r in self.recoveries if r.latency is not None]
        return max(latencies) if latencies else None

    def executions(self, task_id: str) -> int:
        return len(self.starts.get(task_id, []))

    def summary(self) -> str:
        why: dict[str, int] = defaultdict(int)
        for d in self.duplicates:
            why[d.because or "UNEXPLAINED"] += 1
        recovery = self.max_recovery
        return (
            f"invoked={len(self.invoked)} ok={len(self.ok)} enq_fail={self.enq_failures} "
            f"completed={len(self.completed)} dead={len(self.dead)} lost={len(self.lost)} "
            f"unexpected={len(self.unexpected)} both={len(self.both)} "
            f"recovered={len(self.recovered)} duplicates={len(self.duplicates)} "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(why.items())) or 'none'}) "
            f"faults={len(self.faults)} interrupted={len(self.recoveries)} "
            f"max_recovery={'-' if recovery is None else f'{recovery:.2f}s'}"
        )

    def assert_valid(self) -> None:
        """Fail with the details when a guarantee is broken."""
        problems = []
        if self.lost:
            problems.append(f"lost (enqueued, never completed nor dead): {sorted(self.lost)}")
        if self.unexpected:
            problems.append(f"unexpected (finished, never enqueued): {sorted(self.unexpected)}")
        if self.both:
            problems.append(f"both completed and dead-lettered: {sorted(self.both)}")
        if self.unexplained:
            problems.append(f"unexplained duplicates: {self.unexplained}")
        if self.attempts_regressions:
            problems.append(
                "attempt numbers went down for: "
                + "; ".join(
                    f"{task_id}: "
                    + ", ".join(
                        f"attempt {r['attempt']} in pid {r['pid']} at {r['t']:.3f}"
                        for r in self.starts.get(task_id, [])
                    )
                    for task_id in self.attempts_regressions
                )
            )
        assert not problems, self.summary() + "\n" + "\n".join(problems)


def _faults(records: Iterable[Record]) -> list[Fault]:
    starts: dict[str, Record] = {}
    ends: dict[str, float] = {}
    for r in records:
        if r["ev"] == "fault_start":
            starts[r["fid"]] = r
        elif r["ev"] == "fault_end":
            ends[r["fid"]] = r["t"]
    return [Fault(fid, r["kind"], r["target"], r["t"], ends.get(fid)) for fid, r in starts.items()]


def check(records: list[Record]) -> Report:
    """Evaluate a ledger (see the module docstring for the rules)."""
    report = Report()
    report.faults = faults = _faults(records)
    succeeded: set[str] = set()
    ends: dict[str, list[Record]] = defaultdict(list)
    starts: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        ev = r["ev"]
        if ev == "enq_invoke":
            report.invoked.add(r["id"])
        elif ev == "enq_ok":
            report.ok.add(r["id"])
        elif ev == "enq_fail":
            report.enq_failures += 1
        elif ev == "exec_start":
            starts[r["id"]].append(r)
        elif ev == "exec_end":
            ends[r["id"]].append(r)
            if r["outcome"] == "ok":
                report.finished_ok.add(r["id"])
        elif ev == "dlq":
            report.dead[r["id"]] = r
        elif ev == "result" and r["status"] == "succeeded":
            succeeded.add(r["id"])
    report.starts = dict(starts)
    report.started = set(starts)
    report.completed = report.finished_ok & succeeded
    dead = set(report.dead)
    report.lost = report.ok - report.completed - dead
    report.unexpected = (report.completed | dead) - report.invoked
    report.both = report.completed & dead
    report.recovered = (report.completed | dead) & (report.invoked - report.ok)

    for task_id, runs in starts.items():
        attempts = [r["attempt"] for r in runs]
        if any(b < a for a, b in itertools.pairwise(attempts)):
            report.attempts_regressions.append(task_id)
        for first, second in itertools.pairwise(runs):
            report.duplicates.append(
                Duplicate(
                    task_id,
                    first["pid"],
                    first["attempt"],
                    first["t"],
                    second["pid"],
                    second["attempt"],
                    second["t"],
                    _explain(first, second, ends.get(task_id, []), faults),
                )
            )

    for fault in faults:
        if fault.kind not in PROCESS_FAULTS or fault.target is None:
            continue
        for task_id, runs in starts.items():
            for run in runs:
                if run["pid"] != fault.target or run["t"] > fault.start:
                    continue
                later = [r["t"] for r in runs if r["t"] > fault.start]
                finished_here = any(
                    e["pid"] == run["pid"] and e["t"] >= run["t"] and e["outcome"] == "ok"
                    for e in ends.get(task_id, [])
                )
                if finished_here and not later:
                    continue  # the attempt survived the fault (e.g. drained on SIGTERM)
                latency = later[0] - fault.start if later else None
                report.recoveries.append(Recovery(task_id, fault.kind, run["pid"], latency))
    return report


def _explain(first: Record, second: Record, ends: list[Record], faults: list[Fault]) -> str | None:
    for end in ends:
        same_run = end["pid"] == first["pid"] and first["t"] <= end["t"] <= second["t"]
        if same_run and end["outcome"] == "error":
            return "retry"
    for fault in faults:
        if fault.touches(first["pid"], first["t"], second["t"]):
            return fault.kind
    return None


# -- scheduler ticks (G7) ------------------------------------------------------------

TICK_LEDGER_ENV = "CONVEYOR_CHAOS_TICKS"
TICKS_FILE = "ticks.jsonl"

_tick_ledger: Ledger | None = None


def tick_ledger() -> Ledger:
    """This process's writer of the tick ledger: the file named by
    ``$CONVEYOR_CHAOS_TICKS``, else ``ticks.jsonl`` in ``$CONVEYOR_CHAOS_LEDGER``. Every
    scheduler and worker process appends to that one file (one ``O_APPEND`` write per
    record), so :func:`read_ledger` on the directory sees ticks and faults together."""
    global _tick_ledger
    if _tick_ledger is None or _tick_ledger.pid != os.getpid():
        directory = os.environ.get(LEDGER_DIR_ENV)
        path = os.environ.get(TICK_LEDGER_ENV)
        if not path:
            if not directory:
                raise RuntimeError(f"set {TICK_LEDGER_ENV} or {LEDGER_DIR_ENV}")
            path = str(Path(directory) / TICKS_FILE)
        _tick_ledger = Ledger(directory or Path(path).parent, "ticks", path=path)
    return _tick_ledger


def fire_key(fire: float) -> float:
    """A fire time as the checker keys it (the scheduler's keys use milliseconds too)."""
    return round(fire, 3)


@dataclass(frozen=True)
class Rerun:
    """One task id of a tick that started more than once (a worker redelivery, not a
    second enqueue); ``because`` is the fault that explains it, if any."""

    fire: float
    id: str
    pids: tuple[int, ...]
    because: str | None


@dataclass
class TickReport:
    """What the tick ledger says about one schedule (see :func:`check_ticks`).

    Records: ``tick_send`` (a scheduler prepared a copy of a tick; ``id`` is the copy's
    fresh task id), ``tick_enqueued`` (the broker admitted that copy: ``after_enqueue``),
    ``tick_run`` (a worker ran the tick's task: ``id`` = ``ctx.task_id``). All carry
    ``schedule`` and ``fire`` (Unix seconds, from the ``scheduled_for`` label)."""

    schedule: str
    interval: float
    clock_slack: float
    runs: dict[float, list[Record]] = field(default_factory=dict)
    sends: dict[float, list[Record]] = field(default_factory=dict)
    admissions: dict[float, list[Record]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)

    # -- per tick ------------------------------------------------------------------

    def ids(self, fire: float) -> set[str]:
        return {r["id"] for r in self.runs.get(fire_key(fire), [])}

    def executions(self, fire: float) -> int:
        return len(self.runs.get(fire_key(fire), []))

    def expected(self, start: float, end: float) -> list[float]:
        """Every fire time of the schedule in [start, end] (epoch-aligned interval)."""
        first = math.ceil(start / self.interval - 1e-9)
        last = math.floor(end / self.interval + 1e-9)
        return [fire_key(k * self.interval) for k in range(first, last + 1)]

    def ran(self, start: float, end: float) -> list[float]:
        """Fire times in [start, end] that ran at least once."""
        return sorted(f for f in self.runs if start <= f <= end)

    def missing(self, start: float, end: float) -> list[float]:
        return [f for f in self.expected(start, end) if f not in self.runs]

    # -- whole-ledger problems -------------------------------------------------------

    @property
    def doubled(self) -> dict[float, set[str]]:
        """Ticks that ran under more than one task id: enqueued twice (G7 broken)."""
        return {f: ids for f in self.runs if len(ids := self.ids(f)) > 1}

    @property
    def reruns(self) -> list[Rerun]:
        out = []
        for fire, runs in sorted(self.runs.items()):
            by_id: dict[str, list[Record]] = defaultdict(list)
            for r in runs:
                by_id[r["id"]].append(r)
            for task_id, same in by_id.items():
                if len(same) < 2:
                    continue
                because: str | None = None
                for first, second in itertools.pairwise(same):
                    because = _explain_rerun(first, second, self.faults)
                    if because is None:
                        break
                out.append(Rerun(fire, task_id, tuple(r["pid"] for r in same), because))
        return out

    @property
    def early(self) -> list[Record]:
        """Runs that started before their fire time (beyond the clock slack)."""
        return [
            r for runs in self.runs.values() for r in runs if r["t"] < r["fire"] - self.clock_slack
        ]

    @property
    def off_grid(self) -> list[float]:
        """Fire times that are not ticks of the schedule."""
        return sorted(
            f for f in self.runs if abs(f / self.interval - round(f / self.interval)) > 1e-6
        )

    @property
    def over_admitted(self) -> dict[float, list[str]]:
        """Ticks the broker admitted more than one copy of."""
        return {f: [r["id"] for r in a] for f, a in self.admissions.items() if len(a) > 1}

    @property
    def mismatched(self) -> dict[float, tuple[str, set[str]]]:
        """Ticks whose admitted copy is not the task that ran."""
        out = {}
        for fire, admitted in self.admissions.items():
            ran = self.ids(fire)
            if len(admitted) == 1 and ran and ran != {admitted[0]["id"]}:
                out[fire] = (admitted[0]["id"], ran)
        return out

    # -- counts --------------------------------------------------------------------

    @property
    def copies(self) -> int:
        """Copies of ticks the schedulers prepared (every scheduler, every retry)."""
        return sum(len(s) for s in self.sends.values())

    @property
    def admitted(self) -> int:
        return sum(len(a) for a in self.admissions.values())

    @property
    def rejected(self) -> int:
        """Copies that did not become a task: refused by the broker's dedupe (another
        scheduler's or an earlier attempt's copy was in), or lost with a failed send."""
        return self.copies - self.admitted

    def lateness(self, start: float, end: float) -> list[float]:
        """Seconds from fire time to the first run, for ticks in [start, end] that ran."""
        return [min(r["t"] for r in self.runs[f]) - f for f in self.ran(start, end)]

    def summary(self, start: float | None = None, end: float | None = None) -> str:
        text = (
            f"{self.schedule}: ticks ran={len(self.runs)} copies sent={self.copies} "
            f"admitted={self.admitted} rejected={self.rejected} doubled={len(self.doubled)} "
            f"reruns={len(self.reruns)} early={len(self.early)} "
            f"over_admitted={len(self.over_admitted)}"
        )
        if start is not None and end is not None:
            late = self.lateness(start, end)
            text += (
                f"; window {len(self.expected(start, end))} ticks, "
                f"missing={len(self.missing(start, end))}, "
                f"max lateness {max(late, default=0.0):.2f}s"
            )
        return text

    # -- verdicts ------------------------------------------------------------------

    def problems(self, *, allow_explained_reruns: bool = False) -> list[str]:
        """What breaks "each tick enqueued once and run once", over every tick seen."""
        problems = []
        if self.doubled:
            problems.append(f"ticks enqueued more than once (task ids): {self.doubled}")
        reruns = [r for r in self.reruns if not (allow_explained_reruns and r.because is not None)]
        if reruns:
            problems.append(f"ticks run more than once: {reruns}")
        if self.early:
            problems.append(f"ticks run before their fire time: {self.early}")
        if self.off_grid:
            problems.append(f"runs at times that are not ticks: {self.off_grid}")
        if self.over_admitted:
            problems.append(f"ticks the broker admitted twice: {self.over_admitted}")
        if self.mismatched:
            problems.append(f"the admitted copy is not the one that ran: {self.mismatched}")
        return problems

    def assert_at_most_once(self, *, allow_explained_reruns: bool = False) -> None:
        problems = self.problems(allow_explained_reruns=allow_explained_reruns)
        assert not problems, self.summary() + "\n" + "\n".join(problems)

    def assert_exactly_once(
        self, start: float, end: float, *, allow_explained_reruns: bool = False
    ) -> None:
        """Every tick in [start, end] ran, under one task id, once; nothing anywhere was
        doubled or early."""
        problems = self.problems(allow_explained_reruns=allow_explained_reruns)
        missing = self.missing(start, end)
        if missing:
            problems.append(f"ticks in the window that never ran: {missing}")
        assert not problems, self.summary(start, end) + "\n" + "\n".join(problems)


def _explain_rerun(first: Record, second: Record, faults: list[Fault]) -> str | None:
    for fault in faults:
        if fault.touches(first["pid"], first["t"], second["t"]):
            return fault.kind
    return None


def check_ticks(
    records: list[Record], schedule: str, *, interval: float = 1.0, clock_slack: float = 0.05
) -> TickReport:
    """Collect one schedule's tick records (and the fault windows) from a ledger."""
    report = TickReport(schedule, interval, clock_slack, faults=_faults(records))
    buckets = {
        "tick_run": report.runs,
        "tick_send": report.sends,
        "tick_enqueued": report.admissions,
    }
    for r in records:
        bucket = buckets.get(r["ev"])
        if bucket is not None and r["schedule"] == schedule:
            bucket.setdefault(fire_key(r["fire"]), []).append(r)
    return report
