"""taskiq's middlewares (``taskiq.middlewares``): the base class, the two retry
middlewares and ``PrometheusMiddleware``.

>>> class Audit(TaskiqMiddleware):                                      # doctest: +SKIP
...     def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
...         message.labels["request_id"] = current_request_id()
...         return message
...     async def on_error(self, message, result, exception) -> None:
...         sentry_sdk.capture_exception(exception)
>>> broker = RedisStreamBroker(url).with_middlewares(                   # doctest: +SKIP
...     Audit(), SmartRetryMiddleware(default_delay=2), PrometheusMiddleware(server_port=9000)
... )

A middleware's methods run where taskiq runs them, on Conveyor's hooks: see
docs/migrating-from-taskiq.md (Middlewares) for the table, and for what differs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from tempfile import gettempdir
from typing import TYPE_CHECKING, Any

from conveyor.compat.taskiq._middleware import TaskiqMiddleware
from conveyor.compat.taskiq.message import TaskiqMessage
from conveyor.compat.taskiq.results import TaskiqResult
from conveyor.compat.taskiq.retries import SimpleRetryMiddleware, SmartRetryMiddleware

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

    from conveyor.observability.metrics import MetricsServer

__all__ = [
    "PrometheusMiddleware",
    "SimpleRetryMiddleware",
    "SmartRetryMiddleware",
    "TaskiqMiddleware",
]

log = logging.getLogger("conveyor.compat.taskiq")

# prometheus-client's multiprocess mode: where every process writes its metric files
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _TaskiqMetrics:
    """taskiq's five worker metrics, made once per process (a registry refuses a name
    twice; taskiq's own middleware fails when made twice)."""

    _made: _TaskiqMetrics | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.found_errors = Counter("found_errors", "Number of found errors", ["task_name"])
        self.received_tasks = Counter("received_tasks", "Number of received tasks", ["task_name"])
        self.success_tasks = Counter(
            "success_tasks", "Number of successfully executed tasks", ["task_name"]
        )
        self.saved_results = Counter(
            "saved_results", "Number of saved results in result backend", ["task_name"]
        )
        self.execution_time = Histogram(
            "execution_time", "Time of function execution", ["task_name"]
        )

    @classmethod
    def made(cls) -> _TaskiqMetrics:
        with cls._lock:
            if cls._made is None:
                cls._made = cls()
            return cls._made


class PrometheusMiddleware(TaskiqMiddleware):
    """taskiq's Prometheus middleware, serving Conveyor's metrics too.

    In each worker process (``conveyor worker``), ``startup()`` adds Conveyor's task
    metrics (:class:`~conveyor.observability.metrics.PrometheusHook`, unless
    ``--metrics-port`` did) and serves ``/metrics`` on ``server_addr:server_port``: the
    task metrics of every worker process of this machine, summed, taskiq's
    ``received_tasks``, ``success_tasks``, ``found_errors``, ``saved_results`` and
    ``execution_time`` among them, and the broker's queue depths, dead letters and live
    workers. As in taskiq, the first worker process to bind the port serves it (the
    others log that it is taken), and every process writes its metrics under
    ``metrics_path`` (``PROMETHEUS_MULTIPROC_DIR``, which this constructor sets when it
    is not set: construct the broker before anything imports prometheus-client). Clients
    serve nothing. Needs prometheus-client (``pip install 'conveyor-tasks[metrics]'``).

    ``conveyor worker --metrics-port PORT`` is Conveyor's own way to the same page; with
    both, each serves.
    """

    def __init__(
        self,
        metrics_path: Path | None = None,
        server_port: int = 9000,
        server_addr: str = "0.0.0.0",  # taskiq's default
    ) -> None:
        super().__init__()
        if _MULTIPROC_ENV not in os.environ:
            path = metrics_path or Path(gettempdir()) / "taskiq_worker"
            path.mkdir(parents=True, exist_ok=True)
            os.environ[_MULTIPROC_ENV] = str(path)
        self.metrics_path = Path(os.environ[_MULTIPROC_ENV])
        self.server_port = server_port
        self.server_addr = server_addr
        try:
            metrics = _TaskiqMetrics.made()
        except ImportError as exc:
            raise ImportError(
                "PrometheusMiddleware needs prometheus-client: "
                "pip install 'conveyor-tasks[metrics]'"
            ) from exc
        self.found_errors: Counter = metrics.found_errors
        self.received_tasks: Counter = metrics.received_tasks
        self.success_tasks: Counter = metrics.success_tasks
        self.saved_results: Counter = metrics.saved_results
        self.execution_time: Histogram = metrics.execution_time
        self.server: MetricsServer | None = None

    async def startup(self) -> None:
        """In a worker process: count Conveyor's task metrics and serve ``/metrics``."""
        if not self.broker.is_worker_process or self.server is not None:
            return
        from conveyor.observability.metrics import MetricsServer, PrometheusHook

        app = self.broker.conveyor
        if not any(isinstance(hook, PrometheusHook) for hook in app.hooks):
            app.add_hook(PrometheusHook())
        directory = os.environ.get(_MULTIPROC_ENV)
        try:
            self.server = await asyncio.to_thread(
                MetricsServer, app, self.server_port, self.server_addr, multiprocess_dir=directory
            )
        except OSError as exc:
            log.info(
                "PrometheusMiddleware: not serving metrics on %s:%d (%s); another worker "
                "process of this machine serves them",
                self.server_addr,
                self.server_port,
                exc,
            )
            return
        log.info(
            "PrometheusMiddleware: serving metrics on http://%s:%d/metrics",
            self.server_addr,
            self.server.port,
        )

    async def shutdown(self) -> None:
        """Stop serving."""
        server, self.server = self.server, None
        if server is not None:
            await asyncio.to_thread(server.close)

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        """Count a received task."""
        self.received_tasks.labels(message.task_name).inc()
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        """Count a success or an error, and the attempt's run time."""
        if result.is_err:
            self.found_errors.labels(message.task_name).inc()
        else:
            self.success_tasks.labels(message.task_name).inc()
        self.execution_time.labels(message.task_name).observe(result.execution_time)

    def post_save(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        """Count a stored result."""
        self.saved_results.labels(message.task_name).inc()
