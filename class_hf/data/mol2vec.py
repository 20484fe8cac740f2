"""mol2vec atom identifiers: the ``mol2vec_index`` graph column of ORMA's ``atom_features="mol2vec"``.

Text2Mol's graphs name every atom by its Morgan (ECFP) identifier at radius 1, the tokens of mol2vec's sentences;
ORMA embeds them with Text2Mol's frozen 300-d mol2vec table. :class:`Mol2VecIndexer` rebuilds those ids from the
SMILES with RDKit (``Dataset.map``), against the vocabulary of the table's ``.npz``
(:func:`load_mol2vec_embeddings`). :mod:`class_hf.data.features` adds the column whenever a model needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .graphs import MOL2VEC_COLUMN

__all__ = [
    "MOL2VEC_UNK",
    "Mol2VecIndexer",
    "load_mol2vec_embeddings",
    "mol2vec_atom_identifiers",
    "mol2vec_atom_indices",
]

MOL2VEC_UNK = "UNK"


def load_mol2vec_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Reads Text2Mol's mol2vec token embeddings from an ``.npz`` (no pickle).

    Args:
        path (str | Path): file with ``tokens`` (str ``[V]``, Morgan identifiers as decimal strings and ``"UNK"``) and
            ``vectors`` (float ``[V, dim]``), e.g. ``token_embeddings.npz`` of the ChEBI-20 data folder.

    Returns:
        tuple[list[str], np.ndarray]: the tokens and the float32 vectors, row ``i`` for token ``i``.
    """
    with np.load(path, allow_pickle=False) as data:
        missing = {"tokens", "vectors"} - set(data.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)}; it needs `tokens` and `vectors`.")
        tokens = [str(t) for t in data["tokens"]]
        vectors = np.asarray(data["vectors"], dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(tokens):
        raise ValueError(f"{path}: `vectors` must be [{len(tokens)}, dim] (one row per token), got {vectors.shape}.")
    if MOL2VEC_UNK not in tokens:
        raise ValueError(f"{path} has no {MOL2VEC_UNK!r} token, needed for identifiers outside the vocabulary.")
    return tokens, vectors


def mol2vec_atom_identifiers(mol) -> list[str]:
    """The mol2vec substructure identifier of every atom: its Morgan identifier at radius 1.

    Text2Mol's ``mol_graphs`` name each node by one Morgan (ECFP) identifier; radius-1 identifiers are what mol2vec's
    sentences hold, and 99.5 % of the atoms of the ChEBI-20 fixture molecules find theirs in Text2Mol's vocabulary.
    An atom whose radius-1 environment RDKit drops as a duplicate (e.g. in a diatomic molecule) or that has no
    neighbour gets its radius-0 identifier.

    Args:
        mol (rdkit.Chem.Mol): the molecule, atoms in the order of the graph's ``x``.

    Returns:
        list[str]: decimal identifiers, one per atom.
    """
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=1)
    output = rdFingerprintGenerator.AdditionalOutput()
    output.AllocateBitInfoMap()
    generator.GetSparseCountFingerprint(mol, additionalOutput=output)
    by_atom: dict[int, dict[int, int]] = {}
    for identifier, environments in output.GetBitInfoMap().items():
        for atom, radius in environments:
            by_atom.setdefault(atom, {})[radius] = identifier
    identifiers = []
    for atom in range(mol.GetNumAtoms()):
        found = by_atom.get(atom, {})
        identifiers.append(str(found.get(1, found.get(0))))
    return identifiers


def mol2vec_atom_indices(smiles: str, vocabulary: Mapping[str, int]) -> list[int]:
    """Row of the mol2vec table for every atom of ``smiles`` (``UNK`` for identifiers outside the vocabulary).

    Args:
        smiles (str): the molecule (parsed with ``Chem.MolFromSmiles``, hence the atom order of the graph columns).
        vocabulary (Mapping[str, int]): identifier -> row, holding ``"UNK"``.

    Returns:
        list[int]: one index per atom.
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) else None
    finally:
        RDLogger.EnableLog("rdApp.*")
    if mol is None:
        raise ValueError(f"Could not parse SMILES {smiles!r} for mol2vec identifiers; fix or remove this molecule.")
    unk = vocabulary[MOL2VEC_UNK]
    return [vocabulary.get(identifier, unk) for identifier in mol2vec_atom_identifiers(mol)]


class Mol2VecIndexer:
    """``Dataset.map`` function adding the ``mol2vec_index`` graph column that ``atom_features="mol2vec"`` needs.

    This rebuilds the node tokens of Text2Mol's ``mol_graphs`` (which ORMA read) from the SMILES with RDKit: a
    reconstruction, not the original files (which are not available here).

    Args:
        embeddings_path (str | Path): the mol2vec ``.npz`` (see :func:`load_mol2vec_embeddings`); use the same file as
            the model's ``mol2vec_embeddings_path``.
        smiles_column (str): column holding the SMILES.

    Example::

        >>> dataset = dataset.map(Mol2VecIndexer("token_embeddings.npz"), num_proc=4)
        >>> len(dataset[0]["mol2vec_index"]) == dataset[0]["num_nodes"]
        True
    """

    column = MOL2VEC_COLUMN

    def __init__(self, embeddings_path: str | Path, smiles_column: str = "smiles") -> None:
        tokens, _ = load_mol2vec_embeddings(embeddings_path)
        self.vocabulary = {token: i for i, token in enumerate(tokens)}
        self.smiles_column = smiles_column

    def __call__(self, row: Mapping[str, Any]) -> dict[str, list]:
        """Indices for one row, or for a batch of rows (``Dataset.map(..., batched=True)``)."""
        if self.smiles_column not in row:
            raise ValueError(f"The row has no {self.smiles_column!r} column; set `smiles_column` (has {sorted(row)}).")
        smiles = row[self.smiles_column]
        if isinstance(smiles, str):
            return {self.column: mol2vec_atom_indices(smiles, self.vocabulary)}
        return {self.column: [mol2vec_atom_indices(s, self.vocabulary) for s in smiles]}
