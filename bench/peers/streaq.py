"""streaq: anyio + coredis, Redis Streams."""

from harness.adapter import Adapter, Venv, WorkerSpec


class Streaq(Adapter):
    name = "streaq"
    label = "streaq"
    app_module = "peers.streaq_app"
    requirements = ("streaq==7.2.0",)
    distributions = ("streaq", "coredis")
    default_concurrency = 16
    result_modes = (False, True)
    enqueue_api = "`Worker.enqueue_many()` (one pipeline per 1,000)"
    results_note = "results kept 5 min by default; 'no results' sets the task's ttl=0"

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        return [[venv.bin("streaq"), "run", f"{self.app_module}:worker"]] * spec.procs


ADAPTER = Streaq()
