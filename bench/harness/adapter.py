"""The adapter interface: everything the harness needs to know about one task queue.

Adding a library to the benchmark is one adapter module in ``bench/peers/`` (a subclass
of :class:`Adapter`, assigned to a module-level ``ADAPTER``) plus the small app module
that runs inside the library's own virtualenv (a :class:`benchkit.driver.PeerApp`
subclass, and the tasks the worker runs). See bench/README.md, "Adding an adapter".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

BENCH_DIR = Path(__file__).resolve().parent.parent

Backend = Literal["redis", "sqlite", "postgres", "rabbitmq", "nats"]


@dataclass(frozen=True)
class WorkerSpec:
    """How to start worker processes for one run."""

    procs: int
    """Number of worker processes (K)."""
    concurrency: int | None
    """Per-process concurrency (C); None means the library's default."""
    results: bool
    """Results-stored mode."""


@dataclass(frozen=True)
class Venv:
    """A peer's virtualenv; ``bin(name)`` is the path of a console script in it."""

    path: Path

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    def bin(self, name: str) -> str:
        return str(self.path / "bin" / name)


class Adapter:
    """Describes one peer. Subclasses set the class attributes and ``worker_commands``."""

    name: ClassVar[str]
    """Short name: the venv directory (bench/.venvs/<name>) and the CLI's --peers key."""
    label: ClassVar[str]
    """Name shown in RESULTS.md."""
    app_module: ClassVar[str]
    """Module (under bench/) with the PeerApp subclass and the tasks, e.g. peers.arq_app."""
    requirements: ClassVar[tuple[str, ...]]
    """pip requirement specifiers installed into the venv (pin what you measured)."""
    distributions: ClassVar[tuple[str, ...]]
    """Distributions whose installed versions are reported."""
    min_python: ClassVar[tuple[int, int]] = (3, 10)
    backend: ClassVar[Backend] = "redis"
    default_concurrency: ClassVar[int]
    """The library's default per-process concurrency (what "default" runs use)."""
    result_modes: ClassVar[tuple[bool, ...]] = (False,)
    """Which "results stored" modes the library supports: (False,), (True,) or both."""
    needs_prepare: ClassVar[bool] = False
    """Run ``app prepare`` before every run (non-Redis backends that must be reset)."""
    workloads: ClassVar[tuple[str, ...]] = ("noop", "sleep")
    concurrency_unit: ClassVar[str] = "async tasks"
    """What C counts: "async tasks", "threads", "processes", "XREADGROUP COUNT"..."""
    enqueue_api: ClassVar[str]
    """The producer API used, e.g. "kiq(), 100 in flight" or "enqueue_many() (batch)"."""
    sleep_impl: ClassVar[str] = "await asyncio.sleep(0.01)"
    results_note: ClassVar[str] = ""
    notes: ClassVar[tuple[str, ...]] = ()
    is_ceiling: ClassVar[bool] = False
    """The raw Redis loop: reported as the ceiling, not as a peer."""

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        """One command per worker process to start (``spec.procs`` of them, usually).

        Commands run with cwd=bench/, ``PYTHONPATH`` containing bench/, and the
        ``BENCH_*`` environment (see benchkit.config) that the app module reads.
        """
        raise NotImplementedError

    def concurrency_label(self, concurrency: int | None) -> str:
        if concurrency is None:
            return f"default ({self.default_concurrency})"
        return str(concurrency)
