"""taskiq + taskiq-aio-pika (RabbitMQ), with and without taskiq-redis's result backend."""

from harness.adapter import Adapter, Venv, WorkerSpec


class TaskiqAioPika(Adapter):
    name = "taskiq-aio-pika"
    label = "taskiq (AioPikaBroker)"
    app_module = "peers.taskiq_aio_pika_app"
    requirements = ("taskiq==0.13.0", "taskiq-aio-pika==0.6.1", "taskiq-redis==1.2.4",
                    "hiredis==3.5.0")
    distributions = ("taskiq", "taskiq-aio-pika", "aio-pika", "taskiq-redis")
    backend = "rabbitmq"
    needs_prepare = True
    default_concurrency = 100  # --max-async-tasks
    result_modes = (False, True)
    enqueue_api = "`.kiq()`, 100 calls in flight (no batch API)"
    results_note = "RedisAsyncResultBackend when results are stored"
    notes = (
        "queue `bench_taskiq` (quorum, taskiq-aio-pika's default type), `qos` = the "
        "concurrency; the queue is deleted before every run",
        "each worker process is `taskiq worker --workers 1`",
    )

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        cmd = [venv.bin("taskiq"), "worker", f"{self.app_module}:broker", "--workers", "1"]
        if spec.concurrency is not None:
            cmd += ["--max-async-tasks", str(spec.concurrency)]
        return [cmd] * spec.procs


ADAPTER = TaskiqAioPika()
