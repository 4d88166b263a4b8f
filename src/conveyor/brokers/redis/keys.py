"""The Redis key layout, in one place.

Every key of one queue shares the hash tag ``{prefix:queue}``, so each script touches a
single slot and the layout works on Redis Cluster. Keys that are not per queue (results,
workers, schedules) live under the bare prefix; on a cluster the broker writes them
outside the queue scripts, in the order ``cluster.py`` describes.

==============================  =========  =================================================
key                             type       holds
==============================  =========  =================================================
{p:q}:s:<priority>              stream     ready and leased messages (fields i=id, b=body)
{p:q}:s:front                   stream     recovered work (reaped, released): read first
{p:q}:prios                     zset       the priority levels in use (score = priority;
                                           "front" scores +inf)
{p:q}:delayed                   zset       task ids waiting for their time (score = due ms)
{p:q}:dlq                       stream     dead letters (i, b, r=reason, a=attempts, t=ms)
{p:q}:job:<task id>             hash       q, s=state, a=attempts, p=priority, k=key,
                                           kt=key ttl ms, e=stream entry, b=body (delayed),
                                           d=dlq entry (dead), r=crashes in a row,
                                           x=1 once aborted while running
{p:q}:key:<idempotency key>     string     the task id that owns the key
{p:q}:idle                      string     set (PX) while a cluster worker waits for work
{p:q}:wake                      channel    sharded (SPUBLISH): work arrived (cluster.py)
p:queues                        set        every queue name seen
p:result:<task id>              string     the encoded Result (PX = result ttl)
p:progress:<task id>            string     the latest progress snapshot
p:waiting:<task id>             string     set while a producer waits (PUBLISH only then)
p:results                       channel    "<len>:<task id><result>" when a waited result lands
p:aborts                        channel    the task id, when a running task is aborted
p:delays                        channel    "<due ms> <tag>" when a delayed message becomes
                                           its queue's earliest (wakeup.py)
p:workers / p:workers:expiry    hash/zset  heartbeat records and their expiry
p:schedules                     hash       dynamic schedule specs
p:events                        stream     the event log (field e = one encoded event),
                                           MAXLEN ~ events_max
{p}:counts                      hash       task counts since counting began (counts.py):
                                           field ["task","queue","status"] -> count
{p}:counts:<minute start>       hash       the same for one minute, EXPIREAT its end +
                                           counts_kept
p:wf:<workflow id>              hash       a workflow's record: s=state, c=created, f=ended,
                                           t=ttl, i=info, x=failed task (PEXPIREAT)
p:wf:<workflow id>:tasks        set        its tasks the broker holds (SREM as they end)
p:workflows:<state>             zset       workflow ids by when their record expires (ms)
p:bar:<barrier id>              hash       a group's barrier: w, n=size, j=joined,
                                           f=failed, ff, x=fired, pt=partial, t=ttl ms, and
                                           its callback (ci, cq, cb, cp, ck, ckt)
p:bar:<barrier id>:r            hash       member index -> its outcome
{p:q}:job:<task id> field w     -          the workflow the task belongs to
p:flow:rate:<key>               hash       a token bucket: t=tokens, u=ms counted at
p:flow:permits:<key>            zset       a semaphore: holder -> ms its lease ends
p:mark:<name>                   string     a flow mark (debounce's latest task, a
                                           deferred task's reason), PX = its ttl
==============================  =========  =================================================

The workflow keys' scripts and fields are described in ``lua/workflows.lua``.
"""

from __future__ import annotations

import msgspec

__all__ = ["Keys"]


class Keys(msgspec.Struct, frozen=True):
    """Key names for one prefix."""

    prefix: str = "conveyor"

    @property
    def group(self) -> str:
        return f"{self.prefix}-workers"

    def tag(self, queue: str) -> str:
        return f"{{{self.prefix}:{queue}}}"

    def stream(self, queue: str, priority: int | str) -> str:
        """The stream of one priority level; ``"front"`` is recovered work, read first."""
        return f"{self.tag(queue)}:s:{priority}"

    def priorities(self, queue: str) -> str:
        return f"{self.tag(queue)}:prios"

    def delayed(self, queue: str) -> str:
        return f"{self.tag(queue)}:delayed"

    def dlq(self, queue: str) -> str:
        return f"{self.tag(queue)}:dlq"

    def job(self, queue: str, task_id: str) -> str:
        return f"{self.tag(queue)}:job:{task_id}"

    @property
    def queues(self) -> str:
        return f"{self.prefix}:queues"

    def result(self, task_id: str) -> str:
        return f"{self.prefix}:result:{task_id}"

    def progress(self, task_id: str) -> str:
        return f"{self.prefix}:progress:{task_id}"

    def waiting(self, task_id: str) -> str:
        return f"{self.prefix}:waiting:{task_id}"

    @property
    def results_channel(self) -> str:
        return f"{self.prefix}:results"

    @property
    def aborts_channel(self) -> str:
        return f"{self.prefix}:aborts"

    @property
    def delays(self) -> str:
        return f"{self.prefix}:delays"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def workers_expiry(self) -> str:
        return f"{self.prefix}:workers:expiry"

    @property
    def schedules(self) -> str:
        return f"{self.prefix}:schedules"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def counts(self) -> str:
        """The task count totals; ``{prefix}``: one slot with every minute's hash."""
        return f"{{{self.prefix}}}:counts"

    def counts_minute(self, minute: int) -> str:
        return f"{{{self.prefix}}}:counts:{minute}"

    def bucket(self, key: str) -> str:
        return f"{self.prefix}:flow:rate:{key}"

    def permits(self, key: str) -> str:
        return f"{self.prefix}:flow:permits:{key}"

    def mark(self, name: str) -> str:
        return f"{self.prefix}:mark:{name}"
