"""Prometheus metrics (``pip install 'conveyor-tasks[metrics]'``: prometheus-client).

Two sources, two mechanisms:

- **Task metrics** come from the worker's and scheduler's events: add
  :class:`PrometheusHook` (``conveyor worker --metrics-port`` does) and each process
  counts what it ran.
- **Broker metrics** (queue depths, dead letters, live workers and schedulers) are read
  from the broker when Prometheus scrapes, by :class:`BrokerCollector`, so they are
  right whichever process serves them, and cover every host of the broker. A
  :class:`SnapshotCache` keeps each read for ``cache_ttl`` seconds (1 by default) and
  makes concurrent scrapes wait for the read in flight: however often and however many
  clients scrape, the broker is read at most once a second per server.

=================================  =========  ================  ==================================
metric                             type       labels            meaning
=================================  =========  ================  ==================================
conveyor_tasks_total               counter    task, queue,      tasks that ended: succeeded,
                                              status            failed, dead, aborted
conveyor_task_duration_seconds     histogram  task, queue       run time of every attempt that
                                                                ended (retried ones included)
conveyor_task_retries_total        counter    task, queue       failed attempts that run again
conveyor_enqueue_to_start_seconds  histogram  task, queue       first attempts: from enqueue (or
                                                                the end of its delay) to start
conveyor_scheduler_ticks_total     counter    schedule,         ticks published here (fresh) or
                                              outcome           already enqueued by a peer
                                                                (duplicate)
conveyor_queue_depth               gauge      queue             ready messages (read at scrape)
conveyor_queue_delayed             gauge      queue             delayed, or waiting to retry
conveyor_queue_running             gauge      queue             leased to a worker
conveyor_dead_letters              gauge      queue             dead-letter queue size
conveyor_worker_utilization        gauge      worker            running / concurrency at the
                                                                worker's last heartbeat
conveyor_workers_alive             gauge                        workers with a live heartbeat
conveyor_schedulers_alive          gauge                        schedulers with a live heartbeat
conveyor_heartbeat_age_seconds     gauge      worker, role      seconds since the last heartbeat
conveyor_broker_up                 gauge                        1 if the broker answered the
                                                                scrape, else 0
=================================  =========  ================  ==================================

Several worker processes
========================

Each process has its own counters. ``conveyor worker --workers N --metrics-port P`` runs
prometheus-client's *multiprocess mode*: the supervisor gives its children a fresh
``PROMETHEUS_MULTIPROC_DIR`` (a temporary directory, removed when it stops), every child
writes its counters and histograms to memory-mapped files there, and the supervisor
serves ``http://127.0.0.1:P/metrics`` (``--metrics-host`` to listen elsewhere: there is
no authentication) with their sum plus the broker metrics. A child that
is recycled or crashes keeps its files, so totals never go backwards when a process is
replaced. There are no per-process gauges (the ones prometheus-client's multiprocess
mode cannot aggregate well): utilization is read from the heartbeats instead.

Embedding (one process): ``app.add_hook(PrometheusHook())`` and
``await render_metrics(app)`` in your web app, or :func:`serve_metrics`.

Broker metrics are the same wherever they are served; when Prometheus scrapes several
endpoints (workers, the dashboard), aggregate them with ``max by (queue)`` rather than
``sum``. docs/observability.md has alert rules.

The whole deployment from one scrape
====================================

The dashboard's ``/metrics`` (``render_metrics(app, counts=True)``) serves
``conveyor_tasks_total{task,queue,status}`` and ``conveyor_task_retries_total{task,queue}``
from the broker's task counters instead (:class:`~conveyor.brokers.base.Counters`: every
worker adds its counts with its heartbeat, on by default): summed over all workers, on
every host, so one scrape of the dashboard covers the deployment, and a restarted worker
does not reset them. The durations and start latencies stay with the workers' own
``--metrics-port``. Scrape one or the other for the task counters, not both summed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from conveyor.events import (
    Event,
    SchedulerTick,
    TaskAborted,
    TaskDead,
    TaskFailure,
    TaskRetried,
    TaskStarted,
    TaskSucceeded,
)
from conveyor.hooks import Hook
from conveyor.portal import SyncPortal

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from conveyor.app import Conveyor
    from conveyor.brokers.base import Broker, QueueDepth, TaskCounts, WorkerInfo

__all__ = [
    "COUNTED",
    "DURATION_BUCKETS",
    "LATENCY_BUCKETS",
    "MULTIPROC_ENV",
    "BrokerCollector",
    "BrokerSnapshot",
    "MetricsServer",
    "MultiprocessMetrics",
    "PrometheusHook",
    "SnapshotCache",
    "TaskMetrics",
    "counted_metrics",
    "read_snapshot",
    "render_metrics",
    "serve_metrics",
    "snapshot_metrics",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# background work runs from milliseconds to an hour; the defaults stop at 10 s
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip


class TaskMetrics:
    """The task metrics on one registry (made once per registry: see :meth:`on`)."""

    _made: dict[int, tuple[CollectorRegistry, TaskMetrics]] = {}
    _lock = threading.Lock()

    def __init__(
        self,
        registry: CollectorRegistry,
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        latency_buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self.tasks = Counter(
            "conveyor_tasks",
            "Tasks that ended, by status (succeeded, failed, dead, aborted)",
            ["task", "queue", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "conveyor_task_duration_seconds",
            "Run time of task attempts",
            ["task", "queue"],
            buckets=duration_buckets,
            registry=registry,
        )
        self.retries = Counter(
            "conveyor_task_retries",
            "Failed attempts that will run again",
            ["task", "queue"],
            registry=registry,
        )
        self.enqueue_to_start = Histogram(
            "conveyor_enqueue_to_start_seconds",
            "Seconds from enqueue (or the end of its delay) to the start of a first attempt",
            ["task", "queue"],
            buckets=latency_buckets,
            registry=registry,
        )
        self.ticks = Counter(
            "conveyor_scheduler_ticks",
            "Schedule ticks: published here (fresh) or already enqueued by a peer (duplicate)",
            ["schedule", "outcome"],
            registry=registry,
        )

    @classmethod
    def on(cls, registry: CollectorRegistry | None = None) -> TaskMetrics:
        """The metrics registered on ``registry`` (default: prometheus-client's global
        one), made on first use: a registry refuses the same name twice."""
        target = REGISTRY if registry is None else registry
        with cls._lock:
            found = cls._made.get(id(target))
            if found is None or found[0] is not target:
                found = cls._made[id(target)] = (target, cls(target))
            return found[1]


@dataclass(slots=True)
class _Series:
    """The labelled children of one (task, queue): labels() costs more than inc()."""

    succeeded: Counter
    failed: Counter
    dead: Counter
    aborted: Counter
    duration: Histogram
    retries: Counter
    enqueue_to_start: Histogram


class PrometheusHook(Hook):
    """Counts task outcomes, durations, retries and start latency from the worker's
    events, and schedule ticks from the scheduler's.

    >>> app.add_hook(PrometheusHook())            # doctest: +SKIP
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.metrics = TaskMetrics.on(registry)
        self._series: dict[tuple[str, str], _Series] = {}

    def _for(self, task: str, queue: str) -> _Series:
        series = self._series.get((task, queue))
        if series is None:
            m = self.metrics
            series = self._series[(task, queue)] = _Series(
                succeeded=m.tasks.labels(task, queue, "succeeded"),
                failed=m.tasks.labels(task, queue, "failed"),
                dead=m.tasks.labels(task, queue, "dead"),
                aborted=m.tasks.labels(task, queue, "aborted"),
                duration=m.duration.labels(task, queue),
                retries=m.retries.labels(task, queue),
                enqueue_to_start=m.enqueue_to_start.labels(task, queue),
            )
        return series

    def on_event(self, event: Event) -> None:
        kind = type(event)
        if kind is TaskSucceeded:
            assert isinstance(event, TaskSucceeded)
            series = self._for(event.task, event.queue)
            series.succeeded.inc()
            series.duration.observe(event.duration)
        elif kind is TaskStarted:
            assert isinstance(event, TaskStarted)
            if event.attempt == 1:
                due = max(event.enqueued_at, event.not_before)
                self._for(event.task, event.queue).enqueue_to_start.observe(
                    max(event.at - due, 0.0)
                )
        elif kind is TaskRetried:
            assert isinstance(event, TaskRetried)
            series = self._for(event.task, event.queue)
            series.retries.inc()
            series.duration.observe(event.duration)
        elif kind is TaskFailure:
            assert isinstance(event, TaskFailure)
            series = self._for(event.task, event.queue)
            series.failed.inc()
            series.duration.observe(event.duration)
        elif kind is TaskAborted:
            assert isinstance(event, TaskAborted)
            series = self._for(event.task, event.queue)
            series.aborted.inc()
            series.duration.observe(event.duration)
        elif kind is TaskDead:
            assert isinstance(event, TaskDead)
            self._for(event.task, event.queue).dead.inc()
        elif kind is SchedulerTick:
            assert isinstance(event, SchedulerTick)
            outcome = "fresh" if event.fresh else "duplicate"
            self.metrics.ticks.labels(event.schedule_id, outcome).inc()


