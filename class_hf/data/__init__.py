"""ChEBI-20 loading, molecule graphs and the batch collator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "chebi20": [
        "BUNDLED",
        "bundled_chebi20_dir",
        "load_chebi20",
        "load_chebi20_molecules",
        "resplit_by_cid",
        "save_chebi20",
        "validate_pairs",
        "ValidationIssue",
        "ValidationReport",
    ],
    "collator": ["MoleculeTextCollator"],
    "graphs": [
        "ATOM_FEATURE_DIMS",
        "ATOM_FEATURES",
        "BOND_FEATURE_DIMS",
        "BOND_FEATURES",
        "featurize_molecules",
        "fingerprint_matrix",
        "MoleculeGraph",
        "motif_decomposition",
        "parse_smiles",
        "rows_to_batch",
        "smiles_to_graph",
    ],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .chebi20 import (
        BUNDLED,
        ValidationIssue,
        ValidationReport,
        bundled_chebi20_dir,
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
