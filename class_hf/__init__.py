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
    "curriculum.sampler": ["CurriculumOrder", "CurriculumSampler"],
    "data.chebi20": [
        "ValidationReport",
        "load_chebi20",
        "load_chebi20_molecules",
        "resplit_by_cid",
        "save_chebi20",
        "validate_pairs",
    ],
    "data.collator": ["MoleculeTextCollator"],
    "data.graphs": ["featurize_molecules", "fingerprint_matrix", "smiles_to_graph"],
    "evaluation.encoding": ["embed_pairs"],
    "evaluation.plots": ["plot_curves", "plot_sample_ratio"],
    "evaluation.retrieval": ["confusion_counts", "ranks", "retrieval_metrics"],
    "models.aman": ["AmanModel"],
    "models.configuration_aman": ["AmanConfig"],
    "models.configuration_dual_encoder": ["DualEncoderConfig"],
    "models.configuration_orma": ["OrmaConfig"],
    "models.dual_encoder": ["DualEncoderModel"],
    "models.orma": ["OrmaModel"],
    "models.outputs": ["RetrievalOutput"],
    "search.index": ["MoleculeIndex", "SearchResult"],
    "trainer": ["CurriculumPlan", "CurriculumTrainer"],
    "training_args": ["CurriculumTrainingArguments"],
}
_SUBMODULES = ["cli", "curriculum", "data", "evaluation", "hub", "model_card", "models", "recipe", "search"]
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)

if TYPE_CHECKING:
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
    from .curriculum.sampler import CurriculumOrder, CurriculumSampler
    from .data.chebi20 import (
        ValidationReport,
        load_chebi20,
        load_chebi20_molecules,
        resplit_by_cid,
        save_chebi20,
        validate_pairs,
    )
    from .data.collator import MoleculeTextCollator
    from .data.graphs import featurize_molecules, fingerprint_matrix, smiles_to_graph
    from .evaluation.encoding import embed_pairs
    from .evaluation.plots import plot_curves, plot_sample_ratio
    from .evaluation.retrieval import confusion_counts, ranks, retrieval_metrics
    from .models.aman import AmanModel
    from .models.configuration_aman import AmanConfig
    from .models.configuration_dual_encoder import DualEncoderConfig
    from .models.configuration_orma import OrmaConfig
    from .models.dual_encoder import DualEncoderModel
    from .models.orma import OrmaModel
    from .models.outputs import RetrievalOutput
    from .search.index import MoleculeIndex, SearchResult
    from .trainer import CurriculumPlan, CurriculumTrainer
    from .training_args import CurriculumTrainingArguments

register_backbones()
