"""SQLAlchemy integration: a task enqueued inside an ``AsyncSession``'s transaction is
published when that transaction commits, and dropped when it rolls back, on brokers that
cannot write into your database (Redis, RabbitMQ, NATS, SQLite on another file, memory).

>>> async with session.begin():                                    # doctest: +SKIP
...     session.add(email)
...     await session.flush()
...     handle = await send_email.with_options(session=session).kiq(email.id)
...     handle.task_id          # known now; nothing is published yet
>>> # committed: the task is published before ``session.begin()``'s block returns

The same spelling on ``postgresql://`` writes the task in the transaction itself (see
docs/transactional-enqueue.md); this module is the fallback for every other broker.

How it holds:

- A held publish belongs to the innermost transaction open when ``kiq`` was called: the
  session's savepoint (``begin_nested()``) or its root transaction.
- A savepoint that is released hands its held publishes to its parent; one that rolls
  back drops them, and the outer transaction goes on.
- When the root transaction commits, its held publishes go out, in ``kiq`` order, before
  ``await session.commit()`` (or the ``session.begin()`` block) returns. A rollback, or a
  session closed without committing, drops them.

The window: the commit and the publish are two steps. A crash (or a broker error)
between them loses the publish, with the rows committed; the error is logged on
``conveyor.integrations.sqlalchemy`` with the task ids. The outbox has no such window.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util import await_only

from conveyor.errors import ConfigurationError

__all__ = ["hold_until_commit"]

log = logging.getLogger("conveyor.integrations.sqlalchemy")

Publish = Callable[[], Awaitable[object]]

_HELD = "conveyor.held"  # the key of a session's _Held in Session.info


@dataclass
class _Held:
    """The publishes a session holds, by the transaction they wait for."""

    by_transaction: dict[SessionTransaction, list[tuple[Publish, list[str]]]] = field(
        default_factory=dict
    )
    committing: bool = False  # after_commit seen; the next transaction to end committed


async def hold_until_commit(transaction: object, publish: Publish, task_ids: list[str]) -> None:
    """Run ``publish`` when ``transaction`` (an ``AsyncSession``) commits; never if it
    rolls back. ``send()`` calls it for ``task.with_options(session=...)`` on a broker
    without transactional publish."""
    if not isinstance(transaction, AsyncSession):
        raise ConfigurationError(
            "an enqueue held until commit needs a SQLAlchemy AsyncSession (session=...), "
            f"not {type(transaction).__name__}: an AsyncConnection has no after-commit event"
        )
    await transaction.connection()  # begins the transaction, as a statement would
    session = transaction.sync_session
    held = session.info.get(_HELD)
    if held is None:
        held = session.info[_HELD] = _Held()
        event.listen(session, "after_commit", _committed)
        event.listen(session, "after_transaction_end", _ended)
    current = session.get_nested_transaction() or session.get_transaction()
    assert current is not None  # connection() began one
    held.by_transaction.setdefault(current, []).append((publish, task_ids))


def _committed(session: Session) -> None:
    # fires for a released savepoint as for the root, just before its after_transaction_end
    session.info[_HELD].committing = True


def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None and not transaction.nested:
        return  # a flush's internal subtransaction: nothing is held on it
    held: _Held = session.info[_HELD]
    committed, held.committing = held.committing, False
    waiting = held.by_transaction.pop(transaction, None)
    if not waiting:
        return
    if not committed:
        log.debug("rolled back: dropped tasks %s", [i for _, ids in waiting for i in ids])
    elif transaction.parent is not None:  # a released savepoint: its parent decides
        held.by_transaction.setdefault(transaction.parent, []).extend(waiting)
    else:
        # inside AsyncSession's greenlet: wait for the publish on the session's event loop,
        # so the commit returns once the tasks are out
        await_only(_publish_all(waiting))


async def _publish_all(waiting: list[tuple[Publish, list[str]]]) -> None:
    outcomes = await asyncio.gather(*(publish() for publish, _ in waiting), return_exceptions=True)
    for (_, task_ids), outcome in zip(waiting, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            # raising here would leave the session in its committed, unclosed state
            log.error(
                "committed, but publishing tasks %s failed: they are lost (the after-commit "
                "window; the outbox has none)",
                task_ids,
                exc_info=outcome,
            )
