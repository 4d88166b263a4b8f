"""Huey with SqliteHuey: the embedded peer (compare with Conveyor's SQLite broker)."""

from harness.adapter import Adapter, Venv, WorkerSpec


class Huey(Adapter):
    name = "huey"
    label = "huey (SqliteHuey)"
    app_module = "peers.huey_app"
    requirements = ("huey==3.5.4",)
    distributions = ("huey",)
    backend = "sqlite"
    default_concurrency = 1  # -w 1, thread workers
    result_modes = (False, True)
    concurrency_unit = "worker threads (`-k thread -w C`)"
    enqueue_api = "calling the task, sequential (sync API, no batch)"
    sleep_impl = "`time.sleep(0.01)` in a worker thread"
    results_note = "stored in the same SQLite file (`results=True`, huey's default)"
    notes = ("one SQLite file per run (fresh), shared by the producer and all consumers",
             "an idle consumer polls the database with back-off (huey's default `-d 0.1`, "
             "up to 10 s)")

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        cmd = [venv.bin("huey_consumer"), f"{self.app_module}.huey", "-k", "thread", "-q"]
        if spec.concurrency is not None:
            cmd += ["-w", str(spec.concurrency)]
        return [cmd] * spec.procs


ADAPTER = Huey()
