"""The rule catalogue (see ``catalogue``). Importing this package loads every rule module."""

from __future__ import annotations

import importlib
import pkgutil

from grader.grading.rules.catalogue import Rule, register, registered

__all__ = ["Rule", "all_rules", "get", "register"]


def _load() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "catalogue":
            importlib.import_module(f"{__name__}.{mod.name}")


def all_rules() -> dict[str, Rule]:
    _load()
    return dict(sorted(registered().items()))


def get(rule_id: str) -> Rule:
    return all_rules()[rule_id]
