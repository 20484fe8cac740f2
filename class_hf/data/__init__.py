"""ChEBI-20 loading, molecule graphs and the batch collator."""

from .chebi20 import (
    ValidationIssue,
    ValidationReport,
    load_chebi20,
    load_chebi20_molecules,
    resplit_by_cid,
    save_chebi20,
    validate_pairs,
)
from .collator import MoleculeTextCollator
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

__all__ = [
    "ATOM_FEATURES",
    "ATOM_FEATURE_DIMS",
    "BOND_FEATURES",
    "BOND_FEATURE_DIMS",
    "MoleculeGraph",
    "MoleculeTextCollator",
    "ValidationIssue",
    "ValidationReport",
    "featurize_molecules",
    "fingerprint_matrix",
    "load_chebi20",
    "load_chebi20_molecules",
    "motif_decomposition",
    "parse_smiles",
    "resplit_by_cid",
    "rows_to_batch",
    "save_chebi20",
    "smiles_to_graph",
    "validate_pairs",
]
