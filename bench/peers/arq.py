"""arq: asyncio + Redis (sorted-set queue, polled)."""

from harness.adapter import Adapter, Venv, WorkerSpec


class Arq(Adapter):
    name = "arq"
    label = "arq"
    app_module = "peers.arq_app"
    requirements = ("arq==0.28.0",)  # pulls redis[hiredis]<6
    distributions = ("arq", "redis", "hiredis")
    default_concurrency = 10  # WorkerSettings.max_jobs
    result_modes = (False, True)
    enqueue_api = "`ArqRedis.enqueue_job()`, 100 calls in flight (no batch API)"
    results_note = "arq keeps results for 1 h by default; 'no results' sets keep_result=0"
    notes = ("the worker polls the queue every `poll_delay` (default 0.5 s) when idle",)

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        return [[venv.bin("arq"), f"{self.app_module}.WorkerSettings"]] * spec.procs


ADAPTER = Arq()