# -- broker metrics, read at scrape time -----------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerSnapshot:
    """What the broker said at one scrape (``up`` False: it did not answer); ``counts``:
    its task counter totals, when they were asked for."""

    now: float
    up: bool = True
    depths: list[QueueDepth] = field(default_factory=list)
    workers: list[WorkerInfo] = field(default_factory=list)
    counts: TaskCounts | None = None


async def read_snapshot(
    broker: Broker, now: float, timeout: float = 5.0, *, counts: bool = False
) -> BrokerSnapshot:
    """Queue depths and heartbeats from ``broker`` (connected on the running loop), and
    with ``counts`` its task counter totals (where it has ``Capability.COUNTS``); a
    broker that fails or takes longer than ``timeout`` gives ``up=False``."""
    from conveyor.brokers.base import Capability

    async def totals() -> TaskCounts | None:
        if counts and Capability.COUNTS in broker.capabilities:
            return await broker.counts(float("inf"))
        return None

    try:
        depths, workers, counted = await asyncio.wait_for(
            asyncio.gather(broker.queue_depths(), broker.workers(), totals()), timeout
        )
    except Exception:
        return BrokerSnapshot(now, up=False)
    return BrokerSnapshot(now, True, list(depths), list(workers), counted)


# the task metrics that the broker's counters serve, summed over every worker
COUNTED = ("conveyor_tasks", "conveyor_task_retries")


