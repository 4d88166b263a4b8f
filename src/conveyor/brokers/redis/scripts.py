"""The Lua scripts, loaded once, each with lib.lua prepended, and their typed stubs.

Each stub builds the script's ARGV from typed values; the contract of every script is
the header comment of its file in ``lua/``.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["SCRIPT_NAMES", "load_sources"]

SCRIPT_NAMES = (
    "publish",
    "fetch",
    "start",
    "ack",
    "retry",
    "dead_letter",
    "release",
    "extend_lease",
    "reap",
    "requeue_dead",
    "delete_dead",
    "abort",
    "open_workflow",
    "seal_barrier",
    "follow",
    "abort_workflow",
)


def load_sources() -> dict[str, str]:
    """Script name -> full Lua source (lib.lua, workflows.lua, then the script)."""
    folder = resources.files("conveyor.brokers.redis") / "lua"
    lib = (folder / "lib.lua").read_text() + "\n" + (folder / "workflows.lua").read_text()
    return {name: lib + "\n" + (folder / f"{name}.lua").read_text() for name in SCRIPT_NAMES}
