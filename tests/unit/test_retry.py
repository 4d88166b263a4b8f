"""Backoff policies: true exponential growth, full jitter, caps."""

from __future__ import annotations

import random

import pytest

from conveyor import exponential, fixed, none


def test_exponential_without_jitter_doubles_up_to_the_cap() -> None:
    backoff = exponential(base=1.0, cap=10.0, jitter=False)
    assert [backoff(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_full_jitter_stays_within_zero_and_the_exponential_ceiling() -> None:
    backoff = exponential(base=0.5, cap=300.0, rng=random.Random(7))
    for attempt in range(1, 12):
        samples = [backoff(attempt) for _ in range(200)]
        ceiling = min(300.0, 0.5 * 2 ** (attempt - 1))
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # spread over the whole range, not clustered
        assert min(samples) < ceiling * 0.2


def test_fixed_and_none() -> None:
    assert fixed(3.0)(5) == 3.0
    assert none()(9) == 0.0
    with pytest.raises(ValueError, match="delay must be >= 0"):
        fixed(-1)
