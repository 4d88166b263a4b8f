"""Run the broker conformance suite against a broker class, without pytest.

Swap MemoryBroker for your own class to see which contracts it keeps. Takes ~6 s: the
checks use real sub-second leases and delays.

Run: python examples/conformance.py        (docs/brokers.md, docs/testing.md)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from conveyor.brokers.base import Broker, BrokerOptions
from conveyor.brokers.memory import MemoryBroker
from conveyor.testing.conformance import checks_for


@asynccontextmanager
async def factory(options: BrokerOptions) -> AsyncIterator[Broker]:
    """A fresh, empty, connected broker for each check."""
    broker = MemoryBroker("memory://", options)  # your broker: MyBroker(url, options)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.close()


async def main() -> int:
    failed = 0
    checks = checks_for(MemoryBroker.capabilities)  # the checks of what it says it can do
    for check in checks:
        started = time.monotonic()
        try:
            await check(factory)
        except AssertionError as exc:
            failed += 1
            print(f"FAIL {check.__name__}: {exc}")
        else:
            print(f"ok   {check.__name__} ({time.monotonic() - started:.2f}s)")
    print(f"{len(checks) - failed}/{len(checks)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
