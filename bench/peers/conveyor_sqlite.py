"""Conveyor's embedded SQLite broker (compare with huey's SqliteHuey)."""

from peers.conveyor import REPO, ConveyorRedis


class ConveyorSqlite(ConveyorRedis):
    name = "conveyor-sqlite"
    label = "**conveyor** (embedded SQLite)"
    app_module = "peers.conveyor_sqlite_app"
    requirements = ("-e", f"{REPO}[redis]")  # the app module is shared with the Redis adapter
    backend = "sqlite"
    results_note = "stored in the same SQLite file (synchronous=FULL, WAL)"
    notes = (
        "one SQLite file per run (fresh), shared by the producer and all worker processes",
        "measured with the event log on (`events=True`, ~3 events per task in a capped "
        "table); off, the default, is faster",
    )


ADAPTER = ConveyorSqlite()
