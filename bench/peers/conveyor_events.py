"""Conveyor on Redis Streams with its event log on (``events=True``, what
``CONVEYOR_EVENTS=1`` does, and what the dashboard's task list and charts need): the cost
of the event log, against the ``conveyor`` peer (the default, log off)."""

from peers.conveyor import ConveyorRedis


class ConveyorRedisEvents(ConveyorRedis):
    name = "conveyor-events"
    label = "**conveyor**, event log on (Redis Streams)"
    app_module = "peers.conveyor_events_app"
    notes = (
        ConveyorRedis.notes[0],
        "event log on: `events=True` (as `CONVEYOR_EVENTS=1`, what the dashboard's task list "
        "and charts need); ~3 events per task appended in batches to a capped stream; "
        "otherwise the `conveyor` peer",
    )


ADAPTER = ConveyorRedisEvents()
