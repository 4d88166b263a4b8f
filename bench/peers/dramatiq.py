"""Dramatiq with its Redis broker (threads; sync actors)."""

from harness.adapter import Adapter, Venv, WorkerSpec


class Dramatiq(Adapter):
    name = "dramatiq"
    label = "dramatiq (RedisBroker)"
    app_module = "peers.dramatiq_app"
    requirements = ("dramatiq[redis]==2.2.1", "hiredis==3.5.0")
    distributions = ("dramatiq", "redis", "hiredis")
    default_concurrency = 8  # --threads
    result_modes = (False, True)
    concurrency_unit = "worker threads (`--threads`)"
    enqueue_api = "`actor.send()`, sequential (sync API, no batch)"
    sleep_impl = "`time.sleep(0.01)` in a worker thread (dramatiq's AsyncIO middleware would " \
        "still hold one thread per running task)"
    results_note = "Results middleware with RedisBackend, `store_results=True`"
    notes = ("each worker process is `dramatiq --processes 1` (a supervisor plus one worker "
             "process)",)

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        cmd = [venv.bin("dramatiq"), self.app_module, "--processes", "1"]
        if spec.concurrency is not None:
            cmd += ["--threads", str(spec.concurrency)]
        return [cmd] * spec.procs


ADAPTER = Dramatiq()