def counted_metrics(counts: TaskCounts) -> list[Metric]:
    """``conveyor_tasks_total`` and ``conveyor_task_retries_total`` from the broker's task
    counters (every worker's, summed)."""
    tasks = CounterMetricFamily(
        COUNTED[0],
        "Tasks that ended, by status (succeeded, failed, dead, aborted), over all workers",
        labels=["task", "queue", "status"],
    )
    retries = CounterMetricFamily(
        COUNTED[1],
        "Failed attempts that will run again, over all workers",
        labels=["task", "queue"],
    )
    for (task, queue, status), n in sorted(counts.totals.items()):
        if status == "retried":
            retries.add_metric([task, queue], n)
        else:
            tasks.add_metric([task, queue, status], n)
    return [tasks, retries]


def snapshot_metrics(snapshot: BrokerSnapshot) -> list[Metric]:
    """The broker metrics of one snapshot."""
    up = GaugeMetricFamily("conveyor_broker_up", "1 if the broker answered this scrape")
    up.add_metric([], 1.0 if snapshot.up else 0.0)
    if not snapshot.up:
        return [up]
    depth = GaugeMetricFamily("conveyor_queue_depth", "Ready messages", labels=["queue"])
    delayed = GaugeMetricFamily(
        "conveyor_queue_delayed", "Delayed messages, retries waiting included", labels=["queue"]
    )
    running = GaugeMetricFamily("conveyor_queue_running", "Leased messages", labels=["queue"])
    dead = GaugeMetricFamily("conveyor_dead_letters", "Dead-letter queue size", labels=["queue"])
    for d in snapshot.depths:
        depth.add_metric([d.queue], d.ready)
        delayed.add_metric([d.queue], d.delayed)
        running.add_metric([d.queue], d.running)
        dead.add_metric([d.queue], d.dead)
    utilization = GaugeMetricFamily(
        "conveyor_worker_utilization",
        "Running tasks / concurrency at the worker's last heartbeat",
        labels=["worker"],
    )
    age = GaugeMetricFamily(
        "conveyor_heartbeat_age_seconds",
        "Seconds since a live worker or scheduler last reported",
        labels=["worker", "role"],
    )
    workers = schedulers = 0
    for info in snapshot.workers:
        age.add_metric([info.worker_id, info.role], max(snapshot.now - info.last_seen, 0.0))
        if info.role == "scheduler":
            schedulers += 1
            continue
        workers += 1
        utilization.add_metric([info.worker_id], info.running / max(info.concurrency, 1))
    alive = GaugeMetricFamily("conveyor_workers_alive", "Workers with a live heartbeat")
    alive.add_metric([], workers)
    sched = GaugeMetricFamily("conveyor_schedulers_alive", "Schedulers with a live heartbeat")
    sched.add_metric([], schedulers)
    counted = [] if snapshot.counts is None else counted_metrics(snapshot.counts)
    return [up, depth, delayed, running, dead, utilization, alive, sched, age, *counted]


