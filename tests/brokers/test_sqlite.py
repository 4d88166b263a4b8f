"""What only the SQLite broker promises, beyond the conformance suite: durable pragmas,
the network-filesystem guard, several processes on one file, push-based wake-ups across
processes, bounded growth (expired rows, the WAL) and no loss when a producer is killed."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from conveyor.brokers.base import (
    BrokerOptions,
    Outgoing,
    Place,
    StoredResult,
    TaskLocation,
    WorkerInfo,
    WorkflowRecord,
)
from conveyor.brokers.sqlite import SqliteBroker
from conveyor.brokers.sqlite.connection import WAL_LIMIT_BYTES, check_local_filesystem
from conveyor.brokers.sqlite.queries import SCHEMA_VERSION
from conveyor.errors import ConfigurationError
from conveyor.result import AbortOutcome
from conveyor.testing import ManualClock
from tests.conftest import eventually, fetch_is_waiting

# One script for every child process: `python -c CHILD <mode> <url> <args...>`.
CHILD = r"""
import asyncio, sys, uuid
from conveyor.brokers.base import Outgoing, StoredResult
from conveyor.brokers.sqlite import SqliteBroker, SqliteResultStore

async def publish(url, count):
    broker = SqliteBroker(url)
    await broker.connect()
    try:
        for _ in range(int(count)):
            (task_id,) = await broker.publish([Outgoing(uuid.uuid4().hex, "default", b"child")])
            print(task_id, flush=True)
    finally:
        await broker.close()

async def work(url, count):
    broker = SqliteBroker(url)
    await broker.connect()
    try:
        done = 0
        while done < int(count):
            for delivery in await broker.fetch(["default"], 10, 1.0):
                assert await delivery.ack(StoredResult(delivery.task_id, delivery.body[::-1], 60.0))
                done += 1
    finally:
        await broker.close()

async def put_result(url, task_id):
    store = SqliteResultStore(url)
    await store.connect()
    try:
        await store.put([StoredResult(task_id, b"from-child", 60.0)])
    finally:
        await store.close()

async def publish_forever(url, ledger):
    broker = SqliteBroker(url)
    await broker.connect()
    with open(ledger, "a") as out:
        while True:
            (task_id,) = await broker.publish([Outgoing(uuid.uuid4().hex, "default", b"x" * 64)])
            out.write(task_id + "\n")
            out.flush()

modes = {"publish": publish, "work": work, "put_result": put_result,
         "publish_forever": publish_forever}
