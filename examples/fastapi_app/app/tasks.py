"""The Conveyor app and its tasks. Workers run them:

    conveyor worker app.tasks:conveyor_app --with-scheduler

``init()`` binds the workers to the FastAPI app: a worker imports ``app.main`` when it
starts and runs the API's lifespan (``db.database``) for as long as it runs, so tasks get
their sessions from the same ``get_db_session`` as the routes.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import get_db_session
from app.models import Report, SentEmail
from app.settings import settings
from conveyor import Context, Conveyor, Depends, cron
from conveyor.integrations.fastapi import init

conveyor_app = Conveyor(settings.broker_url)
init(conveyor_app, "app.main:api")  # a string: app.main imports this module

EMBEDDING_DIMENSIONS = 64
REPORT_STEPS = ("loading orders", "aggregating", "rendering charts", "writing the summary")
REPORT_STEP_SECONDS = 0.5

# Injected parameters are written with a default, `= Depends(...)`, rather than as
# Annotated[AsyncSession, Depends(...)] (the routes' DbSession): a parameter without a
# default is one a type checker expects the caller to pass, and `send_email.kiq(user_id)`
# would not type-check.


# An SMTP or HTTP error from a mail service is an OSError: retried. A missing row is not.
@conveyor_app.task(retries=3, retry_on=(OSError,))
async def send_email(email_id: int, db: AsyncSession = Depends(get_db_session)) -> int:
    """Send the email recorded as ``email_id`` and mark it delivered; returns its id. The
    route enqueues it with the row, in one transaction, so the row is always there."""
    email = await db.get(SentEmail, email_id)
    if email is None:
        raise LookupError(f"email {email_id} does not exist")
    # a real app hands the message to its mail service here, then records the delivery
    email.delivered_at = datetime.now(UTC)
    await db.commit()
    return email.id


@conveyor_app.task
def generate_embedding(text: str) -> list[float]:
    """A unit vector for ``text``. A real app calls its embedding model here; this one
    hashes words into buckets, so it is deterministic and needs no model. A plain ``def``
    task runs in the worker's thread pool, where CPU-bound work belongs."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in text.lower().split():
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % EMBEDDING_DIMENSIONS
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


@conveyor_app.task(timeout=60)
async def process_report(
    report_id: int,
    db: AsyncSession = Depends(get_db_session),
    ctx: Context = Depends(),
) -> dict[str, Any]:
    """Build report ``report_id`` in steps, publishing progress that GET /tasks/{id}
    shows while it runs."""
    report = await db.get(Report, report_id)
    if report is None:
        raise LookupError(f"report {report_id} does not exist")
    for done, step in enumerate(REPORT_STEPS):
        await ctx.progress(done / len(REPORT_STEPS), step)
        await asyncio.sleep(REPORT_STEP_SECONDS)  # stands in for the step's real work
    report.summary = f"{report.title}: {len(REPORT_STEPS)} sections"
    report.finished_at = datetime.now(UTC)
    await db.commit()
    return {"report_id": report.id, "summary": report.summary}


@conveyor_app.task(schedule=[cron("0 * * * *", id="cleanup-expired")])
async def cleanup_expired(db: AsyncSession = Depends(get_db_session)) -> int:
    """Every hour, on the hour: delete sent emails and finished reports older than the
    retention. Returns how many rows went."""
    cutoff = datetime.now(UTC) - settings.retention
    emails = await db.execute(delete(SentEmail).where(SentEmail.sent_at < cutoff))
    reports = await db.execute(delete(Report).where(Report.finished_at < cutoff))
    await db.commit()
    return int(emails.rowcount + reports.rowcount)  # type: ignore[attr-defined]
