"""Conveyor itself, from this checkout: Redis Streams and the embedded SQLite broker."""

from harness.adapter import BENCH_DIR, Adapter, Venv, WorkerSpec

REPO = BENCH_DIR.parent


class ConveyorRedis(Adapter):
    name = "conveyor"
    label = "**conveyor** (Redis Streams)"
    app_module = "peers.conveyor_app"
    requirements = ("-e", f"{REPO}[redis]")
    distributions = ("conveyor-tasks", "redis", "hiredis", "msgspec")
    min_python = (3, 11)
    default_concurrency = 10
    result_modes = (False, True)
    enqueue_api = "`app.enqueue_many()` (batch, 1,000 per call: one script call per batch)"
    results_note = "results kept 5 min (`result_ttl=300`); 'no results' sets `result_ttl=0`"
    notes = (
        "each worker process is `conveyor worker --workers 1` (a supervisor plus one worker "
        "process), acks after the result is stored, lease renewal on a thread",
        "event log off (the default; `conveyor-events` is the same with `events=True`, "
        "i.e. `CONVEYOR_EVENTS=1`)",
    )

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        cmd = [venv.bin("conveyor"), "worker", f"{self.app_module}:app", "--workers", "1",
               "--log-level", "WARNING"]
        if spec.concurrency is not None:
            cmd += ["--concurrency", str(spec.concurrency)]
        return [cmd] * spec.procs


ADAPTER = ConveyorRedis()
