"""The public API is one file: __all__ is sorted, complete, and every name resolves."""

from __future__ import annotations

import importlib
import pkgutil

import conveyor


def test_all_is_sorted_and_resolves() -> None:
    assert list(conveyor.__all__) == sorted(conveyor.__all__)
    for name in conveyor.__all__:
        assert hasattr(conveyor, name), name


def test_every_public_name_is_exported() -> None:
    public = {
        name
        for name, value in vars(conveyor).items()
        if not name.startswith("_") and not isinstance(value, type(conveyor))
    }
    assert public == set(conveyor.__all__)


def test_every_public_module_declares_all() -> None:
    missing = []
    for info in pkgutil.walk_packages(conveyor.__path__, "conveyor."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        if not info.ispkg and not hasattr(module, "__all__"):
            missing.append(info.name)
    assert missing == []


def test_readme_names_the_design_entry_points() -> None:
    for name in ("Conveyor", "Context", "Depends", "exponential"):
        assert name in conveyor.__all__
