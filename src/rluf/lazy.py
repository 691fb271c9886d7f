"""Lazy package exports: `import rluf.<stage>` stays cheap, torch and transformers load on first use.

The CLI imports every stage's `cli.py` to build `rluf --help`; without this, each command would pay for
importing torch, transformers and TRL before doing anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` that imports `exports[name]` (a submodule of `package`) on first access."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
