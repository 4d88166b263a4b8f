"""Backoff policies: true exponential growth, full jitter, caps."""

from __future__ import annotations

import os
import random
import subprocess
import sys

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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_forked_workers_draw_different_jitter() -> None:
    """`conveyor worker` forks its workers from a supervisor that imported the app, and
    with it every task's backoff: each child must still draw its own delays. Run in a
    fresh, single-threaded interpreter, as the supervisor is."""
    code = (
        "import os\n"
        "from conveyor import exponential\n"
        "backoff = exponential(base=1.0, cap=300.0)\n"
        "backoff(1)\n"
        "draws = []\n"
        "for _ in range(2):\n"
        "    r, w = os.pipe()\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.write(w, repr([backoff(9) for _ in range(4)]).encode())\n"
        "        os._exit(0)\n"
        "    os.close(w)\n"
        "    draws.append(os.read(r, 4096).decode())\n"
        "    os.waitpid(pid, 0)\n"
        "print(draws[0] != draws[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out
