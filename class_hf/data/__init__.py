"""ChEBI-20 loading, molecule graphs and features, the batch collator, data sources."""

from .chebi20 import (
    ValidationIssue,
    ValidationReport,
    load_chebi20,
    load_chebi20_molecules,
    resplit_by_cid,
    save_chebi20,
    undouble_backslashes,
    validate_pairs,
)
from .collator import MoleculeTextCollator
from .features import MoleculeFeatures, collator_for_model
from .graphs import (
    ATOM_FEATURE_DIMS,
    ATOM_FEATURES,
    BOND_FEATURE_DIMS,
    BOND_FEATURES,
    MoleculeGraph,
    featurize_molecules,
    fingerprint_matrix,
    motif_decomposition,
    parse_smiles,
    rows_to_batch,
    smiles_to_graph,
)
from .mol2vec import Mol2VecIndexer
from .sources import is_hub_id, is_saved_dataset, load_data

__all__ = [
    "ATOM_FEATURES",
    "ATOM_FEATURE_DIMS",
    "BOND_FEATURES",
    "BOND_FEATURE_DIMS",
    "Mol2VecIndexer",
    "MoleculeFeatures",
    "MoleculeGraph",
    "MoleculeTextCollator",
    "ValidationIssue",
    "ValidationReport",
    "collator_for_model",
    "featurize_molecules",
    "fingerprint_matrix",
    "is_hub_id",
    "is_saved_dataset",
    "load_chebi20",
    "load_chebi20_molecules",
    "load_data",
    "motif_decomposition",
    "parse_smiles",
    "resplit_by_cid",
    "rows_to_batch",
    "save_chebi20",
    "smiles_to_graph",
    "undouble_backslashes",
    "validate_pairs",
]
