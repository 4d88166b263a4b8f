"""The SQL the PostgreSQL broker runs: the named statements of ``queries.sql``, bound to
one schema.

``queries.sql`` is written against the placeholders ``{schema}`` (the quoted schema) and
``{channel}`` (the prefix of the NOTIFY channels); :func:`queries_for` substitutes both,
so every statement is schema-qualified and also runs on a connection that is not ours
(transactional enqueue, where ``search_path`` is the application's).

>>> queries_for("app").fetch.startswith("WITH picked AS")
True
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, fields
from importlib import resources

from conveyor.brokers.sqlite.queries import parse_queries

__all__ = ["SCHEMA_NAME", "Queries", "channel", "queries_for", "quoted"]

SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
"""What a schema (``?prefix=``) may be: an identifier PostgreSQL keeps as given."""


@dataclass(frozen=True, slots=True)
class Queries:
    """Every named statement of ``queries.sql``; see the file for what each one does."""

    publish: str
    hold_key: str
    find_key: str
    fetch: str
    next_due: str
    finish: str
    retry: str
    release: str
    extend_lease: str
    reap: str
    lock_task: str
    abort: str
    finish_key: str
    mark_abort: str
    abort_marks: str
    locate: str
    queue_depths: str
    list_dead_letters: str
    get_dead_letter: str
    requeue_dead: str
    delete_dead: str
    delete_all_dead: str
    heartbeat: str
    workers: str
    put_results: str
    get_result: str
    delete_result: str
    set_progress: str
    get_progress: str
    purge: str
    save_schedule: str
    delete_schedule: str
    load_schedules: str
    append_events: str
    trim_events: str
    read_events: str
    recent_events: str
    record_counts: str
    count_totals: str
    count_minutes: str
    save_workflow: str
    open_barrier: str
    join: str
    fire_barrier: str
    seal_barrier: str
    get_barrier: str
    barrier_results: str
    workflow_state: str
    finish_workflow: str
    lock_workflow: str
    abort_workflow: str
    workflow_tasks: str
    get_workflow: str
    list_workflows: str
    count_workflows: str
    fill_bucket: str
    take_token: str
    lock_permits: str
    drop_permits: str
    acquire_permit: str
    renew_permits: str
    release_permits: str
    put_marks: str
    get_marks: str


def quoted(schema: str) -> str:
    """The schema as a quoted identifier (it was checked against :data:`SCHEMA_NAME`)."""
    return f'"{schema}"'


def channel(schema: str, kind: str) -> str:
    """The NOTIFY channel of ``kind`` (``queue``, ``result``, ``abort``) for a schema."""
    return f"{schema}:{kind}"


def substitute(sql: str, schema: str) -> str:
    """``sql`` with ``{schema}`` and ``{channel}`` filled in for ``schema``."""
    return sql.replace("{schema}", quoted(schema)).replace("{channel}", schema)


@functools.lru_cache(maxsize=64)
def _text() -> dict[str, tuple[str, str]]:
    text = resources.files("conveyor.brokers.postgres").joinpath("queries.sql").read_text("utf-8")
    parsed = parse_queries(text)
    expected = {f.name for f in fields(Queries)}
    if set(parsed) != expected:
        missing = ", ".join(sorted(expected - set(parsed))) or "none"
        extra = ", ".join(sorted(set(parsed) - expected)) or "none"
        raise RuntimeError(f"queries.sql does not match Queries: missing {missing}; extra {extra}")
    return parsed


@functools.lru_cache(maxsize=64)
def queries_for(schema: str) -> Queries:
    """The statements bound to ``schema``."""
    return Queries(**{name: substitute(sql, schema) for name, (_, sql) in _text().items()})
