"""``taskiq.abc.cmd``: the base class of a taskiq CLI subcommand.

A subclass works as a class (``MyCommand().exec(argv)``); the ``conveyor`` CLI does not
load ``taskiq_cli`` entry points, so run such a command from a script or a
``[project.scripts]`` entry of your own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

__all__ = ["TaskiqCMD"]


class TaskiqCMD(ABC):
    """A command: ``short_help`` describes it, ``exec(args)`` runs it."""

    short_help = ""

    @abstractmethod
    def exec(self, args: Sequence[str]) -> int | None:
        """Run the command with the command line ``args`` (after its name)."""
