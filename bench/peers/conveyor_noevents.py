"""Conveyor on Redis Streams with its event log off (``events=False``, what
``CONVEYOR_EVENTS=0`` does): the cost of the event log, against the ``conveyor`` peer."""

from peers.conveyor import ConveyorRedis


class ConveyorRedisNoEvents(ConveyorRedis):
    name = "conveyor-noevents"
    label = "**conveyor**, event log off (Redis Streams)"
    app_module = "peers.conveyor_noevents_app"
    notes = (
        ConveyorRedis.notes[0],
        "event log off: `events=False` (as `CONVEYOR_EVENTS=0`); otherwise the `conveyor` peer",
    )


ADAPTER = ConveyorRedisNoEvents()
