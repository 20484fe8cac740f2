"""Retrieval in use: molecule indexes, search and case reports (``class-hf index`` / ``search`` / ``cases``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "index": ["MoleculeIndex", "SearchResult"],
    "library": ["read_molecules"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .index import MoleculeIndex, SearchResult
    from .library import read_molecules
