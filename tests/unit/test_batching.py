"""The Batcher: calls made in one loop turn share one flush, and every caller gets an
answer or an error, never silence."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from conveyor.batching import Batcher
from conveyor.errors import BrokerUnavailable, PartialPublish


async def test_calls_in_one_loop_turn_share_one_flush_and_get_their_own_answer() -> None:
    flushes: list[list[int]] = []

    async def double(batch: Sequence[int]) -> list[int]:
        flushes.append(list(batch))
        return [2 * n for n in batch]

    batcher: Batcher[int, int] = Batcher(double)
    answers = await asyncio.gather(*(batcher.submit(n) for n in range(5)))
    assert answers == [0, 2, 4, 6, 8]
    assert flushes == [[0, 1, 2, 3, 4]]
    assert await batcher.submit(7) == 14  # alone: a batch of one, at once
    assert flushes[-1] == [7]


async def test_a_batch_is_cut_at_max_batch() -> None:
    sizes: list[int] = []

    async def count(batch: Sequence[int]) -> list[int]:
        sizes.append(len(batch))
        return list(batch)

    batcher: Batcher[int, int] = Batcher(count, max_batch=3)
    await asyncio.gather(*(batcher.submit(n) for n in range(7)))
    assert sizes == [3, 3, 1]


async def test_a_failing_flush_fails_every_caller_of_its_batch() -> None:
    async def broken(batch: Sequence[int]) -> list[int]:
        raise ConnectionError("broker down")

    batcher: Batcher[int, int] = Batcher(broken)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError] * 3


async def test_a_partly_published_batch_answers_each_caller_for_its_own_item() -> None:
    """PartialPublish: the callers whose item went through get their answer, the others
    the error that stopped theirs (so none retries an enqueue that landed)."""
    lost = BrokerUnavailable("connection lost")

    async def half(batch: Sequence[str]) -> list[str]:
        raise PartialPublish("1 of 2", [batch[0], lost])

    batcher: Batcher[str, str] = Batcher(half)
    outcomes = await asyncio.gather(
        batcher.submit("a"), batcher.submit("b"), return_exceptions=True
    )
    assert outcomes == ["a", lost]


@pytest.mark.parametrize("answer", [[], [1], [1, 2, 3, 4]], ids=["none", "fewer", "more"])
async def test_a_wrong_number_of_answers_fails_every_caller_instead_of_leaving_them_pending(
    answer: list[int],
) -> None:
    async def miscounts(batch: Sequence[int]) -> list[int]:
        return answer

    batcher: Batcher[int, int] = Batcher(miscounts)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(n) for n in range(3)), return_exceptions=True), 5
    )
    assert all(isinstance(r, RuntimeError) for r in results), results
    assert "answered" in str(results[0]) and "for a batch of 3" in str(results[0])


async def test_aclose_waits_for_the_batches_in_flight() -> None:
    gate = asyncio.Event()
    done: list[int] = []

    async def slow(batch: Sequence[int]) -> list[int]:
        await gate.wait()
        done.extend(batch)
        return list(batch)

    batcher: Batcher[int, int] = Batcher(slow)
    pending = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)  # sleep: one turn of the loop, and the flush has started
    closing = asyncio.ensure_future(batcher.aclose())
    await asyncio.sleep(0)  # sleep: one turn of the loop, and aclose() is waiting
    assert not closing.done()
    gate.set()
    await closing
    assert done == [1] and await pending == 1
