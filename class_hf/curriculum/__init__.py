"""The CLASS method: difficulty, pacing, the curriculum plan and sampler, and adaptive intensity. Backbone-agnostic."""

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
from .sampler import CurriculumBatchSampler, CurriculumOrder, CurriculumSampler

__all__ = [
    "AdaptiveIntensity",
    "CurriculumBatchSampler",
    "CurriculumCallback",
    "CurriculumOrder",
    "CurriculumPlan",
    "CurriculumSampler",
    "DifficultyProvider",
    "FingerprintScorer",
    "IntensityTarget",
    "Pacing",
    "PacingKind",
    "add_difficulty_columns",
    "compute_difficulty",
    "difficulty_from_counts",
    "get_pacing",
    "planned_optimizer_steps",
    "planned_sample_passes",
    "sample_pass_saving",
    "sample_weights",
    "score_with_model",
]