class SnapshotCache:
    """The last :class:`BrokerSnapshot`, given again for ``ttl`` seconds, so that
    scrapes cannot load the broker: a thousand scrapes a second (or ten Prometheus
    servers) cost it one read a second. One read at a time: a scrape that finds a read
    in flight waits for it rather than starting another. A failed read (``up=False``) is
    kept too, so a broker in trouble is not asked again by every scrape. ``ttl=0`` reads
    at every scrape. ``monotonic`` is the clock (tests pass their own).

    The cached snapshot keeps the time of its read, so heartbeat ages are as of that
    read: at most ``ttl`` seconds old.

    >>> cache = SnapshotCache(ttl=1.0)                 # doctest: +SKIP
    >>> cache.read(lambda: portal.call(read_now))      # blocking, from any thread  # doctest: +SKIP
    >>> await cache.aread(read_now)                    # on the event loop  # doctest: +SKIP
    """

    def __init__(self, ttl: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        if ttl < 0:
            raise ValueError(f"the snapshot cache ttl must be >= 0, not {ttl}")
        self.ttl = ttl
        self._monotonic = monotonic
        self._kept: tuple[float, BrokerSnapshot] | None = None
        self._lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None

    def _fresh(self) -> BrokerSnapshot | None:
        kept = self._kept
        if kept is not None and self._monotonic() - kept[0] < self.ttl:
            return kept[1]
        return None

    def _keep(self, snapshot: BrokerSnapshot) -> BrokerSnapshot:
        self._kept = (self._monotonic(), snapshot)
        return snapshot

    def read(self, read: Callable[[], BrokerSnapshot]) -> BrokerSnapshot:
        """The kept snapshot, or ``read()``'s (a blocking call; thread-safe)."""
        with self._lock:
            kept = self._fresh()
            return kept if kept is not None else self._keep(read())

    async def aread(self, read: Callable[[], Awaitable[BrokerSnapshot]]) -> BrokerSnapshot:
        """The kept snapshot, or ``await read()``'s (on one event loop)."""
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        async with self._async_lock:
            kept = self._fresh()
            return kept if kept is not None else self._keep(await read())


class BrokerCollector(Collector):
    """A prometheus-client collector that reads the broker at every scrape through
    ``read`` (a blocking call: it runs on the HTTP server's thread)."""

    def __init__(self, read: Callable[[], BrokerSnapshot]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        return snapshot_metrics(self._read())


class _Without(Collector):
    """A registry's metrics but those named ``names`` (served from elsewhere)."""

    def __init__(self, registry: CollectorRegistry, names: Sequence[str]) -> None:
        self._registry = registry
        self._names = frozenset(names)

    def collect(self) -> Iterable[Metric]:
        return [m for m in self._registry.collect() if m.name not in self._names]


class _Snapshot(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def _process_registry(registry: CollectorRegistry | None) -> CollectorRegistry:
    if registry is not None:
        return registry
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        aggregate = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregate, path=directory)  # type: ignore[no-untyped-call]
        return aggregate
    return REGISTRY


async def render_metrics(
    app: Conveyor,
    registry: CollectorRegistry | None = None,
    *,
    cache: SnapshotCache | None = None,
    counts: bool = False,
) -> tuple[bytes, str]:
    """The ``/metrics`` page for ``app``: (body, content type), for any web framework.

    It holds the task metrics of ``registry`` (default: this process's, or the sum over
    ``PROMETHEUS_MULTIPROC_DIR`` when that is set) and the broker metrics: read now, or
    through ``cache`` (keep one per app, for the life of your web app, so that scrapes
    cannot load the broker). With ``counts`` (the dashboard's), ``conveyor_tasks_total``
    and ``conveyor_task_retries_total`` come from the broker's task counters, summed
    over every worker, instead of from ``registry``.

    >>> cache = SnapshotCache()                                # doctest: +SKIP
    >>> body, content_type = await render_metrics(app, cache=cache)   # doctest: +SKIP
    >>> return Response(body, media_type=content_type)         # doctest: +SKIP
    """

    async def read_now() -> BrokerSnapshot:
        return await read_snapshot(app.broker, app.settings.clock.now(), counts=counts)

    snapshot = await read_now() if cache is None else await cache.aread(read_now)
    broker = CollectorRegistry(auto_describe=False)
    broker.register(_Snapshot(snapshot_metrics(snapshot)))
    process = _process_registry(registry)
    if counts:
        process = CollectorRegistry(auto_describe=False)
        process.register(_Without(_process_registry(registry), COUNTED))
    body = generate_latest(process) + generate_latest(broker)
    return body, CONTENT_TYPE_LATEST


# -- serving ---------------------------------------------------------------------------


class _Delegate(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class MetricsServer:
    """``/metrics`` over HTTP on a thread: the task metrics of this process (or of
    ``multiprocess_dir``) plus the broker metrics, read through a connection of its own
    (a :class:`~conveyor.app.SyncPortal`) at most once per ``cache_ttl`` seconds (see
    :class:`SnapshotCache`; ``monotonic`` is its clock). ``port=0`` picks a free port
    (see ``port``). It listens on ``host``, 127.0.0.1 by default: it has no
    authentication, so open it to other machines only on a network you trust."""

    def __init__(
        self,
        app: Conveyor,
        port: int,
        host: str = "127.0.0.1",
        *,
        multiprocess_dir: str | None = None,
        registry: CollectorRegistry | None = None,
        scrape_timeout: float = 5.0,
        cache_ttl: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        from prometheus_client import start_http_server

        self.app = app
        self.scrape_timeout = scrape_timeout
        self.cache = SnapshotCache(cache_ttl, monotonic)
        self._portal: SyncPortal | None = None
        self._portal_lock = threading.Lock()
        served = CollectorRegistry(auto_describe=False)
        if multiprocess_dir is not None:
            multiprocess.MultiProcessCollector(served, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        else:
            served.register(_Delegate(registry or REGISTRY))
        served.register(BrokerCollector(lambda: self.cache.read(self._read)))
        self._server: WSGIServer
        self._server, self._thread = start_http_server(port, host, served)
        self.port: int = self._server.server_port

    def _read(self) -> BrokerSnapshot:
        now = self.app.settings.clock.now()
        try:
            with self._portal_lock:
                if self._portal is None:  # its own connection, closed with this server
                    app = self.app
                    self._portal = SyncPortal(lambda: (app._broker, app._result_store))
                portal = self._portal
        except Exception:  # the broker is down at the first scrape: try again next time
            return BrokerSnapshot(now, up=False)
        connection = portal.connection
        if connection is None:
            return BrokerSnapshot(now, up=False)
        return portal.call(lambda: read_snapshot(connection.broker, now, self.scrape_timeout))

    def close(self) -> None:
        """Stop serving and close the broker connection."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        with self._portal_lock:
            portal, self._portal = self._portal, None
        if portal is not None:
            portal.close()


def serve_metrics(
    app: Conveyor, port: int, host: str = "127.0.0.1", *, cache_ttl: float = 1.0
) -> MetricsServer:
    """Serve this process's task metrics and the broker metrics on ``host:port``
    (``server.close()`` stops it), reading the broker at most once per ``cache_ttl``
    seconds. For one process; see :class:`MultiprocessMetrics`."""
    return MetricsServer(app, port, host, cache_ttl=cache_ttl)


class MultiprocessMetrics:
    """What ``conveyor worker --metrics-port`` runs in the supervisor: a fresh
    ``PROMETHEUS_MULTIPROC_DIR`` for the children (:attr:`child_env`), and the server of
    their sum. :meth:`process_exited` tidies a dead child's live files; :meth:`close`
    stops the server and deletes the directory."""

    def __init__(
        self, app: Conveyor, port: int, host: str = "127.0.0.1", *, cache_ttl: float = 1.0
    ) -> None:
        self.directory = tempfile.mkdtemp(prefix="conveyor-metrics-")
        try:
            self.server = MetricsServer(
                app, port, host, multiprocess_dir=self.directory, cache_ttl=cache_ttl
            )
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.child_env = {MULTIPROC_ENV: self.directory}

    @property
    def port(self) -> int:
        return self.server.port

    def process_exited(self, pid: int) -> None:
        # counters and histograms stay (totals must not drop); live gauges would go
        multiprocess.mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.server.close()
        shutil.rmtree(self.directory, ignore_errors=True)
