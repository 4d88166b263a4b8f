"""Run the broker suites against a broker URL, without pytest.

Swap the URL for your broker's (its scheme registered with register_broker) to see which
contracts it keeps: the conformance checks, then the behaviour checks (a real worker on
the broker), of the capabilities its class declares. Takes ~13 s: the checks use real
sub-second leases and delays.

Run: python examples/conformance.py        (docs/write-a-broker.md, docs/testing.md)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

from conveyor.brokers import broker_class_for
from conveyor.testing.behaviour import app_factory, behaviour_checks_for
from conveyor.testing.conformance import broker_factory, checks_for


def fresh_url() -> str:
    """A URL whose broker starts empty: each memory:// broker does. For a broker on a
    server, a new namespace each time: f"mybroker://host/?prefix=check-{uuid4().hex}"."""
    return "memory://"


async def passes(name: str, run: Awaitable[None]) -> bool:
    started = time.monotonic()
    try:
        await run
    except AssertionError as exc:
        print(f"FAIL {name}: {exc}")
        return False
    print(f"ok   {name} ({time.monotonic() - started:.2f}s)")
    return True


async def main() -> int:
    # the checks make tasks fail and kill their workers on purpose: the warnings are
    # expected, and so is the one error line of the poison task they dead-letter
    logging.getLogger("conveyor").setLevel(logging.ERROR)
    capabilities = broker_class_for(fresh_url()).capabilities  # what the class declares
    results = [
        await passes(check.__name__, check(broker_factory(fresh_url())))
        for check in checks_for(capabilities)
    ]
    results += [
        await passes(check.__name__, check(app_factory(fresh_url())))
        for check in behaviour_checks_for(capabilities)
    ]
    print(f"{sum(results)}/{len(results)} checks passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
