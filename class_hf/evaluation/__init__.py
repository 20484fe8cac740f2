"""Retrieval metrics, embedding helpers and plots."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "encoding": ["embed_molecules", "embed_pairs", "embed_texts"],
    "plots": ["plot_curves", "plot_sample_ratio"],
    "retrieval": ["confusion_counts", "metrics_from_ranks", "ranks", "retrieval_metrics"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .encoding import embed_molecules, embed_pairs, embed_texts
    from .plots import plot_curves, plot_sample_ratio
    from .retrieval import confusion_counts, metrics_from_ranks, ranks, retrieval_metrics
