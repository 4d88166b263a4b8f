"""Conveyor's PostgreSQL broker (compare with procrastinate, on the same server)."""

from peers.conveyor import REPO, ConveyorRedis


class ConveyorPostgres(ConveyorRedis):
    name = "conveyor-postgres"
    label = "**conveyor** (PostgreSQL)"
    app_module = "peers.conveyor_postgres_app"
    requirements = ("-e", f"{REPO}[postgres,redis]")  # peers.conveyor_app builds a Redis app too
    distributions = ("conveyor-tasks", "asyncpg", "redis", "msgspec")
    backend = "postgres"
    results_note = "stored in the same database (results table, `result_ttl=300`)"
    notes = (
        "database `conveyor_bench` dropped and re-created before every run; Conveyor's "
        "migrations run at the first connect (schema `bench`)",
        "each worker process is `conveyor worker --workers 1`",
    )


ADAPTER = ConveyorPostgres()
