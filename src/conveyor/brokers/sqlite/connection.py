"""Opening the database file: the URL, the local-filesystem check, the pragmas, the schema,
and the one thread per process that owns the connection.

sqlite3 calls block, so no statement ever runs on the event loop: a :class:`Database`
owns a single-thread executor, and the connection lives on that thread. The lease keeper
opens a connection of its own (:func:`open_connection`) on the worker's lease thread.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlsplit

from conveyor.brokers import redact_url
from conveyor.brokers.base import BrokerOptions
from conveyor.brokers.sqlite.queries import QUERIES, SCHEMA, SCHEMA_VERSION
from conveyor.brokers.sqlite.wake import WakeDir
from conveyor.errors import BrokerUnavailable, ConfigurationError

__all__ = [
    "ALLOW_NETWORK_FS_ENV",
    "MOUNTS_FILE",
    "WAL_LIMIT_BYTES",
    "Database",
    "check_local_filesystem",
    "open_connection",
    "path_from_url",
    "snapshot",
    "transaction",
]

P = ParamSpec("P")
T = TypeVar("T")

ALLOW_NETWORK_FS_ENV = "CONVEYOR_SQLITE_ALLOW_NETWORK_FS"
MOUNTS_FILE = "/proc/mounts"
# The WAL is truncated back to this size after a checkpoint resets it (journal_size_limit),
# and maintenance forces a TRUNCATE checkpoint when readers starved it past this size.
WAL_LIMIT_BYTES = 16 * 1024 * 1024

_NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "9p", "afs",
        "coda", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "orangefs", "pvfs2",
        "ocfs2", "gfs2", "davfs", "sshfs", "fuse.sshfs", "fuse.glusterfs", "fuse.ceph-fuse",
        "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "fuse.juicefs", "fuse.davfs2",
        "fuse.mfs", "fuse.lizardfs", "fuse.seaweedfs", "fuse.cephfs",
    }
)  # fmt: skip
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


DEFAULT_URL = "sqlite:///conveyor.db"  # the embedded default, as in settings


@dataclass(frozen=True, slots=True)
class SqliteTuning:
    """The SQLite knobs, from the URL's query: ``sqlite:///x.db?synchronous=NORMAL&
    busy_timeout=5``. ``synchronous`` FULL (the default) makes every commit durable;
    ``busy_timeout`` is how many seconds a writer waits for another's lock."""

    synchronous: str = "FULL"
    busy_timeout: float = 5.0

    @classmethod
    def from_url(cls, url: str) -> SqliteTuning:
        query = dict(parse_qsl(urlsplit(url).query))
        unknown = set(query) - {"synchronous", "busy_timeout"}
        shown = redact_url(url)
        if unknown:
            raise ConfigurationError(
                f"{shown!r}: unknown SQLite parameter(s) {', '.join(sorted(unknown))}; "
                "known: synchronous, busy_timeout"
            )
        synchronous = query.get("synchronous", "FULL").upper()
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError(
                f"{shown!r}: synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}"
            )
        try:
            busy_timeout = float(query.get("busy_timeout", 5.0))
        except ValueError:
            busy_timeout = -1.0
        if not (0.1 <= busy_timeout <= 600):  # also refuses nan
            raise ConfigurationError(
                f"{shown!r}: busy_timeout must be 0.1 to 600 seconds, "
                f"got {query.get('busy_timeout')!r}"
            )
        return cls(synchronous, busy_timeout)


def path_from_url(url: str) -> Path:
    """The absolute path of the database file a ``sqlite://`` URL names.

    ``sqlite:///relative/path.db`` is relative to the current directory;
    ``sqlite:////abs/path.db`` is absolute.

    >>> path_from_url("sqlite:////var/lib/app/conveyor.db")
    PosixPath('/var/lib/app/conveyor.db')
    """
    scheme, sep, rest = url.partition("://")
    shown = redact_url(url)
    rest = rest.partition("?")[0]  # the query holds tuning (SqliteTuning), not the path
    if scheme.lower() != "sqlite" or not sep:
        raise ConfigurationError(f"{shown!r} is not a sqlite:// URL")
    if not rest.startswith("/"):
        raise ConfigurationError(
            f"{shown!r} names a host; use sqlite:///relative/path.db or sqlite:////abs/path.db"
        )
    raw = rest[1:]
    if not raw or raw == ":memory:" or raw.startswith("file:"):
        raise ConfigurationError(
            f"{shown!r} does not name a database file; give a path (sqlite:///conveyor.db), "
            "or use memory:// for a broker inside one process"
        )
    return Path(raw).absolute()


def _filesystem_of(directory: Path, mounts_file: str | os.PathLike[str]) -> tuple[str, str] | None:
    """(filesystem type, mount point) of the mount holding ``directory``, from a
    /proc/mounts-style file; None when the file cannot be read (not Linux)."""
    try:
        text = Path(mounts_file).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None
    target = os.path.realpath(directory)
    found: tuple[str, str] | None = None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = (
            mount_point == "/"
            or target == mount_point
            or target.startswith(mount_point.rstrip("/") + "/")
        )
        # Later lines shadow earlier mounts on the same point, so >= keeps the last one.
        if inside and (found is None or len(mount_point) >= len(found[1])):
            found = (fields[2], mount_point)
    return found


