"""Real processes and a real browser for the dashboard: a `conveyor worker` and a
`conveyor dashboard` (uvicorn) on one broker, and headless Chromium driven by Selenium.

Used by test_browser.py and by docs/images/make_screenshots.py. Chromium and its driver
are Debian's packages (``apt-get install chromium chromium-driver``); nothing is
downloaded: the machine's network may be closed, hence the flags below.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor import Conveyor
from tests.conftest import CHECKOUT_PATH, eventually_blocking

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

__all__ = ["APP", "ROOT", "Stack", "browser", "find_chromium", "free_port", "stack"]

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.dashboard.dashboard_app:app"
T = TypeVar("T")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls home on a closed network
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def find_chromium() -> tuple[str, str] | str:
    """(browser, driver) paths, or the reason they cannot be used."""
    browser_path = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver_path = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if browser_path is None or driver_path is None:
        return (
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
    return browser_path, driver_path


@contextmanager
def browser(profile: Path, width: int = 1280, height: int = 860) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile in ``profile``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if isinstance(found, str):
        raise RuntimeError(found)
    browser_path, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of the worker and dashboard processes: short intervals."""
    return {
        **os.environ,
        "CONVEYOR_BROKER_URL": url,
        "CONVEYOR_LEASE": "5.0",
        "CONVEYOR_REAP_INTERVAL": "0.5",
        "CONVEYOR_FETCH_WAIT": "0.2",
        "CONVEYOR_HEARTBEAT_INTERVAL": "0.5",
        "CONVEYOR_SCHEDULE_REFRESH": "0.5",
        "CONVEYOR_GRACE": "2",
        "CONVEYOR_EVENTS": "1",  # the task list and charts read the event log
        "PYTHONPATH": CHECKOUT_PATH,
        **extra,
    }


class Stack:
    """A worker (with a scheduler) and a dashboard process, and a client app here."""

    def __init__(self, url: str, env: dict[str, str], port: int, token: str, logs: Path) -> None:
        self.url = url
        self.env = env
        self.port = port
        self.token = token
        self.logs = logs
        self.base = f"http://127.0.0.1:{port}"
        self.client = Conveyor(url, environ=env)
        from tests.dashboard import dashboard_app

        for task in dashboard_app.app.tasks.values():
            self.client.register(task.fn, task.options)
        self.processes: list[subprocess.Popen[bytes]] = []

    def run(self, job: Callable[[Conveyor], Any]) -> Any:
        """Run ``await job(client)`` with the client app connected."""

        async def main() -> Any:
            async with self.client:
                return await job(self.client)

        return asyncio.run(main())

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", *args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def wait_http(self, timeout: float = 30.0) -> None:
        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{self.base}/static/dashboard.css", timeout=2):
                    return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        try:
            eventually_blocking(answers, timeout=timeout, every=0.1)
        except AssertionError:
            raise AssertionError(
                f"the dashboard did not answer:\n{self.log('dashboard')}"
            ) from None

    def wait_worker(self, timeout: float = 30.0) -> None:
        async def roles(client: Conveyor) -> set[str]:
            return {w.role for w in await client.broker.workers()}

        try:
            eventually_blocking(
                lambda: {"worker", "scheduler"} <= self.run(roles), timeout=timeout, every=0.2
            )
        except AssertionError:
            raise AssertionError(
                f"no worker and scheduler heartbeat:\n{self.log('worker')}"
            ) from None

    def stop(self) -> list[int | None]:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=20))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                codes.append(process.wait(timeout=10))
        return codes


@contextmanager
def stack(
    url: str,
    logs: Path,
    token: str,
    *dashboard_args: str,
    worker_args: tuple[str, ...] = ("--concurrency", "4"),
) -> Iterator[Stack]:
    """Start `conveyor worker --with-scheduler` and `conveyor dashboard` (its token from
    CONVEYOR_DASHBOARD_TOKEN) on ``url``; stop both (SIGTERM) on exit."""
    port = free_port()
    env = process_env(url, CONVEYOR_DASHBOARD_TOKEN=token)
    running = Stack(url, env, port, token, logs)
    try:
        running.start("worker", "worker", APP, *worker_args, "--with-scheduler")
        running.start("dashboard", "dashboard", APP, "--port", str(port), *dashboard_args)
        running.wait_http()
        running.wait_worker()
        yield running
    finally:
        running.stop()


def poll(check: Callable[[], T | None], timeout: float = 20.0, every: float = 0.1) -> T:
    """Call ``check`` until it returns something truthy."""
    return eventually_blocking(check, timeout=timeout, every=every, what=repr(check))  # type: ignore[return-value]
