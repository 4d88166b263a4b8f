"""Procrastinate: the PostgreSQL peer (compare with Conveyor's PostgreSQL broker)."""

from harness.adapter import Adapter, Venv, WorkerSpec


class Procrastinate(Adapter):
    name = "procrastinate"
    label = "procrastinate (PostgreSQL)"
    app_module = "peers.procrastinate_app"
    requirements = ("procrastinate==3.10.0", "psycopg[binary,pool]==3.3.9")
    distributions = ("procrastinate", "psycopg")
    backend = "postgres"
    needs_prepare = True
    default_concurrency = 1
    result_modes = (False,)
    enqueue_api = "`task.batch_defer_async()` (batch, 1,000 per call)"
    results_note = "no result storage (jobs keep a status row)"
    notes = ("database `conveyor_bench` is dropped and re-created with procrastinate's "
             "schema before every run, and ANALYZEd once the backlog is in (untimed; without "
             "planner statistics fetching from a 20,000-job backlog was ~8x slower)",)

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        cmd = [venv.bin("procrastinate"), "--app", f"{self.app_module}.app", "worker",
               "--queues", "bench"]
        if spec.concurrency is not None:
            cmd += ["--concurrency", str(spec.concurrency)]
        return [cmd] * spec.procs


ADAPTER = Procrastinate()
