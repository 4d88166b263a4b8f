"""The JetStream layout of one prefix, in one place.

Names (``P`` is the prefix as a name token, ``q`` a queue, ``t`` a task id, each
:func:`token`-encoded):

=========================  ================  ==============================================
name                       kind              holds
=========================  ================  ==============================================
``P_tasks``                stream            work-queue retention, file storage,
                                             ``discard=new``; subjects ``P.q.<q>``
                                             (priority 0) and ``P.q.<q>.<n>`` (priority n)
consumer ``<q>``           durable pull      one per queue and priority level in use
(``<q>_p<n>``)                               (n != 0), shared by every worker;
                                             AckWait = the lease, MaxDeliver = backstop
``P_dlq``                  stream            dead letters: ``P.dlq.<q>.<t>`` (raw bytes,
                                             headers: reason, attempts, time, task id)
``P_events``               stream            the event log, ``max_msgs`` = events_max
``KV_P_jobs``              KV bucket         one record per live or dead task (records.py):
                                             state, attempts, lease token, abort mark
``KV_P_keys``              KV bucket         idempotency key -> task id (+ held until)
``KV_P_results``           KV bucket         ``r.<t>`` results, ``p.<t>`` progress
``KV_P_workers``           KV bucket         heartbeats
``KV_P_counts``            KV bucket         ``total``: task counts since counting began
``KV_P_count_minutes``     KV bucket         ``<minute start>``: task counts of a minute;
                                             TTL ``counts_kept`` + 60 s (counts.py)
``KV_P_schedules``         KV bucket         dynamic schedule specs
``KV_P_levels``            KV bucket         ``<q>.<n>``: the priority levels n != 0 that
                                             were ever published to queue q
``KV_P_workflows``         KV bucket         workflow records (workflows.py)
``KV_P_barriers``          KV bucket         group barriers: counts, callback, pending
``KV_P_slots``             KV bucket         ``<barrier>.<index>``: members' outcomes
``P.aborts``               core subject      the id of a running task that was aborted
=========================  ================  ==============================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Names", "token", "untoken"]

_PLAIN = re.compile(r"[A-Za-z0-9_-]+")


def token(text: str) -> str:
    """``text`` as one subject token, KV key, consumer and stream name piece: itself when
    it is plain (letters, digits, ``-``, ``_``), else ``=`` and its UTF-8 bytes in hex.

    >>> token("default"), token("a.b")
    ('default', '=612e62')
    """
    return text if _PLAIN.fullmatch(text) else "=" + text.encode().hex()


def untoken(name: str) -> str:
    """The text a :func:`token` stands for."""
    return bytes.fromhex(name[1:]).decode() if name.startswith("=") else name


@dataclass(frozen=True, slots=True)
class Names:
    """Stream, bucket and subject names for one prefix."""

    prefix: str = "conveyor"

    @property
    def p(self) -> str:
        # stream and bucket names allow no '=': an unusual prefix becomes hex
        return self.prefix if _PLAIN.fullmatch(self.prefix) else "x" + self.prefix.encode().hex()

    @property
    def tasks(self) -> str:
        return f"{self.p}_tasks"

    @property
    def dlq(self) -> str:
        return f"{self.p}_dlq"

    @property
    def events(self) -> str:
        return f"{self.p}_events"

    @property
    def events_subject(self) -> str:
        return f"{self.p}.events"

    @property
    def work_subjects(self) -> list[str]:
        return [f"{self.p}.q.*", f"{self.p}.q.*.*"]

    def queue_subject(self, queue: str, priority: int = 0) -> str:
        """The subject of one priority level of ``queue`` (level 0: the queue's own)."""
        base = f"{self.p}.q.{token(queue)}"
        return base if priority == 0 else f"{base}.{priority}"

    @staticmethod
    def consumer(queue: str, priority: int = 0) -> str:
        """The durable consumer of one priority level of ``queue``."""
        return token(queue) if priority == 0 else f"{token(queue)}_p{priority}"

    @staticmethod
    def level_key(queue: str, priority: int) -> str:
        return f"{token(queue)}.{priority}"

    @staticmethod
    def parse_level_key(key: str) -> tuple[str, int]:
        queue, level = key.rsplit(".", 1)
        return untoken(queue), int(level)

    @staticmethod
    def queue_of_subject(subject: str) -> str:
        """The queue of a work subject ``P.q.<q>[.<n>]`` (``P`` holds no dot)."""
        return untoken(subject.split(".")[2])

    def dlq_subject(self, queue: str, task_id: str) -> str:
        return f"{self.p}.dlq.{token(queue)}.{token(task_id)}"

    def dlq_queue_filter(self, queue: str | None) -> str:
        return f"{self.p}.dlq.{token(queue)}.*" if queue else f"{self.p}.dlq.>"

    def bucket(self, role: str) -> str:
        """``jobs``, ``keys``, ``results``, ``workers``, ``schedules``, ``levels``,
        ``counts``, ``count_minutes``, ``workflows``, ``barriers``, ``slots`` or ``flow``."""
        return f"{self.p}_{role}"

    @property
    def aborts(self) -> str:
        return f"{self.p}.aborts"

    def advisories(self) -> str:
        return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.tasks}.*"

    def result_key(self, task_id: str) -> str:
        return f"r.{token(task_id)}"

    def progress_key(self, task_id: str) -> str:
        return f"p.{token(task_id)}"
