"""The Settler: every settlement of a worker goes through it, batched with the others of
the same event-loop turn into one broker call.

When the result store is not the broker's own, results are stored first and the delivery
is acked after, so a task is acked only once its result is safe; a delivery whose lease
was lost meanwhile gets no result written (a zombie's late result is discarded). The
results a workflow's settlement stores for tasks that will never run
(:attr:`Follow.results`) go the same way. A
settlement the broker refuses (a result over its size limit) is settled alone, so the
others of its batch are not refused with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from conveyor.batching import Batcher
from conveyor.brokers.base import (
    Ack,
    DeadLetter,
    Delivery,
    Outcome,
    Settlement,
    StoredResult,
    own_result_store,
)
from conveyor.errors import SettlementRefused

if TYPE_CHECKING:
    from conveyor.app import Conveyor

__all__ = ["Settler"]


class Settler:
    """Batches settlements; stores results first when the result store is elsewhere, so a
    task is acked only after its result is stored."""

    def __init__(self, app: Conveyor) -> None:
        self._broker = app.broker
        self._store = app.result_store
        self._colocated = self._store is own_result_store(self._broker)
        self._lease = app.settings.lease
        # two batches in flight at most: under load the next one gathers every settlement
        # made meanwhile (a slot frees when its body ends, so nobody waits on an ack)
        self._batcher: Batcher[Settlement, bool | SettlementRefused] = Batcher(
            self._flush, max_in_flight=2
        )

    async def settle(self, delivery: Delivery, outcome: Outcome) -> bool:
        """Settle (batched with others); raises :class:`SettlementRefused` if the broker
        refuses this one itself."""
        answer = await self._batcher.submit((delivery, outcome))
        if isinstance(answer, SettlementRefused):
            raise answer
        return answer

    async def _flush(self, batch: Sequence[Settlement]) -> list[bool | SettlementRefused]:
        try:
            return list(await self._settle_batch(batch))
        except SettlementRefused as refused:
            if len(batch) == 1:
                return [refused]
        # one item was refused: settle each alone, so the others are not refused with it
        answers: list[bool | SettlementRefused] = []
        for settlement in batch:
            try:
                answers += await self._settle_batch([settlement])
            except SettlementRefused as refused:
                answers.append(refused)
        return answers

    async def _settle_batch(self, batch: Sequence[Settlement]) -> list[bool]:
        if self._colocated:
            return await self._broker.settle(batch)
        # results live elsewhere: store them first (ack only after the result is safe), but
        # only for deliveries we still own, so a zombie's late result is not written
        with_results = [(d, rs) for d, o in batch if (rs := _results_of(o))]
        if with_results:
            owned = await self._broker.extend_leases([d for d, _ in with_results], self._lease)
            mine = [rs for (_, rs), ours in zip(with_results, owned, strict=True) if ours]
            keep = [result for results in mine for result in results]
            if keep:
                await self._store.put(keep)
        stripped: list[Settlement] = [(d, _without_result(o)) for d, o in batch]
        return await self._broker.settle(stripped)

    async def aclose(self) -> None:
        await self._batcher.aclose()


def _results_of(outcome: Outcome) -> list[StoredResult]:
    if not isinstance(outcome, Ack | DeadLetter):
        return []
    found = [outcome.result] if outcome.result is not None else []
    if outcome.follow is not None:
        found += outcome.follow.results
    return found


def _without_result(outcome: Outcome) -> Outcome:
    if not isinstance(outcome, Ack | DeadLetter):
        return outcome
    follow = outcome.follow
    if follow is not None and follow.results:
        follow = msgspec.structs.replace(follow, results=())
    if isinstance(outcome, Ack):
        return Ack(None, follow)
    return DeadLetter(outcome.reason, None, follow)
