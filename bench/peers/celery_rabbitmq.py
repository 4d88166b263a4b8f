"""Celery with its native broker, RabbitMQ (py-amqp), and the Redis result backend."""

from harness.adapter import Venv, WorkerSpec
from peers.celery import Celery


class CeleryRabbitmq(Celery):
    name = "celery-rabbitmq"
    label = "celery (RabbitMQ)"
    app_module = "peers.celery_rabbitmq_app"
    requirements = ("celery[redis]==5.7.0", "hiredis==3.5.0")
    distributions = ("celery", "kombu", "amqp", "redis")
    backend = "rabbitmq"
    needs_prepare = True
    notes = (
        "`task_acks_late=True` (ack after the task, as the other peers; Celery's default "
        "acks before it runs), queue `bench_celery` (classic) deleted before every run",
        "worker otherwise at defaults (gossip, mingle, heartbeat on; prefetch multiplier 4)",
    )

    def worker_commands(self, venv: Venv, spec: WorkerSpec) -> list[list[str]]:
        cmds = super().worker_commands(venv, spec)
        return [[*c[: c.index("bench")], "bench_celery", *c[c.index("bench") + 1 :]]
                for c in cmds]


ADAPTER = CeleryRabbitmq()
