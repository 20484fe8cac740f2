"""class-hf: CLASS curriculum training for cross-modal text-molecule retrieval on the Hugging Face stack.

The public API is imported lazily: ``import class_hf`` imports neither torch nor transformers, and each name below is
imported from its module the first time it is used (``class_hf.CurriculumTrainer`` imports the trainer then).

Importing ``class_hf`` registers its backbones (``class_dual_encoder``, ``class_orma``, ``class_aman``) with
``transformers.AutoConfig`` / ``AutoModel``, so ``AutoModel.from_pretrained("org/name")`` loads CLASS checkpoints
without ``trust_remote_code`` (see :mod:`class_hf.models.auto_registration`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from .models.auto_registration import register_backbones

__version__ = "0.1.0"

_EXPORTS = {
    "curriculum.callback": ["CurriculumCallback"],
    "curriculum.difficulty": ["add_difficulty_columns", "compute_difficulty"],
    "curriculum.fingerprint_scorer": ["FingerprintScorer"],
    "curriculum.intensity": ["AdaptiveIntensity", "IntensityTarget"],
    "curriculum.pacing": [
        "Pacing",
        "PacingKind",
        "get_pacing",
        "planned_optimizer_steps",
        "planned_sample_passes",
        "sample_pass_saving",
    ],
    "curriculum.plan": ["CurriculumPlan"],
    "curriculum.provider": ["DifficultyProvider"],
    "curriculum.sampler": ["CurriculumBatchSampler", "CurriculumOrder", "CurriculumSampler"],
    "data.chebi20": [
        "ValidationReport",
        "load_chebi20",
        "load_chebi20_molecules",
        "resplit_by_cid",
        "save_chebi20",
        "undouble_backslashes",
        "validate_pairs",
    ],
    "data.collator": ["MoleculeTextCollator"],
    "data.features": ["MoleculeFeatures"],
    "data.graphs": ["featurize_molecules", "fingerprint_matrix", "smiles_to_graph"],
    "data.sources": ["is_hub_id", "load_data"],
    "data.text_features": ["add_text_features"],
    "evaluation.encoding": ["embed_pairs"],
    "evaluation.evaluator": ["RetrievalEvaluator", "metrics_by_pool"],
    "evaluation.plots": ["plot_curves", "plot_sample_ratio"],
    "evaluation.retrieval": [
        "confusion_counts",
        "cosine_scores",
        "rank_metrics",
        "ranks",
        "retrieval_metrics",
        "top_k",
    ],
    "models.base": ["RetrievalBackbone", "RetrievalPreTrainedModel"],
    "models.configuration_aman": ["AmanConfig"],
    "models.configuration_dual_encoder": ["DualEncoderConfig"],
    "models.configuration_orma": ["OrmaConfig"],
    "models.modeling_aman": ["AmanModel"],
    "models.modeling_dual_encoder": ["DualEncoderModel"],
    "models.modeling_orma": ["OrmaModel"],
    "models.outputs": ["RetrievalOutput"],
    "models.registry": ["BACKBONES", "Backbone", "get_backbone", "load_backbone"],
    "recipe.run": ["RecipeRun"],
    "search.index": ["MoleculeIndex", "SearchResult"],
    "trainer": ["CurriculumTrainer"],
    "training_args": ["CurriculumTrainingArguments"],
}
_SUBMODULES = ["cli", "curriculum", "data", "evaluation", "hub", "model_card", "models", "recipe", "search"]
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)

if TYPE_CHECKING:
    from .curriculum.callback import CurriculumCallback
    from .curriculum.difficulty import add_difficulty_columns, compute_difficulty
    from .curriculum.fingerprint_scorer import FingerprintScorer
    from .curriculum.intensity import AdaptiveIntensity, IntensityTarget
    from .curriculum.pacing import (
        Pacing,
        PacingKind,
        get_pacing,
        planned_optimizer_steps,
        planned_sample_passes,
        sample_pass_saving,
    )
    from .curriculum.plan import CurriculumPlan
    from .curriculum.provider import DifficultyProvider
    from .curriculum.sampler import CurriculumBatchSampler, CurriculumOrder, CurriculumSampler
    from .data.chebi20 import (
        ValidationReport,
        load_chebi20,
        load_chebi20_molecules,
        resplit_by_cid,
        save_chebi20,
        undouble_backslashes,
        validate_pairs,
    )
    from .data.collator import MoleculeTextCollator
    from .data.features import MoleculeFeatures
    from .data.graphs import featurize_molecules, fingerprint_matrix, smiles_to_graph
    from .data.sources import is_hub_id, load_data
    from .data.text_features import add_text_features
    from .evaluation.encoding import embed_pairs
    from .evaluation.evaluator import RetrievalEvaluator, metrics_by_pool
    from .evaluation.plots import plot_curves, plot_sample_ratio
    from .evaluation.retrieval import confusion_counts, cosine_scores, rank_metrics, ranks, retrieval_metrics, top_k
    from .models.base import RetrievalBackbone, RetrievalPreTrainedModel
    from .models.configuration_aman import AmanConfig
    from .models.configuration_dual_encoder import DualEncoderConfig
    from .models.configuration_orma import OrmaConfig
    from .models.modeling_aman import AmanModel
    from .models.modeling_dual_encoder import DualEncoderModel
    from .models.modeling_orma import OrmaModel
    from .models.outputs import RetrievalOutput
    from .models.registry import BACKBONES, Backbone, get_backbone, load_backbone
    from .recipe.run import RecipeRun
    from .search.index import MoleculeIndex, SearchResult
    from .trainer import CurriculumTrainer
    from .training_args import CurriculumTrainingArguments

register_backbones()
