"""Check reporting for probe scripts (copied beside them into each run's directory).

``with check("name"):`` runs the block; it prints one ``COMPAT-CHECK {json}`` line that
says whether the block raised, and with what. The exception is swallowed, so the next
check still runs. Plain Python: no taskiq import, so it is the same on both sides.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["blocked", "check", "report"]


def report(name: str, ok: bool, detail: str = "") -> None:
    # the real stdout: a probe may have redirected sys.stdout to read what a task prints
    line = "COMPAT-CHECK " + json.dumps({"name": name, "ok": ok, "detail": detail})
    print(line, file=sys.__stdout__, flush=True)


@contextmanager
def check(name: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if isinstance(exc, AssertionError) and str(exc):
            detail = f"AssertionError: {exc}"
        else:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            detail += f"  (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
        print(f"--- {name} failed:", file=sys.__stderr__)
        traceback.print_exc(file=sys.__stderr__)
        report(name, False, detail)
    else:
        report(name, True)


def blocked(names: list[str], by: str) -> None:
    """Report ``names`` as failed because an earlier step (``by``) failed."""
    for name in names:
        report(name, False, f"not reached: {by} failed")
