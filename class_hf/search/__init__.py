"""Retrieval in use: molecule indexes, search and case reports (``class-hf index`` / ``search`` / ``cases``)."""

from __future__ import annotations

from .index import MoleculeIndex, SearchResult
from .library import read_molecules

__all__ = ["MoleculeIndex", "SearchResult", "read_molecules"]
