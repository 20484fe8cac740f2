"""Lazy package exports: a name is imported from its module the first time it is used (PEP 562).

Each package's ``__init__`` lists its public names per defining module in one dict, and repeats the same imports
under ``if TYPE_CHECKING:`` for type checkers and IDEs; ``tests/test_lazy_imports.py`` keeps the two equal. So
``import class_hf`` costs next to nothing, and ``from class_hf import CurriculumTrainer`` imports the trainer (and
torch) only then, as ``transformers`` does with its ``_LazyModule``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Module-level ``__getattr__``, ``__dir__`` and ``__all__`` for a package with lazily imported exports.

    Args:
        package (str): the package's ``__name__``.
        exports (Mapping[str, Iterable[str]]): relative module name (``"data.chebi20"``) -> the public names it
            defines.
        submodules (Iterable[str]): subpackages reachable as attributes (``class_hf.models``) without an import.

    Returns:
        tuple: ``(__getattr__, __dir__, __all__)`` for the package's namespace.
    """
    where = {name: module for module, names in exports.items() for name in names}
    submodules = tuple(submodules)

    def __getattr__(name: str) -> Any:
        if name in where:
            value = getattr(importlib.import_module(f".{where[name]}", package), name)
        elif name in submodules:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where) | set(submodules))

    return __getattr__, __dir__, sorted(where)