def check_local_filesystem(
    directory: Path,
    *,
    mounts_file: str | os.PathLike[str] = MOUNTS_FILE,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """Refuse a database directory on a network filesystem.

    Raises :class:`ConfigurationError` with the reason; when
    ``CONVEYOR_SQLITE_ALLOW_NETWORK_FS=1`` is set, returns the warning text instead. Returns
    None for a local filesystem (or when mounts cannot be read).
    """
    found = _filesystem_of(directory, mounts_file)
    if found is None:
        return None
    fstype, mount_point = found
    if fstype.lower() not in _NETWORK_FILESYSTEMS:
        return None
    reason = (
        f"{directory} is on a network filesystem ({fstype} mounted at {mount_point}). "
        "SQLite's WAL mode keeps its lock table in shared memory (the -shm file), which "
        "works only between processes on one host with the file on a local disk; over "
        "the network, locks fail silently and the database can be corrupted"
    )
    env = os.environ if environ is None else environ
    if env.get(ALLOW_NETWORK_FS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
        return (
            f"{reason}. Continuing because {ALLOW_NETWORK_FS_ENV} is set: every process "
            "that opens this database must run on this host"
        )
    raise ConfigurationError(
        f"refusing to open a SQLite broker: {reason}. Move the database to a local disk, "
        "use a server broker (redis://) to share work between hosts, or set "
        f"{ALLOW_NETWORK_FS_ENV}=1 if every process runs on the one host that mounts it"
    )


def open_connection(
    path: Path, tuning: SqliteTuning, *, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A connection in WAL mode with the configured ``synchronous`` and ``busy_timeout``.

    ``isolation_level=None``: statements autocommit unless inside :func:`transaction`.
    """
    conn = sqlite3.connect(
        path,
        timeout=tuning.busy_timeout,
        isolation_level=None,
        check_same_thread=check_same_thread,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(tuning.busy_timeout * 1000)}")
        mode = _switch_to_wal(conn, tuning.busy_timeout)
        if str(mode).lower() != "wal":
            raise ConfigurationError(
                f"{path} could not be switched to WAL mode (journal_mode is {mode!r}); "
                "the SQLite broker needs WAL for concurrent readers and writers"
            )
        # SqliteTuning.from_url restricts the value to OFF/NORMAL/FULL/EXTRA.
        conn.execute(f"PRAGMA synchronous = {tuning.synchronous}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
    except BaseException:
        conn.close()
        raise
    return conn


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout: float) -> str:
    """``PRAGMA journal_mode = WAL``, retried while another process holds the new file:
    SQLite answers "database is locked" at once there, without its busy handler, so
    processes opening a new file together (``conveyor worker --workers 4``) would fail."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return str(mode)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def as_bytes(value: object) -> bytes:
    """A BLOB column's value as bytes, whatever a hand-written row holds there (the
    sqlite3 shell stores TEXT): one odd row must not break the statement that reads it."""
    if isinstance(value, bytes):
        return value
    if value is None:
        return b""
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return str(value).encode("utf-8", "surrogateescape")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error.

    IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
    writes can fail with SQLITE_BUSY at once instead of waiting ``busy_timeout``.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def unflushed(conn: sqlite3.Connection, tuning: SqliteTuning) -> Iterator[sqlite3.Connection]:
    """Commit without an fsync, for a write that may be lost to an OS crash or power cut
    with no harm: a claim. A lost claim leaves its task queued, so it runs again, as a
    dead worker's task does (at least once). In WAL mode the next flushed commit (the
    task's ack, any publish) flushes the WAL up to and including this one, so a crash
    loses a suffix of commits, never one from the middle."""
    durable = tuning.synchronous in ("FULL", "EXTRA")
    if durable:
        conn.execute("PRAGMA synchronous = NORMAL")
    try:
        yield conn
    finally:
        if durable:
            conn.execute(f"PRAGMA synchronous = {tuning.synchronous}")


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction: several SELECTs see one consistent state of the database."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def _apply_schema(conn: sqlite3.Connection, path: Path) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"{path} was created by a newer Conveyor (schema version {version}; this one "
            f"knows {SCHEMA_VERSION}); upgrade conveyor-tasks"
        )
    if version == SCHEMA_VERSION:
        return
    upgrades: list[str] = []
    if version == 1:  # lacks tasks.crashes; CREATE TABLE IF NOT EXISTS would not add it
        upgrades.append("ALTER TABLE tasks ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;")
    if version < 3:  # the old once-per-tick table; ticks now carry a publish key
        upgrades.append("DROP TABLE IF EXISTS schedule_ticks;")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
    if columns and "abort_requested" not in columns:  # files of versions 1 to 3
        upgrades.append("ALTER TABLE tasks ADD COLUMN abort_requested INTEGER NOT NULL DEFAULT 0;")
    if columns and "workflow" not in columns:  # files of versions 1 to 5
        upgrades.append("ALTER TABLE tasks ADD COLUMN workflow TEXT;")
    try:
        # the upgrades first: the schema's indexes may name the columns they add
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{''.join(upgrades)}\n{SCHEMA}\n"
            f"PRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
        )
    except sqlite3.OperationalError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        # Several processes opening an old file at once (`conveyor worker --workers 4`):
        # the columns were read before the write lock, and another process added them
        # meanwhile, in the transaction that also set the version. Its upgrade is ours.
        (now,) = conn.execute("PRAGMA user_version").fetchone()
        if "duplicate column" not in str(exc) or now != SCHEMA_VERSION:
            raise
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class Database:
    """One database file as this process uses it: the connection, the thread that owns
    it, the wake-up directories and periodic maintenance.

    A broker, its result store and its schedule store share one ``Database``. It opens on
    the first :meth:`open` and closes on the matching last :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        options: BrokerOptions,
        *,
        mounts_file: str | os.PathLike[str] = MOUNTS_FILE,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self._shown = redact_url(url)  # for messages
        self.path = path_from_url(url)
        self.tuning = SqliteTuning.from_url(url)
        self.options = options
        self.mounts_file = mounts_file
        self.environ = environ
        wake_root = self.path.with_name(self.path.name + ".wake")
        self.queue_wake = WakeDir(wake_root / "queues")
        self.result_wake = WakeDir(wake_root / "results")
        self.abort_wake = WakeDir(wake_root / "aborts")
        self._lock = threading.Lock()
        self._users = 0
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._next_maintenance = 0.0

    @property
    def poll_interval(self) -> float:
        """How long a waiter sleeps without a wake-up before it looks again: the fallback
        that bounds the cost of a lost datagram (``fetch_wait``, or 1 s when that is 0)."""
        return self.options.fetch_wait if self.options.fetch_wait > 0 else 1.0

    @property
    def wal_path(self) -> Path:
        """The write-ahead log next to the database."""
        return self.path.with_name(self.path.name + "-wal")

    async def open(self) -> None:
        """Open the connection (first caller) and apply the schema; warn or refuse on a
        network filesystem."""
        with self._lock:
            self._users += 1
            if self._users > 1:
                return
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="conveyor-sqlite")
        try:
            warning = await asyncio.wrap_future(self._executor.submit(self._open_sync))
        except BaseException:
            await self.close()
            raise
        if warning is not None:
            warnings.warn(warning, RuntimeWarning, stacklevel=3)

    async def close(self) -> None:
        """Drop one user; the last one closes the connection and stops the thread."""
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users > 0:
                return
            executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.wrap_future(executor.submit(self._close_sync))
        finally:
            executor.shutdown(wait=False)

    def submit(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Future[T]:
        """Queue ``fn(connection, *args)`` on the database thread."""
        executor = self._executor
        if executor is None:
            raise BrokerUnavailable(f"{self._shown} is not connected; await connect() first")

        def call() -> T:
            return self._call(fn, *args, **kwargs)

        return executor.submit(call)

    async def run(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(connection, *args)`` on the database thread and await its result."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def _call(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        conn = self._conn
        if conn is None:
            raise BrokerUnavailable(f"{self._shown} is not connected; await connect() first")
        try:
            return fn(conn, *args, **kwargs)
        except sqlite3.OperationalError as exc:  # locked past busy_timeout, disk full, I/O
            raise BrokerUnavailable(f"SQLite database {self.path}: {exc}") from exc

    def _open_sync(self) -> str | None:
        directory = self.path.parent
        if not directory.is_dir():
            raise ConfigurationError(
                f"cannot open {self._shown}: directory {directory} does not exist; create it "
                "or fix the URL"
            )
        warning = check_local_filesystem(
            directory, mounts_file=self.mounts_file, environ=self.environ
        )
        try:
            conn = open_connection(self.path, self.tuning)
        except sqlite3.OperationalError as exc:  # locked past busy_timeout, read-only, I/O
            raise BrokerUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        try:
            _apply_schema(conn, self.path)
            self.queue_wake.open()
            self.result_wake.open()
            self.abort_wake.open()
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return warning

    def _close_sync(self) -> None:
        self.queue_wake.close()
        self.result_wake.close()
        self.abort_wake.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def maintain(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete expired rows and bound the WAL; does work at most once per
        ``reap_interval``. Runs on the database thread."""
        if now < self._next_maintenance:
            return
        self._next_maintenance = now + self.options.reap_interval
        with transaction(conn):
            for statement in QUERIES.purges():
                conn.execute(statement, {"now": now})
        try:
            wal_size = self.wal_path.stat().st_size
        except FileNotFoundError:
            return
        if wal_size > WAL_LIMIT_BYTES:
            # Automatic checkpoints are PASSIVE: a steady stream of readers can keep them
            # from ever reaching the end of the log, and the WAL then grows without bound.
            # TRUNCATE waits (busy_timeout) for those readers and resets the file to 0.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
