"""Old names kept for one release: a module's ``__getattr__`` that warns and hands out the new one.

    __getattr__ = old_names(__name__, {"JobConfig": "m2fp_batch.pipeline.config:JobSettings"})

Torch-free and Ray-free; imports nothing of the package, so any module can use it.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable

__all__ = ["old_names"]


def old_names(module: str, table: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``table``: old name -> ``"new.module:new_name"``."""

    def __getattr__(name: str) -> object:
        if name not in table:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target, _, new = table[name].partition(":")
        warnings.warn(
            f"{module}.{name} is now {target}.{new}; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(target), new)

    return __getattr__