asyncio.run(modes[sys.argv[1]](*sys.argv[2:]))
"""


def _url(tmp_path: Path, name: str = "broker.db") -> str:
    return f"sqlite:///{tmp_path / name}"


@asynccontextmanager
async def _broker(
    url: str, options: BrokerOptions | None = None, **kw: Any
) -> AsyncIterator[SqliteBroker]:
    broker = SqliteBroker(url, options or BrokerOptions(), **kw)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.close()


async def _child(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, *args, stdout=asyncio.subprocess.PIPE
    )


def _out(body: bytes = b"x", **kw: Any) -> Outgoing:
    return Outgoing(task_id=uuid.uuid4().hex, queue="default", body=body, **kw)


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(count)


# -- durability ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "synchronous", "busy_ms"),
    [
        ("", 2, 5000),  # durable by default: FULL
        ("?synchronous=normal&busy_timeout=0.25", 1, 250),
    ],
    ids=["default", "normal"],
)
async def test_connections_use_wal_with_the_configured_synchronous_and_busy_timeout(
    tmp_path: Path, query: str, synchronous: int, busy_ms: int
) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[Any, ...]:
        return tuple(
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "busy_timeout")
        )

    async with _broker(_url(tmp_path) + query) as broker:
        assert await broker._db.run(pragmas) == ("wal", synchronous, busy_ms)
        await broker.publish([_out()])
        (delivery,) = await broker.fetch(["default"], 1, 0)
        keeper = broker.lease_keeper()  # its own connection gets the same pragmas
        try:
            assert keeper.renew([delivery], 10) == [True]
            assert keeper._conn is not None
            assert pragmas(keeper._conn) == ("wal", synchronous, busy_ms)
        finally:
            keeper.close()


async def test_a_claim_commits_unflushed_and_everything_else_flushed(tmp_path: Path) -> None:
    """With FULL, a claim alone commits with synchronous=NORMAL (no fsync on the way from
    an enqueue to its start: a claim lost to a power cut only runs the task again); the
    publish and the ack before and after it commit with FULL."""
    statements: list[str] = []
    async with _broker(_url(tmp_path)) as broker:
        await broker._db.run(lambda conn: conn.set_trace_callback(statements.append))
        try:
            await broker.publish([_out()])
            (delivery,) = await broker.fetch(["default"], 1, 0)
            assert await delivery.ack()
        finally:
            await broker._db.run(lambda conn: conn.set_trace_callback(None))
    modes = [s.split("=")[1].strip() for s in statements if s.startswith("PRAGMA synchronous")]
    commits = [i for i, s in enumerate(statements) if s == "COMMIT"]
    assert modes == ["NORMAL", "FULL"]  # around the claim, and only there
    normal, full = (statements.index(f"PRAGMA synchronous = {m}") for m in modes)
    assert [i for i in commits if normal < i < full] == [commits[1]]  # the claim's commit
    assert len(commits) == 3  # publish, claim, ack


# -- where the file may live ---------------------------------------------------------


def _mounts(tmp_path: Path, *lines: str) -> Path:
    mounts = tmp_path / "mounts"
    mounts.write_text("".join(line + "\n" for line in lines))
    return mounts


async def test_network_filesystem_is_refused_with_the_reason(tmp_path: Path) -> None:
    data = tmp_path / "shared"
    data.mkdir()
    mounts = _mounts(tmp_path, "/dev/vda / ext4 rw 0 0", f"server:/export {data} nfs4 rw 0 0")
    broker = SqliteBroker(_url(data), mounts_file=mounts, environ={})
    with pytest.raises(ConfigurationError, match=r"network filesystem \(nfs4.*one host"):
        await broker.connect()
    assert not (data / "broker.db").exists()


async def test_network_filesystem_opt_out_only_warns(tmp_path: Path) -> None:
    mounts = _mounts(tmp_path, "/dev/vda / ext4 rw 0 0", f"//nas/share {tmp_path} cifs rw 0 0")
    environ = {"CONVEYOR_SQLITE_ALLOW_NETWORK_FS": "1"}
    broker = SqliteBroker(_url(tmp_path), mounts_file=mounts, environ=environ)
    with pytest.warns(RuntimeWarning, match="cifs"):
        await broker.connect()
    try:
        assert await broker.publish([_out()]) != []
    finally:
        await broker.close()


@pytest.mark.parametrize("fstype", ["nfs", "cifs", "smb3", "fuse.sshfs", "9p", "ceph"])
def test_network_filesystem_types_are_detected(tmp_path: Path, fstype: str) -> None:
    mounts = _mounts(tmp_path, "/dev/vda / ext4 rw 0 0", f"remote {tmp_path} {fstype} rw 0 0")
    with pytest.raises(ConfigurationError, match=fstype):
        check_local_filesystem(tmp_path, mounts_file=mounts, environ={})


def test_local_mount_inside_a_network_mount_is_accepted(tmp_path: Path) -> None:
    local = tmp_path / "local disk"
    local.mkdir()
    escaped = str(local).replace(" ", "\\040")
    mounts = _mounts(tmp_path, "server:/ / nfs rw 0 0", f"/dev/sdb1 {escaped} ext4 rw 0 0")
    assert check_local_filesystem(local, mounts_file=mounts, environ={}) is None
    with pytest.raises(ConfigurationError):
        check_local_filesystem(tmp_path, mounts_file=mounts, environ={})


async def test_relative_and_absolute_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    async with _broker("sqlite:///data/rel.db") as broker:
        assert broker.path == tmp_path / "data" / "rel.db"
    assert (tmp_path / "data" / "rel.db").is_file()
    assert SqliteBroker(f"sqlite:///{tmp_path}/abs.db").path == tmp_path / "abs.db"


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:///:memory:", "sqlite:///"])
def test_urls_without_a_local_file_are_rejected(url: str) -> None:
    with pytest.raises(ConfigurationError):
        SqliteBroker(url)


async def test_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    broker = SqliteBroker(_url(tmp_path / "nope"))
    with pytest.raises(ConfigurationError, match="does not exist"):
        await broker.connect()


# -- schema versions -----------------------------------------------------------------


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def _user_version(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


async def test_version_2_file_is_upgraded_and_loses_the_unused_ticks_table(
    tmp_path: Path,
) -> None:
    db = tmp_path / "broker.db"
    async with _broker(_url(tmp_path)) as broker:
        assert "schedule_ticks" not in _tables(db)  # new files never get it
        kept = _out(b"kept")
        await broker.publish([kept])
    with sqlite3.connect(db) as conn:  # what version 2 left behind
        conn.executescript(
            "CREATE TABLE schedule_ticks (schedule_id TEXT NOT NULL, fire_time REAL NOT NULL,"
            " expires_at REAL NOT NULL, PRIMARY KEY (schedule_id, fire_time)) WITHOUT ROWID;"
            "CREATE INDEX schedule_ticks_expiry ON schedule_ticks (expires_at);"
            "INSERT INTO schedule_ticks VALUES ('nightly', 1.0, 2.0);"
            "PRAGMA user_version = 2;"
        )
    async with _broker(_url(tmp_path)) as broker:
        assert "schedule_ticks" not in _tables(db)
        assert _user_version(db) == SCHEMA_VERSION
        (delivery,) = await broker.fetch(["default"], 1, 0)
        assert (delivery.task_id, delivery.body) == (kept.task_id, b"kept")
        assert await broker.reap() == 0  # maintenance no longer touches the table


def _without_abort_column(db: Path) -> None:
    """Make ``db`` what version 3 left behind: no tasks.abort_requested."""
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "ALTER TABLE tasks DROP COLUMN abort_requested; PRAGMA user_version = 3;"
        )


async def test_version_3_file_gains_the_abort_mark(tmp_path: Path) -> None:
    db = tmp_path / "broker.db"
    async with _broker(_url(tmp_path)) as broker:
        queued, running = _out(b"queued"), _out(b"running")
        await broker.publish([running])
        assert len(await broker.fetch(["default"], 1, 0)) == 1
        await broker.publish([queued])
    _without_abort_column(db)
    async with _broker(_url(tmp_path)) as broker:
        assert _user_version(db) == SCHEMA_VERSION
        assert await broker.abort(running.task_id, lambda body, attempts: None) == (
            AbortOutcome.SIGNALLED
        )
        (kept,) = await broker.fetch(["default"], 1, 0)
        assert (kept.task_id, kept.abort_requested) == (queued.task_id, False)


async def test_version_5_file_gains_workflows(tmp_path: Path) -> None:
    db = tmp_path / "broker.db"
    async with _broker(_url(tmp_path)) as broker:
        await broker.publish([_out(b"queued")])
    with sqlite3.connect(db) as conn:  # what version 5 left behind
        conn.executescript(
            "DROP INDEX tasks_workflow; ALTER TABLE tasks DROP COLUMN workflow;"
            "DROP TABLE workflows; DROP TABLE barriers; DROP TABLE barrier_slots;"
            "PRAGMA user_version = 5;"
        )
    async with _broker(_url(tmp_path)) as broker:
        assert _user_version(db) == SCHEMA_VERSION
        assert {"workflows", "barriers", "barrier_slots"} <= _tables(db)
        await broker.publish([_out(b"in a workflow", workflow="w1")])
        record = WorkflowRecord("w1", "running", time.time())
        await broker.open_workflow(record)
        assert await broker.abort_workflow("w1") == (record, [ANY])
        assert len(await broker.fetch(["default"], 5, 0)) == 2


@pytest.mark.slow
async def test_processes_opening_an_old_file_at_once_all_upgrade_it(tmp_path: Path) -> None:
    db = tmp_path / "broker.db"
    async with _broker(_url(tmp_path)):
        pass
    _without_abort_column(db)
    # each child reads the columns, then takes the write lock: all but one find the
    # column added by then (sqlite3 "duplicate column"), which must not fail the connect
    script = (
        "import asyncio, sys\n"
        "from conveyor.brokers.sqlite import SqliteBroker\n"
        "async def main():\n"
        "    broker = SqliteBroker(sys.argv[1])\n"
        "    print('ready', flush=True)\n"
        "    sys.stdin.readline()\n"
        "    await broker.connect()\n"
        "    await broker.close()\n"
        "asyncio.run(main())\n"
    )
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            _url(tmp_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(6)
    ]
    for child in children:  # every interpreter has started and imported...
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"ready\n"
    for child in children:  # ...then all of them connect at once
        assert child.stdin is not None
        child.stdin.write(b"go\n")
    for child in children:
        assert child.stdin is not None
        await child.stdin.drain()
    codes = [await child.wait() for child in children]
    assert codes == [0] * 6
    assert _user_version(db) == SCHEMA_VERSION


async def test_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "broker.db"
    async with _broker(_url(tmp_path)):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigurationError, match="newer Conveyor"):
        async with _broker(_url(tmp_path)):
            pass


# -- several processes on one file ---------------------------------------------------


@pytest.mark.slow
async def test_tasks_published_by_another_process_are_fetched_here(tmp_path: Path) -> None:
    url = _url(tmp_path)
    async with _broker(url) as broker:
        child = await _child("publish", url, "5")
        out, _ = await child.communicate()
        assert child.returncode == 0
        published = [line.split()[0] for line in out.decode().splitlines()]
        got = await broker.fetch(["default"], 10, 1.0)
        assert sorted(d.task_id for d in got) == sorted(published)
        assert all(d.body == b"child" and d.attempt == 1 for d in got)


@pytest.mark.slow
async def test_tasks_published_here_are_run_by_another_process(tmp_path: Path) -> None:
    url = _url(tmp_path)
    async with _broker(url) as broker:
        items = [_out(f"task-{i}".encode()) for i in range(5)]
        await broker.publish(items)
        child = await _child("work", url, "5")
        store = broker.result_store()
        results = [await store.wait(item.task_id, 10.0) for item in items]
        await child.communicate()
        assert child.returncode == 0
        assert results == [item.body[::-1] for item in items]
        assert [await broker.locate(item.task_id) for item in items] == [None] * 5


@pytest.mark.slow
async def test_waiting_fetch_wakes_on_a_publish_from_another_process(tmp_path: Path) -> None:
    url = _url(tmp_path)
    # fetch_wait is also the fallback poll: 30 s, so only a wake-up returns within 10 s
    async with _broker(url, BrokerOptions(fetch_wait=30.0)) as broker:
        fetching = asyncio.create_task(broker.fetch(["default"], 1, 30.0))
        await eventually(lambda: fetch_is_waiting(broker), what="the fetch to wait")
        child = await _child("publish", url, "1")
        (delivery,) = await asyncio.wait_for(fetching, 10.0)
        out, _ = await child.communicate()
        assert delivery.task_id == out.decode().strip()


@pytest.mark.slow
async def test_result_wait_wakes_on_a_put_from_another_process(tmp_path: Path) -> None:
    url = _url(tmp_path)
    # fetch_wait is also the result wait's fallback poll: only a wake-up returns in 10 s
    async with _broker(url, BrokerOptions(fetch_wait=30.0)) as broker:
        store = broker.result_store()
        waiting = asyncio.create_task(store.wait("t-1", 30.0))
        results = tmp_path / "broker.db.wake" / "results"
        await eventually(lambda: os.listdir(results), what="the waiter's wake-up socket")
        child = await _child("put_result", url, "t-1")
        assert await asyncio.wait_for(waiting, 10.0) == b"from-child"
        await child.communicate()
        assert child.returncode == 0


async def test_wake_ups_work_when_the_path_is_too_long_for_a_socket_address(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    url = _url(deep)
    # fetch_wait is also the fallback poll: 30 s, so only a wake-up returns within 10 s
    async with _broker(url, BrokerOptions(fetch_wait=30.0)) as worker, _broker(url) as producer:
        fetching = asyncio.create_task(worker.fetch(["default"], 1, 30.0))
        await eventually(lambda: fetch_is_waiting(worker), what="the fetch to wait")
        wake_dir = deep / "broker.db.wake" / "queues"
        (listener,) = os.listdir(wake_dir)
        assert len(str(wake_dir / listener)) > 108, "longer than sockaddr_un allows"
        await producer.publish([_out(b"deep")])
        (delivery,) = await asyncio.wait_for(fetching, 10.0)
        assert delivery.body == b"deep"


async def test_idle_fetch_uses_no_cpu(tmp_path: Path) -> None:
    async with _broker(_url(tmp_path), BrokerOptions(fetch_wait=1.0)) as broker:
        cpu = time.process_time()
        assert await broker.fetch(["default"], 1, 1.0) == []
        assert time.process_time() - cpu < 0.05


async def test_stale_wake_socket_of_a_dead_process_is_removed(tmp_path: Path) -> None:
    async with _broker(_url(tmp_path)) as broker:
        stale = tmp_path / "broker.db.wake" / "queues" / "999999-dead"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(stale))
        sock.close()
        assert stale.exists()
        await broker.publish([_out()])
        assert not stale.exists()


async def test_one_key_admits_one_task_across_connections(tmp_path: Path) -> None:
    # the scheduler's once-per-tick (G7): every scheduler publishes the tick's key
    url = _url(tmp_path)
    async with _broker(url) as first, _broker(url) as second:
        racers = [_out(key="tick:nightly:1234.000", key_ttl=60.0) for _ in range(10)]
        brokers = [first, second] * 5
        publishes = (b.publish([r]) for b, r in zip(brokers, racers, strict=True))
        replies = await asyncio.gather(*publishes)
        assert len({task_id for (task_id,) in replies}) == 1
        assert _count(tmp_path / "broker.db", "tasks") == 1


# -- leases --------------------------------------------------------------------------


async def test_lease_keeper_renews_while_the_broker_thread_is_blocked(tmp_path: Path) -> None:
    async with _broker(_url(tmp_path)) as broker:
        await broker.publish([_out()])
        (delivery,) = await broker.fetch(["default"], 1, 0)
        release = threading.Event()
        blocked = broker._db.submit(lambda conn: release.wait(10))
        keeper = broker.lease_keeper()
        try:
            renewed: list[bool] = []
            thread = threading.Thread(target=lambda: renewed.extend(keeper.renew([delivery], 30)))
            thread.start()
            await asyncio.to_thread(thread.join, 5.0)
            assert renewed == [True]
        finally:
            release.set()
            keeper.close()
            await asyncio.wrap_future(blocked)


async def test_cancelled_fetch_hands_its_claim_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _broker(_url(tmp_path)) as broker:
        await broker.publish([_out()])
        claimed, cancelled = threading.Event(), threading.Event()
        original = broker._claim_sync

        def slow_claim(conn: sqlite3.Connection, *args: Any) -> Any:
            result = original(conn, *args)
            claimed.set()
            cancelled.wait(5.0)  # the caller is cancelled while the claim is committed
            return result

        monkeypatch.setattr(broker, "_claim_sync", slow_claim)
        fetching = asyncio.create_task(broker.fetch(["default"], 1, 1.0))
        assert await asyncio.to_thread(claimed.wait, 5.0)
        fetching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fetching
        cancelled.set()
        monkeypatch.undo()
        (again,) = await broker.fetch(["default"], 1, 2.0)
        assert again.attempt == 1


# -- bounded growth ------------------------------------------------------------------


async def test_expired_rows_are_deleted(tmp_path: Path) -> None:
    clock = ManualClock(now=1_000_000.0)
    db = tmp_path / "broker.db"
    async with _broker(_url(tmp_path), BrokerOptions(clock=clock, reap_interval=5.0)) as broker:
        store = broker.result_store()
        await store.put([StoredResult("short", b"s", 10.0), StoredResult("kept", b"k", None)])
        await store.set_progress("running", b"half", 10.0)
        await broker.publish([_out(key="report-1", key_ttl=10.0)])
        (delivery,) = await broker.fetch(["default"], 1, 0)
        assert await delivery.ack()
        now = clock.now()
        await broker.heartbeat(WorkerInfo("w", "h", 1, ["default"], 1, 0, 0, now, now), 10.0)
        tables = ["results", "progress", "idempotency_keys", "workers"]
        assert [_count(db, t) for t in tables] == [2, 1, 1, 1]

        clock.advance(11.0)
        await broker.reap()
        assert [_count(db, t) for t in tables] == [1, 0, 0, 0]
        assert await store.get("kept") == b"k"


async def test_wal_is_truncated_after_readers_starved_checkpoints(tmp_path: Path) -> None:
    db = tmp_path / "broker.db"
    wal = tmp_path / "broker.db-wal"
    async with _broker(_url(tmp_path), BrokerOptions(reap_interval=0.05)) as broker:
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM tasks").fetchone()
        chunk = os.urandom(1024 * 1024)
        for _ in range(WAL_LIMIT_BYTES // len(chunk) + 4):
            await broker.publish([_out(chunk)])
        reader.execute("COMMIT")
        reader.close()
        assert wal.stat().st_size > WAL_LIMIT_BYTES
        await broker.reap()
        assert wal.stat().st_size < 1024 * 1024


# -- crash safety --------------------------------------------------------------------


@pytest.mark.slow
async def test_sigkilled_producer_keeps_every_publish_that_returned(tmp_path: Path) -> None:
    url = _url(tmp_path)
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    child = await _child("publish_forever", url, str(ledger))
    await eventually(
        lambda: ledger.read_text().count("\n") >= 200, timeout=30, what="200 publishes"
    )
    child.kill()  # SIGKILL mid-burst: no cleanup, likely mid-transaction
    assert await child.wait() == -9
    text = ledger.read_text()
    returned = text.splitlines()[: text.count("\n")]  # a torn last line never returned
    async with _broker(url) as broker:
        found = [await broker.locate(task_id) for task_id in returned]
    assert found == [TaskLocation(Place.WAITING, 0)] * len(returned)
    with sqlite3.connect(tmp_path / "broker.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


OPEN_NEW_FILE = """
import asyncio, sys
from conveyor.brokers.sqlite import SqliteBroker

async def main() -> None:
    broker = SqliteBroker(sys.argv[1])
    await broker.connect()
    await broker.close()

asyncio.run(main())
"""


async def test_processes_opening_a_new_file_together_all_succeed(tmp_path: Path) -> None:
    """`conveyor worker --workers 4` and a CLI command on a file that does not exist yet:
    SQLite refuses the switch to WAL at once while another process creates the file,
    without waiting busy_timeout; every opener must still succeed."""
    for attempt in range(5):
        url = f"sqlite:///{tmp_path / f'new-{attempt}.db'}"
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", OPEN_NEW_FILE, url, stderr=asyncio.subprocess.PIPE
            )
            for _ in range(6)
        ]
        for child in children:
            _, err = await child.communicate()
            assert child.returncode == 0, err.decode()
