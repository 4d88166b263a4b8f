"""How taskiq's loosely typed options reach Conveyor, for the modules of this package.

Conveyor labels are strings, so taskiq label values are converted with ``_label``;
taskiq transport options Conveyor has no use for are logged by ``_note_ignored``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__: list[str] = []

# the package's one logger, named after the public module users configure
log = logging.getLogger("conveyor.compat.taskiq")


def _label(value: Any) -> str:
    """Conveyor labels are strings; taskiq's may be numbers and booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _note_ignored(owner: str, options: Mapping[str, Any]) -> None:
    if options:
        log.info(
            "%s: ignoring taskiq transport option(s) %s; Conveyor tunes its own connections "
            "(see docs/migrating-from-taskiq.md)",
            owner,
            ", ".join(sorted(options)),
        )
