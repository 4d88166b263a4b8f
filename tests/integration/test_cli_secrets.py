"""No ``conveyor`` command shows a broker password, in any of the forms a URL carries
one (userinfo, ``?password=``, ``?sentinel_password=``...): not ``conveyor status``, not
the 'cannot reach Redis' error (nor its retry lines), not the start-up lines of the
supervisor, the workers and the scheduler. Real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers.conftest import REDIS_URL, service_unavailable
from tests.conftest import CHECKOUT_PATH, eventually_blocking
from tests.integration.processes import ROOT

pytestmark = pytest.mark.slow

APP = "tests.integration.startup_app:app"
SECRET = "S3CRET-cli-pw"
UNREACHABLE = "redis://127.0.0.1:1/0"
# each form a password takes in a URL, on a Redis nobody listens to
UNREACHABLE_FORMS = [
    f"{UNREACHABLE}?password={SECRET}",
    f"{UNREACHABLE}?prefix=app&password={SECRET}&db=0",
    f"redis://:{SECRET}@127.0.0.1:1/0",
    f"redis://default:{SECRET}@127.0.0.1:1/0?password={SECRET}",
    f"rediss://:{SECRET}@127.0.0.1:1/0?ssl_password={SECRET}",
]


@pytest.fixture
def env() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return {
        **environ,
        "CONVEYOR_FETCH_WAIT": "0.2",
        "CONVEYOR_GRACE": "2",
        "PYTHONPATH": CHECKOUT_PATH,
    }


def _run(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor.cli", *args],
        env={**env, **extra},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL with a password in its userinfo and query: the default user, which
    has none, accepts any password, so commands really connect with it."""
    import redis

    prefix = f"test-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        service_unavailable(f"Redis at {REDIS_URL}: {exc}")
    scheme, _, rest = REDIS_URL.partition("://")
    yield f"{scheme}://default:{SECRET}@{rest}?prefix={prefix}&username=default&password={SECRET}"
    try:
        keys = [*client.scan_iter(match=f"*{prefix}*", count=1000)]
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_status_shows_the_broker_and_results_without_their_passwords(
    env: dict[str, str],
) -> None:
    url = f"memory://app:{SECRET}@local?token={SECRET}"
    done = _run(env, "status", APP, CONVEYOR_BROKER_URL=url, CONVEYOR_RESULT_URL=url)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "broker: memory://app:***@local?token=***"
    assert lines[1] == "results: memory://app:***@local?token=***"


def test_status_on_redis_shows_no_password(env: dict[str, str], redis_url: str) -> None:
    done = _run(env, "status", APP, CONVEYOR_BROKER_URL=redis_url)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert "default:***@" in done.stdout and "&password=***" in done.stdout


@pytest.mark.parametrize("command", [("status",), ("worker",), ("scheduler",), ("dlq", "list")])
def test_the_cannot_reach_error_of_every_command_shows_no_password(
    env: dict[str, str], command: tuple[str, ...]
) -> None:
    url = UNREACHABLE_FORMS[0]
    done = _run(env, command[0], APP, *command[1:], CONVEYOR_BROKER_URL=url)
    assert done.returncode != 0
    assert f"cannot reach Redis at {UNREACHABLE}?password=***" in done.stderr, done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize("url", UNREACHABLE_FORMS)
def test_the_cannot_reach_error_hides_every_form_of_password(env: dict[str, str], url: str) -> None:
    done = _run(env, "worker", APP, CONVEYOR_BROKER_URL=url)
    assert done.returncode == 69, done.stderr
    assert "cannot reach Redis at" in done.stderr and "***" in done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("url", "piece", "code"),
    [
        # urlsplit cuts the netloc at the '/': redis-py takes 'Zm9v' for a port...
        (f"redis://:Zm9v/{SECRET}@127.0.0.1:6379/0", "Zm9v", 78),
        # ... and 12345 for a port it then connects to
        (f"redis://:12345/{SECRET}@127.0.0.1:1/0", "12345", 69),
    ],
)
def test_a_piece_of_a_password_quoted_by_redis_py_is_hidden_too(
    env: dict[str, str], url: str, piece: str, code: int
) -> None:
    done = _run(env, "worker", APP, CONVEYOR_BROKER_URL=url)
    assert done.returncode == code, done.stderr
    assert "redis://:***@127.0.0.1:" in done.stderr and "Traceback" not in done.stderr
    assert piece not in done.stderr and SECRET not in done.stdout + done.stderr


def test_waiting_for_the_broker_logs_no_password(env: dict[str, str]) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:1/0?password={SECRET}"
    done = _run(env, "worker", APP, "--wait-for-broker", "2", CONVEYOR_BROKER_URL=url)
    assert done.returncode == 69
    assert "retrying in" in done.stderr and "gave up after" in done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@127.0.0.1:notaport/0", "redis://:***@127.0.0.1:notaport/0"),
        (f"{UNREACHABLE}?PASSWORD={SECRET}", f"{UNREACHABLE}?PASSWORD=***"),
        (f"{UNREACHABLE}?password={SECRET}&socket_timeout=x", "password=***&socket_timeout=x"),
    ],
)
def test_a_bad_redis_url_is_a_one_line_error_without_its_password(
    env: dict[str, str], url: str, shown: str
) -> None:
    done = _run(env, "worker", APP, CONVEYOR_BROKER_URL=url)
    assert done.returncode == 78, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: invalid Redis URL") and shown in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_start_up_lines_show_no_password(
    env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", "worker", APP, "--with-scheduler"],
            env={**env, "CONVEYOR_BROKER_URL": redis_url, "CONVEYOR_RESULT_URL": redis_url},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def started_or_exited() -> bool:
        text = log.read_text()
        return process.poll() is not None or bool(
            re.search(r"worker \S+ started on", text)
            and re.search(r"scheduler \S+ started on", text)
        )

    try:
        eventually_blocking(started_or_exited, timeout=30, what="the start-up lines")
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = log.read_text()
    started = [line for line in text.splitlines() if "start" in line]
    assert any("starting 1 worker process(es) and a scheduler on" in s for s in started), text
    assert any(" started on " in s and "worker " in s for s in started), text
    assert any(" started on " in s and "scheduler " in s for s in started), text
    assert all("default:***@" in s and "password=***" in s for s in started if " on " in s), text
    assert SECRET not in text
