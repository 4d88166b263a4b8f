"""Celery with the Redis transport (and the Redis result backend when results are stored)."""

from harness.adapter import Adapter, Venv, WorkerSpec


class Celery(Adapter):
    name = "celery"
    label = "celery (redis)"
    app_module = "peers.celery_app"
    requirements = ("celery[redis]==5.7.0", "hiredis==3.5.0")
    distributions = ("celery", "kombu", "redis", "hiredis")
    default_concurrency = 2  # prefork pool, one child per CPU
    result_modes = (False, True)
    concurrency_unit = "pool slots: `-P threads -c 100` at 100; the default is the prefork " \
        "pool with one child process per CPU (2 here)"
    enqueue_api = "`task.apply_async()`, sequential (sync API, no batch)"
    sleep_impl = "`time.sleep(0.01)` in a pool thread / prefork child"
    results_note = "Redis result backend (`task_ignore_result=False`) when stored"
    notes = ("worker otherwise at defaults (gossip, mingle, heartbeat on; prefetch "
             "multiplier 4)",)

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        cmd = [venv.bin("celery"), "-A", self.app_module, "worker", "--loglevel", "WARNING",
               "-Q", "bench"]
        if spec.concurrency is not None:
            cmd += ["-P", "threads", "-c", str(spec.concurrency)]
        return [[*cmd, "-n", f"bench{k}@%h"] for k in range(spec.procs)]


ADAPTER = Celery()
