"""``app`` for ``conveyor outbox relay tests.integration.outbox_relay_app:app``; run as a
script, a relay process for tests/integration/test_outbox.py that SIGKILLs itself right
after its ``KILL_AFTER``-th batch is published and before that batch's DELETE commits:
the worst moment for an outbox relay to die.

Environment: ``BROKER_URL``, ``OUTBOX_DSN``, ``OUTBOX_SCHEMA``, ``KILL_AFTER``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence

from conveyor import Conveyor
from conveyor.brokers.base import Outgoing
from conveyor.outbox import Outbox, OutboxRelay

app = Conveyor(os.environ.get("BROKER_URL", "memory://"), environ={})


async def main() -> None:
    relay = OutboxRelay(
        app, os.environ["OUTBOX_DSN"], Outbox(schema=os.environ["OUTBOX_SCHEMA"]), batch_size=10
    )
    kill_after = int(os.environ["KILL_AFTER"])
    async with app:
        publish = app.broker.publish
        published = 0

        async def publish_then_die(batch: Sequence[Outgoing]) -> list[str]:
            nonlocal published
            ids = await publish(batch)
            published += 1
            print("published", *[o.task_id for o in batch], flush=True)
            if published == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            return ids

        app.broker.publish = publish_then_die  # type: ignore[method-assign]
        await relay.serve()


if __name__ == "__main__":
    asyncio.run(main())
