"""The app `test_dashboard_counts.py` runs under `conveyor worker`, with default settings."""

from __future__ import annotations

from conveyor import Conveyor

app = Conveyor()  # CONVEYOR_BROKER_URL from the test's environment


@app.task(name="settle_invoice")
async def settle_invoice(n: int) -> int:
    """Fails for good (no retries) for every tenth invoice."""
    if n % 10 == 0:
        raise ValueError(f"invoice {n} is disputed")
    return n
