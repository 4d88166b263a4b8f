"""The checker itself, on hand-written ledgers: it must catch what the chaos tests rely
on it to catch (fast, no services)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chaos.ledger import Ledger, Record, check, read_ledger

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
