"""The one change a migrating team makes to taskiq code: its imports, and its commands.

A mechanical module-prefix rewrite of ``import`` and ``from ... import`` statements
(found with :mod:`ast`, so strings, comments and docstrings are never touched) and of
``taskiq worker``/``taskiq scheduler`` command lines:

- ``from taskiq.abc.middleware import X`` -> ``from conveyor.compat.taskiq.abc.middleware import X``
- ``import taskiq_fastapi`` -> ``import conveyor.compat.taskiq_fastapi as taskiq_fastapi``
  (the ``as`` keeps the name the code uses bound, which is what the original import did)
- ``import taskiq.api`` -> ``import conveyor.compat.taskiq.api; from conveyor.compat import taskiq``
  (again: the original bound ``taskiq`` to the package, with the submodule loaded)
- ``taskiq worker pkg:broker ...`` -> ``conveyor worker pkg:broker ...``

Everything else in a file stays byte for byte the same, line numbers included.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Sequence
from pathlib import Path

__all__ = ["MODULES", "rewrite_command", "rewrite_source", "rewrite_tree"]

PREFIX = "conveyor.compat."
MODULES = ("taskiq", "taskiq_redis", "taskiq_fastapi", "taskiq_aio_pika", "taskiq_nats")
COMMANDS = ("worker", "scheduler")


def _mapped(module: str) -> str | None:
    """``module`` under conveyor.compat when it is one of :data:`MODULES` or below one."""
    top = module.split(".", 1)[0]
    return PREFIX + module if top in MODULES else None


def _import_text(node: ast.Import) -> str | None:
    """The rewritten text of an ``import a, b.c as d`` statement, or None if unchanged."""
    parts: list[str] = []
    binds: list[str] = []
    changed = False
    for alias in node.names:
        target = _mapped(alias.name)
        if target is None:
            parts.append(alias.name if alias.asname is None else f"{alias.name} as {alias.asname}")
            continue
        changed = True
        if alias.asname is not None:
            parts.append(f"{target} as {alias.asname}")
        elif "." not in alias.name:
            parts.append(f"{target} as {alias.name}")
        else:  # ``import taskiq.api`` binds ``taskiq``, with ``taskiq.api`` loaded
            parts.append(target)
            top = alias.name.split(".", 1)[0]
            binds.append(f"from {PREFIX.rstrip('.')} import {top}")
    if not changed:
        return None
    return "; ".join([f"import {', '.join(parts)}", *binds])


def _offset(line_starts: list[int], lineno: int, col: int) -> int:
    return line_starts[lineno - 1] + col


def rewrite_source(source: str) -> str:
    """``source`` with every import of :data:`MODULES` moved under ``conveyor.compat``."""
    tree = ast.parse(source)
    # Statement offsets are counted in UTF-8 bytes; work on bytes to splice exactly.
    data = source.encode()
    line_starts = [0]
    for line in data.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    edits: list[tuple[int, int, bytes]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            target = _mapped(node.module)
            if target is None:
                continue
            start = _offset(line_starts, node.lineno, node.col_offset)
            end = _offset(line_starts, node.end_lineno or node.lineno, node.end_col_offset or 0)
            segment = data[start:end]
            name = node.module.encode()
            at = segment.find(name, len(b"from"))
            if at < 0:  # ``from taskiq .abc import``: spaces inside the dotted name
                raise ValueError(f"cannot rewrite import at line {node.lineno}: {segment!r}")
            edits.append((start + at, start + at + len(name), target.encode()))
        elif isinstance(node, ast.Import):
            text = _import_text(node)
            if text is None:
                continue
            start = _offset(line_starts, node.lineno, node.col_offset)
            end = _offset(line_starts, node.end_lineno or node.lineno, node.end_col_offset or 0)
            edits.append((start, end, text.encode()))
    for start, end, replacement in sorted(edits, reverse=True):
        data = data[:start] + replacement + data[end:]
    return data.decode()


def rewrite_tree(source: Path, target: Path) -> list[Path]:
    """Copy ``source`` to ``target``, rewriting every ``.py`` file; the rewritten paths."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    changed: list[Path] = []
    for path in sorted(target.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        new = rewrite_source(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def rewrite_command(argv: Sequence[str]) -> list[str]:
    """``taskiq worker ...``/``taskiq scheduler ...`` as the same ``conveyor`` command."""
    args = list(argv)
    if len(args) >= 2 and Path(args[0]).name == "taskiq" and args[1] in COMMANDS:
        return [str(Path(args[0]).with_name("conveyor")), *args[1:]]
    return args
