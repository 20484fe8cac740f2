"""The CLASS method: difficulty, pacing, the curriculum plan and sampler, and adaptive intensity. Backbone-agnostic."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "callback": ["CurriculumCallback"],
    "difficulty": ["add_difficulty_columns", "compute_difficulty", "difficulty_from_counts", "score_with_model"],
    "fingerprint_scorer": ["FingerprintScorer"],
    "intensity": ["AdaptiveIntensity", "IntensityTarget", "sample_weights"],
    "pacing": [
        "get_pacing",
        "Pacing",
        "PacingKind",
        "planned_optimizer_steps",
        "planned_sample_passes",
        "sample_pass_saving",
    ],
    "plan": ["CurriculumPlan"],
    "provider": ["DifficultyProvider"],
    "pruning": ["LearnedPairPruning"],
    "sampler": ["CurriculumBatchSampler", "CurriculumOrder", "CurriculumSampler"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .callback import CurriculumCallback
    from .difficulty import add_difficulty_columns, compute_difficulty, difficulty_from_counts, score_with_model
    from .fingerprint_scorer import FingerprintScorer
    from .intensity import AdaptiveIntensity, IntensityTarget, sample_weights
    from .pacing import (
        Pacing,
        PacingKind,
        get_pacing,
        planned_optimizer_steps,
        planned_sample_passes,
        sample_pass_saving,
    )
    from .plan import CurriculumPlan
    from .provider import DifficultyProvider
    from .pruning import LearnedPairPruning
    from .sampler import CurriculumBatchSampler, CurriculumOrder, CurriculumSampler
