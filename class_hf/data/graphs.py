"""Molecule graphs from SMILES with RDKit, stored as `datasets` columns.

Atom and bond features are categorical indices into the explicit vocabularies below (as PyG's
``torch_geometric.utils.smiles`` does), with one extra "other" index per feature for values outside the
vocabulary, so that they feed embedding tables directly.
"""

from __future__ import annotations

# Vocabularies: each feature's value is its position in the list; a value not in the list maps to len(list)
# ("other"). ATOM_FEATURE_DIMS / BOND_FEATURE_DIMS give the embedding-table sizes (vocabulary + "other").
ATOM_FEATURES: dict[str, list] = {
    "atomic_num": list(range(0, 119)),
    "chirality": ["CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW", "CHI_OTHER"],
    "degree": list(range(0, 11)),
    "formal_charge": list(range(-5, 6)),
    "num_hs": list(range(0, 9)),
    "num_radical_electrons": list(range(0, 5)),
    "hybridization": ["UNSPECIFIED", "S", "SP", "SP2", "SP3", "SP3D", "SP3D2"],
    "is_aromatic": [False, True],
    "is_in_ring": [False, True],
}
BOND_FEATURES: dict[str, list] = {
    "bond_type": ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC"],
    "stereo": ["STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY"],
    "is_conjugated": [False, True],
}
ATOM_FEATURE_DIMS: list[int] = [len(v) + 1 for v in ATOM_FEATURES.values()]
BOND_FEATURE_DIMS: list[int] = [len(v) + 1 for v in BOND_FEATURES.values()]
