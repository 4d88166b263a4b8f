"""Workflows: chains, groups and chords of tasks, with fan-in in the broker
(docs/workflows.md).

:mod:`~conveyor.workflow.canvas` builds them, :mod:`~conveyor.workflow.plan` turns them
into messages (on the producer, and in the worker as each task ends),
:mod:`~conveyor.workflow.start` sends one, :mod:`~conveyor.workflow.handle` reads, waits
for and aborts one.
"""

from conveyor.workflow.canvas import Canvas as Canvas
from conveyor.workflow.canvas import Chain as Chain
from conveyor.workflow.canvas import Chord as Chord
from conveyor.workflow.canvas import Group as Group
from conveyor.workflow.canvas import Signature as Signature
from conveyor.workflow.canvas import chain as chain
from conveyor.workflow.canvas import chord as chord
from conveyor.workflow.canvas import group as group

__all__ = ["Canvas", "Chain", "Chord", "Group", "Signature", "chain", "chord", "group"]
