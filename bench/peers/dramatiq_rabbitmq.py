"""Dramatiq with its RabbitMQ broker (pika; threads; sync actors)."""

from peers.dramatiq import Dramatiq


class DramatiqRabbitmq(Dramatiq):
    name = "dramatiq-rabbitmq"
    label = "dramatiq (RabbitmqBroker)"
    app_module = "peers.dramatiq_rabbitmq_app"
    requirements = ("dramatiq[rabbitmq,redis]==2.2.1", "hiredis==3.5.0")
    distributions = ("dramatiq", "pika", "redis")
    backend = "rabbitmq"
    needs_prepare = True
    results_note = "Results middleware with RedisBackend, `store_results=True`"
    notes = (
        "queue `bench_dramatiq` (classic, dramatiq's default, with its `.DQ`/`.XQ`), "
        "deleted before every run; publisher confirms on",
        "each worker process is `dramatiq --processes 1`",
    )


ADAPTER = DramatiqRabbitmq()
