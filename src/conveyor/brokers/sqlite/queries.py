"""The SQL the SQLite broker runs: ``schema.sql`` and the named statements of ``queries.sql``.

``queries.sql`` holds one block per statement, in procrastinate's style::

    -- ack --
    -- Finish a delivery we still own by deleting its message; returns its idempotency key.
    DELETE FROM tasks WHERE ...;

:data:`QUERIES` exposes them as attributes, so a misspelt name fails type checking, and
loading fails at import when the file and :class:`Queries` disagree.

>>> QUERIES.ack.startswith("DELETE FROM tasks")
True
"""

from __future__ import annotations

import pkgutil
import re
from dataclasses import dataclass, fields

__all__ = ["QUERIES", "SCHEMA", "SCHEMA_VERSION", "Queries", "parse_queries", "read_sql"]

# 2: tasks.crashes; 3: no schedule_ticks table; 4: tasks.abort_requested; 5: the task_counts
# and task_count_minutes tables; 6: tasks.workflow and the workflows, barriers and
# barrier_slots tables; 7: the flow_buckets, flow_permits and flow_marks tables. Older
# files are upgraded in place.
SCHEMA_VERSION = 7

_HEADER = re.compile(r"^-- ([a-z_]+) --$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Queries:
    """Every named statement of ``queries.sql``; see the file for what each one does."""

    take_seq: str
    find_key: str
    publish: str
    hold_key: str
    promote: str
    fetch: str
    spend_lease_token: str
    next_due: str
    ack: str
    finish_key: str
    retry: str
    dead_letter: str
    release: str
    extend_lease: str
    reap: str
    spend_seq: str
    abort: str
    mark_abort: str
    abort_marks: str
    locate: str
    locate_dead: str
    queue_depths: str
    dead_depths: str
    list_dead_letters: str
    get_dead_letter: str
    requeue_dead: str
    delete_dead: str
    delete_all_dead: str
    heartbeat: str
    workers: str
    put_result: str
    get_result: str
    delete_result: str
    set_progress: str
    get_progress: str
    delete_progress: str
    purge_results: str
    purge_progress: str
    purge_keys: str
    purge_workers: str
    save_schedule: str
    delete_schedule: str
    load_schedules: str
    count_total: str
    count_minute: str
    forget_count_minutes: str
    count_totals: str
    count_minutes: str
    save_workflow: str
    open_barrier: str
    join_slot: str
    count_join: str
    fire_barrier: str
    seal_barrier: str
    get_barrier: str
    barrier_results: str
    workflow_state: str
    finish_workflow: str
    abort_workflow: str
    workflow_tasks: str
    get_workflow: str
    list_workflows: str
    count_workflows: str
    purge_workflows: str
    purge_barrier_slots: str
    purge_barriers: str
    get_bucket: str
    put_bucket: str
    drop_expired_permits: str
    count_permits: str
    hold_permit: str
    renew_permit: str
    release_permit: str
    put_mark: str
    get_mark: str
    purge_marks: str

    def purges(self) -> tuple[str, ...]:
        """The statements that delete expired rows, for periodic maintenance."""
        return (
            self.purge_results,
            self.purge_progress,
            self.purge_keys,
            self.purge_workers,
            self.purge_workflows,
            self.purge_barrier_slots,  # before their barriers: they are found by them
            self.purge_barriers,
            self.purge_marks,
        )


def parse_queries(text: str) -> dict[str, tuple[str, str]]:
    """Split a named-query file into ``{name: (description, sql)}``.

    >>> parse_queries("-- one --\\n-- The first.\\nSELECT 1;\\n")
    {'one': ('The first.', 'SELECT 1')}
    """
    parsed: dict[str, tuple[str, str]] = {}
    headers = list(_HEADER.finditer(text))
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        lines = text[header.end() : end].strip().splitlines()
        description: list[str] = []
        while lines and lines[0].startswith("--"):
            description.append(lines.pop(0).removeprefix("--").strip())
        sql = "\n".join(lines).strip().removesuffix(";").strip()
        name = header.group(1)
        if not description or not sql:
            raise ValueError(f"query {name!r} needs a description line and a statement")
        if name in parsed:
            raise ValueError(f"query {name!r} is defined twice")
        parsed[name] = (" ".join(description), sql)
    return parsed


def read_sql(name: str) -> str:
    """The text of ``name`` in this package."""
    # pkgutil, not importlib.resources: the same zip-safe read without importing zipfile
    # and tempfile (9 ms of a worker's start-up)
    data = pkgutil.get_data("conveyor.brokers.sqlite", name)
    assert data is not None, name
    return data.decode("utf-8")


def _load() -> Queries:
    parsed = parse_queries(read_sql("queries.sql"))
    expected = {f.name for f in fields(Queries)}
    if set(parsed) != expected:
        missing = ", ".join(sorted(expected - set(parsed))) or "none"
        extra = ", ".join(sorted(set(parsed) - expected)) or "none"
        raise RuntimeError(f"queries.sql does not match Queries: missing {missing}; extra {extra}")
    return Queries(**{name: sql for name, (_, sql) in parsed.items()})


SCHEMA = read_sql("schema.sql")
QUERIES = _load()
