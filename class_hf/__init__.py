"""class-hf: CLASS curriculum training for cross-modal text-molecule retrieval on the Hugging Face stack.

Importing ``class_hf`` registers its backbones (``class_dual_encoder``, ``class_orma``, ``class_aman``) with
``transformers.AutoConfig`` / ``AutoModel``, so ``AutoModel.from_pretrained("org/name")`` loads CLASS checkpoints
without ``trust_remote_code``.
"""

__version__ = "0.1.0"

from .curriculum import (
    AdaptiveIntensity,
    CurriculumOrder,
    CurriculumSampler,
    FingerprintScorer,
    IntensityTarget,
    Pacing,
    PacingKind,
    add_difficulty_columns,
    compute_difficulty,
    get_pacing,
    planned_optimizer_steps,
    planned_sample_passes,
    sample_pass_saving,
)
from .curriculum.plan import CurriculumPlan
from .data import (
    MoleculeTextCollator,
    ValidationReport,
    featurize_molecules,
    fingerprint_matrix,
    load_chebi20,
    load_chebi20_molecules,
    resplit_by_cid,
    save_chebi20,
    smiles_to_graph,
    validate_pairs,
)
from .evaluation import confusion_counts, embed_pairs, plot_curves, plot_sample_ratio, ranks, retrieval_metrics
from .models import (
    AmanConfig,
    AmanModel,
    DualEncoderConfig,
    DualEncoderModel,
    OrmaConfig,
    OrmaModel,
    RetrievalOutput,
)
from .search import MoleculeIndex, SearchResult
from .trainer import CurriculumTrainer
from .training_args import CurriculumTrainingArguments

__all__ = [
    "AdaptiveIntensity",
    "AmanConfig",
    "AmanModel",
    "CurriculumOrder",
    "CurriculumPlan",
    "CurriculumSampler",
    "CurriculumTrainer",
    "CurriculumTrainingArguments",
    "DualEncoderConfig",
    "DualEncoderModel",
    "FingerprintScorer",
    "IntensityTarget",
    "MoleculeIndex",
    "MoleculeTextCollator",
    "OrmaConfig",
    "OrmaModel",
    "Pacing",
    "PacingKind",
    "RetrievalOutput",
    "SearchResult",
    "ValidationReport",
    "add_difficulty_columns",
    "compute_difficulty",
    "confusion_counts",
    "embed_pairs",
    "featurize_molecules",
    "fingerprint_matrix",
    "get_pacing",
    "load_chebi20",
    "load_chebi20_molecules",
    "planned_optimizer_steps",
    "planned_sample_passes",
    "plot_curves",
    "plot_sample_ratio",
    "ranks",
    "resplit_by_cid",
    "retrieval_metrics",
    "sample_pass_saving",
    "save_chebi20",
    "smiles_to_graph",
    "validate_pairs",
]
