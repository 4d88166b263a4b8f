"""Lease renewal on an OS thread that a blocked event loop cannot starve.

Every ``lease / 3`` seconds the renewer extends the lease of every delivery the worker
holds, through the broker's :class:`~conveyor.brokers.base.LeaseKeeper` (its own
connection). A task that blocks the event loop, or a sync task that holds the GIL in
bursts, still gets its lease renewed, so it is not handed to a second worker
(reliability.md §4.6.4, Dramatiq #692).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from conveyor.brokers.base import Delivery, LeaseKeeper

__all__ = ["LeaseRenewer"]

log = logging.getLogger("conveyor.worker")


class LeaseRenewer:
    """Owns the renewal thread; ``start()`` and ``stop()`` bracket the worker's life."""

    def __init__(
        self,
        keeper_factory: Callable[[], LeaseKeeper],
        held: dict[Delivery, None],
        lease: float,
        on_lost: Callable[[Delivery], None],
        interval: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keeper_factory = keeper_factory
        self._held = held
        self._lease = lease
        self._interval = interval if interval is not None else max(lease / 3.0, 0.01)
        self._on_lost = on_lost
        self._monotonic = monotonic  # the worker's clock: Delivery.lease_until is on it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conveyor-lease", daemon=True)
        self.renewals = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        keeper: LeaseKeeper | None = None
        try:
            while not self._stop.wait(self._interval):
                deliveries = list(self._held.copy())  # dict.copy is atomic under the GIL
                if not deliveries:
                    continue
                asked = self._monotonic()
                try:
                    if keeper is None:
                        keeper = self._keeper_factory()
                    owned = keeper.renew(deliveries, self._lease)
                except Exception:
                    # a broker hiccup: try again next tick with a fresh connection
                    log.warning("lease renewal failed; retrying", exc_info=True)
                    _close_quietly(keeper)
                    keeper = None
                    continue
                self.renewals += 1
                for delivery, still_ours in zip(deliveries, owned, strict=True):
                    if still_ours:
                        delivery.lease_until = asked + self._lease
                    else:
                        self._on_lost(delivery)
        finally:
            _close_quietly(keeper)


def _close_quietly(keeper: LeaseKeeper | None) -> None:
    if keeper is not None:
        try:
            keeper.close()
        except Exception:
            log.debug("closing the lease keeper failed", exc_info=True)
