"""saq: asyncio + Redis (list queue, job hashes, Lua scripts)."""

from harness.adapter import Adapter, Venv, WorkerSpec


class Saq(Adapter):
    name = "saq"
    label = "saq"
    app_module = "peers.saq_app"
    # saq 0.26.4 imports typing_extensions without declaring it.
    requirements = ("saq[hiredis]==0.26.4", "typing_extensions")
    distributions = ("saq", "redis", "hiredis")
    default_concurrency = 10
    result_modes = (True,)
    enqueue_api = "`Queue.enqueue()`, 100 calls in flight (no batch API)"
    results_note = "always: every job is a Redis hash holding its status and result (ttl 600 s)"

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        return [[venv.bin("saq"), f"{self.app_module}.settings", "--workers", "1"]] * spec.procs


ADAPTER = Saq()
