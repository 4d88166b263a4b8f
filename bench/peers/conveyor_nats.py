"""Conveyor on NATS JetStream (``nats://``), results in Redis as taskiq-nats' are here."""

from peers.conveyor import REPO, ConveyorRedis


class ConveyorNats(ConveyorRedis):
    name = "conveyor-nats"
    label = "**conveyor** (NATS JetStream)"
    app_module = "peers.conveyor_nats_app"
    requirements = ("-e", f"{REPO}[nats,redis]")
    distributions = ("conveyor-tasks", "nats-py", "redis", "hiredis", "msgspec")
    backend = "nats"
    needs_prepare = True
    results_note = (
        "results kept 5 min (`result_ttl=300`) in Redis, like the taskiq-nats peer's; "
        "'no results' sets `result_ttl=0` (job records stay in JetStream KV either way)"
    )
    notes = (
        "work-queue stream, durable pull consumer, job records in KV; prefix `bench`, its "
        "streams and buckets deleted before every run",
        "each worker process is `conveyor worker --workers 1`",
    )


ADAPTER = ConveyorNats()
