"""The NATS event log: a stream with ``max_msgs`` = ``events_max`` (the server trims the
oldest), record ids are stream sequences, zero-padded so that they sort as text."""

from __future__ import annotations

from collections.abc import Sequence

import nats.js.errors
from nats.js import JetStreamContext

from conveyor.brokers.nats.names import Names

__all__ = ["NatsEventStore"]


class NatsEventStore:
    """A capped, shared log of encoded events in one stream."""

    def __init__(self, js: JetStreamContext, names: Names) -> None:
        self._js = js
        self._names = names

    async def append(self, records: Sequence[bytes]) -> None:
        for record in records:  # in order: each waits for its JetStream ack
            await self._js.publish(self._names.events_subject, record, stream=self._names.events)

    async def read(self, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        seq = int(after) + 1 if after else 1
        out: list[tuple[str, bytes]] = []
        while len(out) < limit:
            try:
                msg = await self._js.get_msg(
                    self._names.events, seq=seq, next=True, subject=self._names.events_subject
                )
            except nats.js.errors.NotFoundError:
                break
            assert msg.seq is not None
            out.append((f"{msg.seq:020d}", msg.data or b""))
            seq = msg.seq + 1
        return out

    async def recent(self, limit: int = 100) -> list[tuple[str, bytes]]:
        info = await self._js.stream_info(self._names.events)
        first, last = info.state.first_seq, info.state.last_seq
        start = max(first, last - limit + 1, 1)
        return await self.read(f"{start - 1:020d}" if start > 1 else "", limit)
