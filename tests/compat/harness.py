"""Running one corpus sample on one side (real taskiq, or Conveyor) and recording checks.

A :class:`Run` is a scratch copy of ``corpus/<sample>`` (plus the sample's probes from
``probes/<sample>``, harness-written code that uses the sample the way its users do, in
taskiq's API), with imports rewritten on the Conveyor side. Its driver starts the
processes a user would (``taskiq worker``, ``python script.py``, ``pytest``; the
``conveyor`` commands on the Conveyor side), and records named checks: each passes or
fails with the error seen. Probes report their own checks on stdout, one JSON line
after the ``COMPAT-CHECK`` marker (``probes/compat_checks.py``).

Every process gets a clean environment: the side's ``bin`` first on ``PATH``, the
Redis shim first on ``PYTHONPATH`` (``shim/sitecustomize.py``: this run's Redis
databases), and what the driver adds. Every process started is stopped at the end of
the run, its whole process group, and the run's Redis databases and PostgreSQL database
are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tests.compat.envs import HERE, conveyor_bin, extras_dir, taskiq_venv
from tests.compat.rewrite import rewrite_command, rewrite_tree
from tests.conftest import eventually_blocking

__all__ = [
    "CHECK_MARKER",
    "REDIS_URL",
    "CheckResult",
    "Proc",
    "Run",
    "Side",
    "SideName",
    "Unavailable",
    "postgres_url",
]

SideName = Literal["taskiq", "conveyor"]
CHECK_MARKER = "COMPAT-CHECK "
REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get(
    "CONVEYOR_COMPAT_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
# Databases a run may own (two each): 0 and 1 are everyone's, 14 and 15 the benchmarks'.
REDIS_SLOTS = (2, 4, 6, 8, 10, 12)
LOCK_TTL = 1800  # seconds; a crashed run's locks expire
CORPUS = HERE / "corpus"
PROBES = HERE / "probes"
SHIM = HERE / "shim"


class Unavailable(Exception):
    """A service the sample needs is not reachable (skipped locally, a failure in CI)."""


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Side:
    """Where a run's processes come from."""

    name: SideName
    bin: Path
    pythonpath: tuple[Path, ...] = ()

    @classmethod
    def make(cls, name: SideName) -> Side:
        if name == "taskiq":
            return cls(name, taskiq_venv() / "bin")
        # CONVEYOR_COMPAT_SRC: run the Conveyor side on another checkout's src/ (a clean
        # clone of HEAD, a branch) instead of the editable install's
        other = os.environ.get("CONVEYOR_COMPAT_SRC")
        return cls(name, conveyor_bin(), (*([Path(other)] if other else []), extras_dir()))

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def ready_line(self, command: Literal["worker", "scheduler"]) -> str:
        """What ``taskiq worker/scheduler`` (or ``conveyor ...``) logs once it is serving."""
        if self.name == "conveyor":
            return " started on "  # "worker <id> started on <url>", "scheduler <id> started on"
        return "Listening started." if command == "worker" else "Startup completed."

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` written for taskiq (``taskiq worker ...``, ``python x.py``), for this side."""
        args = list(argv)
        if args and args[0] == "python":
            return [self.python, *args[1:]]
        if args and args[0] == "taskiq":
            args = [str(self.bin / "taskiq"), *args[1:]]
            return rewrite_command(args) if self.name == "conveyor" else args
        if args and args[0] in ("pytest", "django-admin"):
            return [self.python, "-m", args[0].replace("-", "_"), *args[1:]]
        return args


class Proc:
    """A background process of a run: its output goes to a file, read on demand."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str], log: Path):
        self.name = name
        self.argv = argv
        self.log = log
        self._handle = log.open("wb")
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for(self, text: str, timeout: float, what: str | None = None, times: int = 1) -> None:
        """Wait until ``text`` shows in the output (``times`` times); fail early if the
        process exits."""

        def seen() -> bool:
            if self.output().count(text) >= times:
                return True
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) before printing {text!r}:\n"
                    f"{self.tail()}"
                )
            return False

        try:
            eventually_blocking(seen, timeout=timeout, what=what or f"{self.name}: {text!r}")
        except AssertionError as exc:
            if "timed out" in str(exc):
                raise AssertionError(f"{exc}\n--- {self.name} output:\n{self.tail()}") from None
            raise

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group; SIGKILL what is left after ``grace`` seconds."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # children that outlived their parent are still in the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.wait(timeout=10)
        self._handle.close()


@dataclass
class Run:
    """One sample on one side: its directory, processes, resources and check results."""

    sample: str
    side: Side
    checks: Sequence[str]
    services: frozenset[str] = frozenset()
    locks: Sequence[str] = ()
    root: Path = field(init=False)
    workdir: Path = field(init=False)
    results: dict[str, CheckResult] = field(default_factory=dict)
    env_extra: dict[str, str] = field(default_factory=dict)
    # directories of the sample put on PYTHONPATH (a src/ layout its users install)
    source_paths: list[str] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)
    redis_base: int | None = None
    pg_database: str | None = None
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"compat-{self.sample}-{self.side.name}-"))
        self.workdir = self.root / "work"

    # ---- setup and teardown -------------------------------------------------------------

    def prepare(self) -> None:
        """Copy the sample and its probes; rewrite imports on the Conveyor side; take the
        resources the sample needs (raises :class:`Unavailable` when one is down)."""
        shutil.copytree(CORPUS / self.sample, self.workdir, ignore=_ignore_caches)
        probes = PROBES / self.sample
        if probes.is_dir():
            shutil.copytree(probes, self.workdir, dirs_exist_ok=True, ignore=_ignore_caches)
        shutil.copy(PROBES / "compat_checks.py", self.workdir / "compat_checks.py")
        if self.side.name == "conveyor":
            rewritten = self.root / "rewritten"
            rewrite_tree(self.workdir, rewritten)
            shutil.rmtree(self.workdir)
            rewritten.rename(self.workdir)
        for name in self.locks:
            self._cleanups.append(_hold_lock(f"lock:{name}"))
        if "redis" in self.services:
            self.redis_base, release = _take_redis_slot()
            self._cleanups.append(release)
        if "postgres" in self.services:
            self.pg_database, drop = _create_database(self.sample, self.side.name)
            self._cleanups.append(drop)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception:  # a cleanup failure must not hide the results
                traceback.print_exc()
        shutil.rmtree(self.root, ignore_errors=True)

    def reset_redis(self) -> None:
        """Empty this run's Redis databases (between independent scripts of a sample)."""
        assert self.redis_base is not None, "the sample does not use redis"
        _flush(self.redis_base, self.redis_base + 1)

    # ---- processes ---------------------------------------------------------------------

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER")
        env = {key: os.environ[key] for key in keep if key in os.environ}
        env["PATH"] = f"{self.side.bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
        paths = [SHIM, *(self.workdir / p for p in self.source_paths), *self.side.pythonpath]
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if self.redis_base is not None:
            env["COMPAT_REDIS_DB_BASE"] = str(self.redis_base)
        env.update(self.env_extra)
        env.update(extra or {})
        return env

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        proc = Proc(
            name,
            self.side.command(argv),
            cwd or self.workdir,
            self.env(env),
            self.root / f"{name}.log",
        )
        self.procs.append(proc)
        return proc

    def serve(
        self,
        name: str,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        """Start ``taskiq worker ...`` or ``taskiq scheduler ...`` and wait until it serves."""
        proc = self.start(name, argv, cwd=cwd, env=env)
        command: Literal["worker", "scheduler"] = (
            "scheduler" if "scheduler" in argv[:2] else "worker"
        )
        proc.wait_for(self.side.ready_line(command), timeout=timeout, what=f"{name} to start")
        return proc

    def run(
        self,
        name: str,
        argv: Sequence[str],
        *,
        timeout: float = 120.0,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion; its output is kept in the run's log directory.

        Probe checks printed on stdout are recorded as they come."""
        proc = self.start(name, argv, cwd=cwd, env=env)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.stop()
            raise AssertionError(
                f"{name} did not finish within {timeout} s:\n{proc.tail()}"
            ) from None
        proc.stop()
        output = proc.output()
        self.collect(output)
        return subprocess.CompletedProcess(proc.argv, proc.popen.returncode, output, "")

    def probe(
        self,
        script: str,
        checks: Sequence[str],
        *args: str,
        timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a probe script; the checks it did not report fail with how it ended."""
        done = self.run(script, ["python", script, *args], timeout=timeout, env=env)
        missing = [name for name in checks if name not in self.results]
        if missing:
            reason = (
                f"not reached: {script} exited {done.returncode} before reporting it:\n"
                f"{_last_error(done.stdout)}"
            )
            for name in missing:
                self.fail(name, reason)
        return done

    def pytest(
        self,
        name: str,
        args: Sequence[str],
        tests: Sequence[str],
        *,
        timeout: float = 180.0,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the sample's own tests with pytest; each of ``tests`` (``module::test``,
        ``module::Class::test``) is a check, passed or failed as pytest reports it."""
        report = self.root / f"{name}.xml"
        argv = ["pytest", *args, "-p", "no:cacheprovider", f"--junitxml={report}"]
        done = self.run(name, argv, timeout=timeout, cwd=cwd, env=env)
        outcomes = _junit_outcomes(report) if report.exists() else {}
        for test in tests:
            if test in outcomes:
                self.record(test, outcomes[test])
            else:
                self.fail(
                    test,
                    f"not run: pytest exited {done.returncode} without running it:\n"
                    f"{_pytest_errors(done.stdout)}",
                )
        return done

    # ---- checks -----------------------------------------------------------------------

    def collect(self, output: str) -> None:
        for line in output.splitlines():
            if line.startswith(CHECK_MARKER):
                data = json.loads(line[len(CHECK_MARKER) :])
                self.record(data["name"], CheckResult(bool(data["ok"]), str(data["detail"])))

    def record(self, name: str, result: CheckResult) -> None:
        if name not in self.checks:
            raise KeyError(f"{self.sample}: check {name!r} is not declared in its driver")
        if name in self.results and not self.results[name].ok:
            return  # the first failure is the one to report
        self.results[name] = result

    def fail(self, name: str, detail: str) -> None:
        self.record(name, CheckResult(False, detail))

    @contextlib.contextmanager
    def check(self, *names: str) -> Iterator[None]:
        """The block passes every check in ``names``, or fails them all with its error."""
        try:
            yield
        except Exception as exc:
            detail = _describe(exc)
            for name in names:
                self.fail(name, detail)
        else:
            for name in names:
                self.record(name, CheckResult(True))

    def fill_missing(self, reason: str) -> None:
        for name in self.checks:
            if name not in self.results:
                self.fail(name, reason)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AssertionError):
        return str(exc) or "assertion failed"
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _last_error(output: str, lines: int = 12) -> str:
    """The end of the last traceback in ``output`` (or its tail), without check lines."""
    kept = [line for line in output.splitlines() if not line.startswith(CHECK_MARKER)]
    for at in range(len(kept) - 1, -1, -1):
        if kept[at].startswith("Traceback"):
            kept = kept[at:]
            break
    return "\n".join(kept[-lines:])


def _pytest_errors(output: str) -> str:
    """The ``E   `` lines of pytest's report (the errors themselves), else its tail."""
    errors: list[str] = []
    for line in output.splitlines():
        if line.startswith("E   ") and line not in errors:
            errors.append(line)
    return "\n".join(errors[-6:]) if errors else _tail(output, 20)


def _junit_outcomes(report: Path) -> dict[str, CheckResult]:
    """``module::[Class::]test`` -> its outcome, from a pytest JUnit XML report."""
    import xml.etree.ElementTree as ET

    outcomes: dict[str, CheckResult] = {}
    for case in ET.parse(report).iter("testcase"):
        parts = case.get("classname", "").split(".")
        module_at = next(
            (
                i
                for i, part in enumerate(parts)
                if part.startswith("test_") or part.endswith("_test")
            ),
            len(parts) - 1,
        )
        key = "::".join([*parts[module_at:], case.get("name", "")])
        problem = next(
            (child for child in case if child.tag in ("failure", "error", "skipped")), None
        )
        if problem is None:
            outcomes[key] = CheckResult(True)
        else:
            message = problem.get("message", "")
            text = (problem.text or "").strip()
            detail = f"pytest {problem.tag}: {message}\n{_tail(text, 25)}"
            outcomes[key] = CheckResult(False, detail)
    return outcomes


def _ignore_caches(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n in ("__pycache__", ".pytest_cache") or n.endswith(".pyc")]


# ---- shared resources -----------------------------------------------------------------


def _redis(db: int | None = None) -> Any:
    """A client of the test Redis; of database ``db`` when given (never the URL's)."""
    import redis

    url = REDIS_URL if db is None else f"{REDIS_URL.split('?', 1)[0].rsplit('/', 1)[0]}/{db}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
    except redis.RedisError as exc:
        raise Unavailable(f"redis at {REDIS_URL} unreachable: {exc}") from exc
    if db is not None and client.connection_pool.connection_kwargs.get("db") != db:
        raise AssertionError(f"compat harness: {url} does not select database {db}")
    return client


def _flush(*dbs: int) -> None:
    """Empty the run's own databases (each checked to be one of REDIS_SLOTS' pairs)."""
    for db in dbs:
        if not any(db in (base, base + 1) for base in REDIS_SLOTS):
            raise AssertionError(f"compat harness: refusing to flush redis db {db}")
        client = _redis(db)
        client.flushdb()
        client.close()


def _owner_token() -> str:
    """A lock value naming its holder (host and pid), so a killed holder's lock is known
    stale at once rather than after LOCK_TTL."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


def _claim(client: Any, key: str, token: str) -> bool:
    """Take ``key`` if it is free, or held by a process of this host that is gone (a
    pytest session killed mid-run)."""
    import redis

    if client.set(key, token, nx=True, ex=LOCK_TTL):
        return True
    held = client.get(key)
    if held is None:
        return False
    host, _, rest = held.decode(errors="replace").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        # the holder is dead: replace its value only if it is still the one read
        with client.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.get(key) != held:
                    return False
                pipe.multi()
                pipe.set(key, token, ex=LOCK_TTL)
                pipe.execute()
            except redis.WatchError:
                return False
        return True
    except PermissionError:
        return False
    return False


def _hold_lock(name: str, timeout: float = 600.0) -> Callable[[], None]:
    """A lock shared by every pytest session on this Redis: held until the release."""
    client = _redis()
    key = f"conveyor-compat:{name}"
    token = _owner_token()
    eventually_blocking(
        lambda: _claim(client, key, token),
        timeout=timeout,
        what=f"the compat lock {name}",
        every=0.1,
    )

    def release() -> None:
        if client.get(key) == token.encode():
            client.delete(key)
        client.close()

    return release


def _take_redis_slot(timeout: float = 600.0) -> tuple[int, Callable[[], None]]:
    """Two Redis databases of our own, flushed before and after."""
    client = _redis()
    token = _owner_token()
    deadline = time.monotonic() + timeout
    while True:
        for base in REDIS_SLOTS:
            if _claim(client, f"conveyor-compat:redis-slot:{base}", token):
                break
        else:
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for a free redis database pair")
            time.sleep(0.1)  # sleep: the poll interval, for another session's slot
            continue
        break
    _flush(base, base + 1)

    def release() -> None:
        _flush(base, base + 1)
        key = f"conveyor-compat:redis-slot:{base}"
        if client.get(key) == token.encode():
            client.delete(key)
        client.close()

    return base, release


def postgres_url(database: str) -> str:
    base = POSTGRES_DSN.rsplit("/", 1)[0]
    return f"{base}/{database}"


def _create_database(sample: str, side: str) -> tuple[str, Callable[[], None]]:
    import asyncpg  # type: ignore[import-untyped]

    name = f"compat_{sample}_{side}_{uuid.uuid4().hex[:6]}"

    async def execute(sql: str) -> None:
        try:
            conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
        except (OSError, asyncpg.PostgresError) as exc:
            raise Unavailable(f"postgres at {POSTGRES_DSN} unreachable: {exc}") from exc
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        # pytest-django's test database, when the sample made one
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "test_{name}" WITH (FORCE)'))

    return name, drop
