"""Conveyor on RabbitMQ (``amqp://``), task records and results in Redis."""

from peers.conveyor import REPO, ConveyorRedis


class ConveyorAmqp(ConveyorRedis):
    name = "conveyor-amqp"
    label = "**conveyor** (RabbitMQ)"
    app_module = "peers.conveyor_amqp_app"
    requirements = ("-e", f"{REPO}[amqp]")
    distributions = ("conveyor-tasks", "aio-pika", "aiormq", "redis", "hiredis", "msgspec")
    backend = "rabbitmq"
    needs_prepare = True
    enqueue_api = (
        "`app.enqueue_many()` (batch, 1,000 per call: one records script, then 1,000 "
        "confirmed publishes in flight)"
    )
    results_note = (
        "results kept 5 min (`result_ttl=300`) in Redis; 'no results' sets `result_ttl=0` "
        "(the task records stay in Redis either way)"
    )
    notes = (
        "quorum queues, persistent messages, publisher confirms, manual acks; prefix "
        "`bench`, deleted with its records before every run",
        "each worker process is `conveyor worker --workers 1`",
    )


ADAPTER = ConveyorAmqp()
