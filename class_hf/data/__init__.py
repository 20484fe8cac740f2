"""ChEBI-20 loading, molecule graphs and features, frozen text features, the batch collator, data sources."""

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
        "undouble_backslashes",
        "validate_pairs",
        "ValidationIssue",
        "ValidationReport",
    ],
    "collator": ["MoleculeTextCollator"],
    "features": ["MoleculeFeatures", "collator_for_model"],
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
    "mol2vec": ["Mol2VecIndexer"],
    "sources": ["is_hub_id", "is_saved_dataset", "load_data"],
    "text_features": ["add_text_features"],
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
    from .text_features import add_text_features
