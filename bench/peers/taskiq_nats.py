"""taskiq + taskiq-nats (JetStream, pull-based), with and without taskiq-redis's backend."""

from harness.adapter import Adapter, Venv, WorkerSpec


class TaskiqNats(Adapter):
    name = "taskiq-nats"
    label = "taskiq (PullBasedJetStreamBroker)"
    app_module = "peers.taskiq_nats_app"
    requirements = ("taskiq==0.13.0", "taskiq-nats==0.7.0", "taskiq-redis==1.2.4",
                    "hiredis==3.5.0")
    distributions = ("taskiq", "taskiq-nats", "nats-py", "taskiq-redis")
    backend = "nats"
    needs_prepare = True
    default_concurrency = 100  # --max-async-tasks
    result_modes = (False, True)
    enqueue_api = "`.kiq()`, 100 calls in flight (no batch API)"
    results_note = "RedisAsyncResultBackend when results are stored"
    notes = (
        "stream `bench_taskiq` (taskiq-nats' defaults otherwise: durable pull consumer, "
        "`pull_consume_batch=100`), deleted before every run",
        "each worker process is `taskiq worker --workers 1`",
    )

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        cmd = [venv.bin("taskiq"), "worker", f"{self.app_module}:broker", "--workers", "1"]
        if spec.concurrency is not None:
            cmd += ["--max-async-tasks", str(spec.concurrency)]
        return [cmd] * spec.procs


ADAPTER = TaskiqNats()
