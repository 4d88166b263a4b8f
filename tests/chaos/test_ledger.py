"""The checker itself, on hand-written ledgers: it must catch what the chaos tests rely
on it to catch (fast, no services)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chaos.ledger import (
    LEDGER_DIR_ENV,
    TICK_LEDGER_ENV,
    Ledger,
    Record,
    check,
    check_ticks,
    read_ledger,
    tick_ledger,
)

A, B = 101, 202  # worker pids


def rec(ev: str, t: float, pid: int = 1, **fields: Any) -> Record:
    return {"ev": ev, "t": t, "pid": pid, **fields}


def enqueued(*ids: str) -> list[Record]:
    out = []
    for i in ids:
        out += [rec("enq_invoke", 0.0, id=i), rec("enq_ok", 0.1, id=i)]
    return out


def ran(
    task_id: str, pid: int, start: float, end: float | None, attempt: int = 1, outcome: str = "ok"
) -> list[Record]:
    out = [rec("exec_start", start, pid, id=task_id, attempt=attempt)]
    if end is not None:
        out.append(rec("exec_end", end, pid, id=task_id, outcome=outcome))
    return out


def stored(*ids: str, status: str = "succeeded") -> list[Record]:
    return [rec("result", 99.0, id=i, status=status) for i in ids]


def fault(kind: str, target: int | None, start: float, end: float | None) -> list[Record]:
    out = [rec("fault_start", start, fid=f"f{start}", kind=kind, target=target)]
    if end is not None:
        out.append(rec("fault_end", end, fid=f"f{start}", kind=kind, target=target))
    return out


def test_a_clean_run_passes() -> None:
    report = check([*enqueued("x", "y"), *ran("x", A, 1, 2), *ran("y", B, 1, 2), *stored("x", "y")])
    report.assert_valid()
    assert report.completed == {"x", "y"}
    assert not report.duplicates


def test_an_acknowledged_enqueue_that_never_completes_is_lost() -> None:
    report = check([*enqueued("x", "y"), *ran("x", A, 1, 2), *stored("x")])
    assert report.lost == {"y"}
    with pytest.raises(AssertionError, match="lost"):
        report.assert_valid()


def test_a_finished_run_without_a_stored_result_is_lost() -> None:
    # the worker's exec_end is not proof: the broker must have taken the ack
    report = check([*enqueued("x"), *ran("x", A, 1, 2)])
    assert report.lost == {"x"}


def test_dead_letters_count_as_terminal_and_completed_plus_dead_fails() -> None:
    dlq = rec("dlq", 99.0, id="x", reason="poison", attempts=3)
    assert check([*enqueued("x"), dlq]).lost == set()
    both = check([*enqueued("x"), *ran("x", A, 1, 2), *stored("x"), dlq])
    with pytest.raises(AssertionError, match="both"):
        both.assert_valid()


def test_completions_never_enqueued_are_unexpected() -> None:
    report = check([*ran("ghost", A, 1, 2), *stored("ghost")])
    assert report.unexpected == {"ghost"}
    with pytest.raises(AssertionError, match="unexpected"):
        report.assert_valid()


def test_a_duplicate_without_a_fault_is_unexplained() -> None:
    report = check([*enqueued("x"), *ran("x", A, 1, 2), *ran("x", B, 3, 4, 2), *stored("x")])
    assert [d.because for d in report.duplicates] == [None]
    with pytest.raises(AssertionError, match="unexplained"):
        report.assert_valid()


def test_a_fault_on_another_process_or_outside_the_window_explains_nothing() -> None:
    runs = [*enqueued("x"), *ran("x", A, 1, 2), *ran("x", B, 5, 6, 2), *stored("x")]
    assert check([*runs, *fault("sigkill", B, 1.5, 1.5)]).unexplained
    assert check([*runs, *fault("sigkill", A, 0.2, 0.5)]).unexplained  # healed before
    assert check([*runs, *fault("sigkill", A, 5.5, 5.5)]).unexplained  # after the rerun


def test_a_fault_on_the_first_runner_explains_the_rerun_and_times_recovery() -> None:
    records = [
        *enqueued("x"),
        *ran("x", A, 1, None),
        *fault("sigkill", A, 2, 2),
        *ran("x", B, 4.5, 5, 2),
        *stored("x"),
    ]
    report = check(records)
    report.assert_valid()
    assert [d.because for d in report.duplicates] == ["sigkill"]
    assert [(r.id, r.latency) for r in report.recoveries] == [("x", 2.5)]


def test_a_broker_wide_fault_explains_duplicates_on_every_process() -> None:
    records = [
        *enqueued("x"),
        *ran("x", A, 1, 2),
        *fault("redis_sigkill", None, 1.5, 3),
        *ran("x", B, 6, 7, 2),
        *stored("x"),
    ]
    check(records).assert_valid()


def test_an_explicit_retry_explains_the_next_attempt() -> None:
    records = [*enqueued("x"), *ran("x", A, 1, 2, outcome="error"), *ran("x", A, 3, 4, 2)]
    report = check([*records, *stored("x")])
    report.assert_valid()
    assert [d.because for d in report.duplicates] == ["retry"]


def test_attempt_numbers_must_not_go_down() -> None:
    records = [
        *enqueued("x"),
        *ran("x", A, 1, None, 2),
        *fault("sigkill", A, 1.5, 1.5),
        *ran("x", B, 4, 5, 1),
        *stored("x"),
    ]
    with pytest.raises(AssertionError, match="attempt numbers"):
        check(records).assert_valid()


def test_the_ledger_round_trips_through_files(tmp_path: Path) -> None:
    producer, worker = Ledger(tmp_path, "producer"), Ledger(tmp_path, "worker")
    try:
        producer.enq_invoke("x")
        producer.enq_ok("x")
        worker.exec_start("x", 1)
        fid = producer.fault_start("sigstop", worker.pid)
        producer.fault_end(fid, "sigstop", worker.pid)
        worker.exec_end("x", "ok")
        producer.result("x", "succeeded")
    finally:
        producer.close()
        worker.close()
    records = read_ledger(tmp_path)
    assert [r["ev"] for r in records] == [
        "enq_invoke",
        "enq_ok",
        "exec_start",
        "fault_start",
        "fault_end",
        "exec_end",
        "result",
    ]
    report = check(records)
    report.assert_valid()
    assert report.completed == {"x"}
    assert [f.kind for f in report.faults] == ["sigstop"]


# -- the tick checker (G7) -----------------------------------------------------------

S = "every-second"


def tick(ev: str, fire: float, task_id: str, t: float | None = None, pid: int = A) -> Record:
    return rec(ev, fire + 0.01 if t is None else t, pid, schedule=S, fire=fire, id=task_id)


def ticks_ran(*fires: float) -> list[Record]:
    out = []
    for fire in fires:
        out += [
            tick("tick_send", fire, f"t{fire}", fire + 0.001),
            tick("tick_enqueued", fire, f"t{fire}", fire + 0.002),
            tick("tick_run", fire, f"t{fire}"),
        ]
    return out


def test_every_tick_once_passes_and_other_schedules_are_ignored() -> None:
    other = {**tick("tick_run", 10, "o"), "schedule": "other"}
    report = check_ticks([*ticks_ran(10, 11, 12), other, other], S)
    report.assert_exactly_once(10, 12)
    assert report.expected(9.5, 12.5) == [10, 11, 12]
    assert (report.copies, report.admitted, report.rejected) == (3, 3, 0)


def test_a_missing_tick_fails() -> None:
    report = check_ticks(ticks_ran(10, 12), S)
    assert report.missing(10, 12) == [11]
    report.assert_at_most_once()  # nothing doubled: only the window check catches it
    with pytest.raises(AssertionError, match="never ran"):
        report.assert_exactly_once(10, 12)


def test_a_tick_enqueued_twice_fails_even_outside_the_window() -> None:
    doubled = [*ticks_ran(10, 11), tick("tick_run", 5, "a"), tick("tick_run", 5, "b", 5.5)]
    report = check_ticks(doubled, S)
    assert report.doubled == {5: {"a", "b"}}
    with pytest.raises(AssertionError, match="enqueued more than once"):
        report.assert_exactly_once(10, 11)


def test_a_tick_run_twice_fails_unless_a_fault_explains_it_and_that_is_allowed() -> None:
    rerun = [*ticks_ran(10), tick("tick_run", 10, "t10", 12, pid=B)]
    with pytest.raises(AssertionError, match="run more than once"):
        check_ticks(rerun, S).assert_exactly_once(10, 10)
    explained = check_ticks([*rerun, *fault("client_kill", None, 10.5, 11)], S)
    assert [r.because for r in explained.reruns] == ["client_kill"]
    with pytest.raises(AssertionError, match="run more than once"):
        explained.assert_exactly_once(10, 10)
    explained.assert_exactly_once(10, 10, allow_explained_reruns=True)


def test_early_runs_off_grid_runs_and_double_admissions_fail() -> None:
    early = check_ticks([tick("tick_run", 10, "a", 9.9)], S)
    assert early.early
    with pytest.raises(AssertionError, match="before their fire time"):
        early.assert_at_most_once()
    assert check_ticks([tick("tick_run", 10, "a", 9.97)], S).early == []  # clock slack
    with pytest.raises(AssertionError, match="not ticks"):
        check_ticks([tick("tick_run", 10.5, "a")], S).assert_at_most_once()
    admitted_twice = [*ticks_ran(10), tick("tick_enqueued", 10, "b")]
    with pytest.raises(AssertionError, match="admitted twice"):
        check_ticks(admitted_twice, S).assert_at_most_once()
    wrong = [tick("tick_enqueued", 10, "a"), tick("tick_run", 10, "b")]
    with pytest.raises(AssertionError, match="admitted copy is not the one that ran"):
        check_ticks(wrong, S).assert_at_most_once()


def test_rejected_copies_are_counted() -> None:
    copies = [*ticks_ran(10), tick("tick_send", 10, "peer", pid=B)]
    report = check_ticks(copies, S)
    report.assert_exactly_once(10, 10)
    assert (report.copies, report.admitted, report.rejected) == (2, 1, 1)


def test_the_tick_ledger_is_one_shared_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LEDGER_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(TICK_LEDGER_ENV, raising=False)
    monkeypatch.setattr("tests.chaos.ledger._tick_ledger", None)  # this process's writer
    writer = tick_ledger()
    other = Ledger(tmp_path, "ticks", path=tmp_path / "ticks.jsonl")
    try:
        assert tick_ledger() is writer
        writer.record("tick_run", schedule=S, fire=10.0, id="x")
        other.record("tick_run", schedule=S, fire=11.0, id="y")
    finally:
        writer.close()
        other.close()
    assert [p.name for p in tmp_path.iterdir()] == ["ticks.jsonl"]
    check_ticks(read_ledger(tmp_path), S).assert_exactly_once(10, 11)
