"""taskiq + taskiq-redis RedisStreamBroker, with and without RedisAsyncResultBackend."""

from harness.adapter import Adapter, Venv, WorkerSpec


class Taskiq(Adapter):
    name = "taskiq"
    label = "taskiq (RedisStreamBroker)"
    app_module = "peers.taskiq_app"
    requirements = ("taskiq==0.13.0", "taskiq-redis==1.2.4", "hiredis==3.5.0")
    distributions = ("taskiq", "taskiq-redis", "redis", "hiredis")
    default_concurrency = 100  # --max-async-tasks
    result_modes = (False, True)
    enqueue_api = "`.kiq()`, 100 calls in flight (no batch API)"
    results_note = "RedisAsyncResultBackend when results are stored"
    notes = (
        "each worker process is `taskiq worker --workers 1` (a supervisor plus one worker "
        "process)",
    )

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        cmd = [venv.bin("taskiq"), "worker", f"{self.app_module}:broker", "--workers", "1"]
        if spec.concurrency is not None:
            cmd += ["--max-async-tasks", str(spec.concurrency)]
        return [cmd] * spec.procs


ADAPTER = Taskiq()
