"""ArdiQ: Rust core (PyO3 + tokio) over Redis Streams, Python tasks."""

from harness.adapter import Adapter, Venv, WorkerSpec


class Ardiq(Adapter):
    name = "ardiq"
    label = "ardiq"
    app_module = "peers.ardiq_app"
    requirements = ("ardiq==1.2.0",)
    distributions = ("ardiq", "msgpack")
    min_python = (3, 12)
    default_concurrency = 16
    result_modes = (False, True)
    enqueue_api = "`Ardiq.enqueue_many()` of `task.prepare()` (batch, 1,000 per call)"
    results_note = "results kept 5 min by default; 'no results' sets result_ttl_ms=0"

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        return [[venv.bin("ardiq"), "run", f"{self.app_module}:app"]] * spec.procs


ADAPTER = Ardiq()
