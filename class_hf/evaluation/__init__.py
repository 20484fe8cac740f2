"""Retrieval evaluation: metrics (:mod:`.retrieval`), the evaluator (:mod:`.evaluator`), encoding and plots.

The names below are imported on first use (PEP 562), so that importing one submodule, e.g. the scoring functions the
backbones use, does not pull in matplotlib or ``datasets``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RetrievalEvaluator": "evaluator",
    "confusion_counts": "retrieval",
    "cosine_scores": "retrieval",
    "embed_molecules": "encoding",
    "embed_pairs": "encoding",
    "embed_texts": "encoding",
    "metrics_from_ranks": "retrieval",
    "plot_curves": "plots",
    "plot_sample_ratio": "plots",
    "rank_metrics": "retrieval",
    "ranks": "retrieval",
    "retrieval_metrics": "retrieval",
    "top_k": "retrieval",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
