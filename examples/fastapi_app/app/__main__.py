"""``python -m app``: the API and a worker (with the scheduler) in one command, for
development. In production run them as separate services:

    uvicorn app.main:api --host 0.0.0.0 --port 8000
    conveyor worker app.tasks:conveyor_app --with-scheduler

Ctrl-C (or SIGTERM) stops the API, then the worker, which lets its running tasks finish
first (``CONVEYOR_GRACE`` seconds at most). If the worker exits, the API stops too.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading

import uvicorn

from app.tasks import conveyor_app

log = logging.getLogger("app")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="API and worker.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    server = uvicorn.Server(uvicorn.Config("app.main:api", host=args.host, port=args.port))
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor.cli",
            "worker",
            "app.tasks:conveyor_app",
            "--with-scheduler",
        ]
    )

    def stop_api_when_the_worker_exits() -> None:
        if worker.wait() != 0 and not server.should_exit:
            log.error("the worker exited with code %d: stopping the API", worker.returncode)
        server.should_exit = True

    watcher = threading.Thread(target=stop_api_when_the_worker_exits, name="worker-watcher")
    watcher.start()
    # uvicorn handles SIGINT and SIGTERM itself, then raises them again once it has
    # stopped; SIGTERM's default would end this process there and orphan the worker.
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # KeyboardInterrupt instead
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        # a second Ctrl-C reaches the worker (it is in this process group), not this wait
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stopping = worker.poll() is None
        if stopping:
            worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(conveyor_app.settings.grace + 10)
        except subprocess.TimeoutExpired:
            worker.kill()
        watcher.join()
    if stopping and worker.returncode == -signal.SIGTERM:
        return 0  # stopped while starting, before it handles SIGTERM itself
    return worker.returncode if worker.returncode >= 0 else 128 - worker.returncode


if __name__ == "__main__":
    sys.exit(main())
