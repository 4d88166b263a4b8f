"""The raw Redis ceiling: a bare asyncio loop on redis-py + hiredis, no task queue at all.

Producer: XADD in pipelines of 100. Worker: XREADGROUP COUNT 100 (C is the COUNT), then one
pipeline of XACK + XDEL for the whole batch. Every library is stated as a % of this.
"""

from harness.adapter import Adapter, Venv, WorkerSpec


class RawRedis(Adapter):
    name = "redis-raw"
    label = "raw redis-py + hiredis loop (ceiling)"
    app_module = "peers.redis_raw_app"
    requirements = ("redis==8.1.0", "hiredis==3.5.0")
    distributions = ("redis", "hiredis")
    default_concurrency = 100
    workloads = ("noop",)
    concurrency_unit = "XREADGROUP COUNT"
    enqueue_api = "pipelined XADD, 100 per round trip"
    sleep_impl = "n/a (no task runner)"
    is_ceiling = True

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        return [[venv.python, "-m", self.app_module] for _ in range(spec.procs)]


ADAPTER = RawRedis()
