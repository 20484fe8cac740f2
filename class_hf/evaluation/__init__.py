"""Retrieval metrics, embedding helpers and plots."""

from .encoding import embed_molecules, embed_pairs, embed_texts
from .plots import plot_curves, plot_sample_ratio
from .retrieval import confusion_counts, metrics_from_ranks, ranks, retrieval_metrics

__all__ = [
    "confusion_counts",
    "embed_molecules",
    "embed_pairs",
    "embed_texts",
    "metrics_from_ranks",
    "plot_curves",
    "plot_sample_ratio",
    "ranks",
    "retrieval_metrics",
]
