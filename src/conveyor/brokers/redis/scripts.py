"""The Lua scripts, loaded once, each with lib.lua prepended, and their typed stubs.

Each stub builds the script's ARGV from typed values; the contract of every script is
the header comment of its file in ``lua/``.
"""

from __future__ import annotations

import pkgutil

__all__ = ["SCRIPT_NAMES", "load_sources", "lua_source"]

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
    "take_token",
    "acquire_permit",
    "renew_permits",
)


def load_sources() -> dict[str, str]:
    """Script name -> full Lua source (lib.lua, workflows.lua, then the script)."""
    lib = (
        lua_source("conveyor.brokers.redis", "lib")
        + "\n"
        + lua_source("conveyor.brokers.redis", "workflows")
    )
    return {name: lib + "\n" + lua_source("conveyor.brokers.redis", name) for name in SCRIPT_NAMES}


def lua_source(package: str, name: str) -> str:
    """The text of ``lua/<name>.lua`` in ``package``."""
    # pkgutil, not importlib.resources: the same zip-safe read without importing zipfile
    # and tempfile (9 ms of a worker's start-up)
    data = pkgutil.get_data(package, f"lua/{name}.lua")
    assert data is not None, name
    return data.decode("utf-8")
