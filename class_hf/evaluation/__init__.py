"""Retrieval evaluation: metrics (:mod:`.retrieval`), the evaluator (:mod:`.evaluator`), encoding and plots.

The names are imported on first use, so that importing one submodule (e.g. the scoring functions the backbones use)
does not pull in matplotlib or ``datasets``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "encoding": ["embed_molecules", "embed_pairs", "embed_texts"],
    "evaluator": ["RetrievalEvaluator"],
    "plots": ["plot_curves", "plot_sample_ratio"],
    "retrieval": [
        "confusion_counts",
        "cosine_scores",
        "metrics_from_ranks",
        "rank_metrics",
        "ranks",
        "retrieval_metrics",
        "top_k",
    ],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .encoding import embed_molecules, embed_pairs, embed_texts
    from .evaluator import RetrievalEvaluator
    from .plots import plot_curves, plot_sample_ratio
    from .retrieval import (
        confusion_counts,
        cosine_scores,
        metrics_from_ranks,
        rank_metrics,
        ranks,
        retrieval_metrics,
        top_k,
    )
