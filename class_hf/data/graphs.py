"""Molecule graphs from SMILES with RDKit, stored as `datasets` columns.

Atom and bond features are categorical indices into the explicit vocabularies below (as PyG's
``torch_geometric.utils.smiles`` does), with one extra "other" index per feature for values outside the
vocabulary, so that they feed embedding tables directly.

Columns added by :func:`featurize_molecules` (see CONTRIBUTING.md, "Data"):

- ``x`` ``[num_atoms, 9]``: one index per :data:`ATOM_FEATURES` entry, in the dict's order;
- ``edge_index`` ``[2, num_edges]``: every bond in both directions, sorted by (source, target);
- ``edge_attr`` ``[num_edges, 3]``: one index per :data:`BOND_FEATURES` entry, aligned with ``edge_index``;
- ``atom2motif`` ``[num_atoms]`` and ``num_motifs``: the ORMA motif of every atom (see :func:`motif_decomposition`);
- ``num_nodes``: the number of atoms;
- with ``fingerprints=True``: ``fp_index`` and ``fp_count``, the non-zero bits of the folded Morgan count fingerprint
  (radius 2, 2048 bits) and their counts.

RDKit is imported inside the functions that need it, and its log is muted only while they run
(:func:`rdkit_logs_muted`), never for the whole process.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict, Features, List, Value
from torch_geometric.data import Batch, Data
from torch_geometric.utils import cumsum

logger = logging.getLogger(__name__)

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

FINGERPRINT_RADIUS = 2
FINGERPRINT_DIM = 2048

GRAPH_COLUMNS: tuple[str, ...] = ("x", "edge_index", "edge_attr", "atom2motif", "num_motifs", "num_nodes")
# The graph columns that rows_to_batch reads (num_nodes is implied by x).
BATCH_COLUMNS: tuple[str, ...] = ("x", "edge_index", "edge_attr", "atom2motif", "num_motifs")
FINGERPRINT_COLUMNS: tuple[str, ...] = ("fp_index", "fp_count")
MOL2VEC_COLUMN = "mol2vec_index"
"""Optional per-atom column of mol2vec vocabulary ids, carried into the batch as ``graph.mol2vec_index``."""


def graph_features(fingerprints: bool = False) -> Features:
    """The `datasets` features of the columns that :func:`featurize_molecules` adds.

    Args:
        fingerprints (bool, optional): include ``fp_index`` / ``fp_count``. (default: ``False``)

    Returns:
        Features: ``x``, ``edge_index``, ``edge_attr`` as ``List(List(int64))``, ``atom2motif`` as ``List(int64)``,
        ``num_motifs`` and ``num_nodes`` as ``int64``, plus the fingerprint columns as ``List(int64)``.
    """
    features = {
        "x": List(List(Value("int64"))),
        "edge_index": List(List(Value("int64"))),
        "edge_attr": List(List(Value("int64"))),
        "atom2motif": List(Value("int64")),
        "num_motifs": Value("int64"),
        "num_nodes": Value("int64"),
    }
    if fingerprints:
        features.update({name: List(Value("int64")) for name in FINGERPRINT_COLUMNS})
    return Features(features)


# ---------------------------------------------------------------------------------------------------------------
# RDKit helpers
# ---------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def rdkit_logs_muted() -> Iterator[None]:
    """Mutes RDKit's log (parse errors, "not removing hydrogen" warnings) inside the ``with`` block only.

    The previous log state is restored on exit, so a caller's own RDKit logging settings are left alone.
    """
    from rdkit import rdBase

    with rdBase.BlockLogs():
        yield


@functools.cache
def _rdkit() -> tuple[Any, Any]:
    """RDKit's ``Chem`` and ``BRICS`` modules, imported on first use (an import statement per molecule is costly)."""
    from rdkit import Chem
    from rdkit.Chem import BRICS

    return Chem, BRICS


def _mol_from_smiles(smiles: str):
    """:func:`parse_smiles` without muting RDKit's log.

    Call it inside :func:`rdkit_logs_muted`, entered once per batch: entering it costs more than parsing a small
    molecule.
    """
    Chem, _ = _rdkit()

    if not isinstance(smiles, str) or not smiles.strip():
        raise ValueError(f"Expected a non-empty SMILES string, got {smiles!r}.")
    mol = Chem.MolFromSmiles(smiles)
    if mol is not None:
        return mol
    # Find out why, for the error message: a syntax error, or a chemistry (sanitization) error.
    raw = Chem.MolFromSmiles(smiles, sanitize=False)
    reason = "it is not valid SMILES syntax"
    if raw is not None:
        try:
            Chem.SanitizeMol(raw)
        except Exception as err:  # RDKit raises several exception types here
            reason = f"RDKit could not sanitize it ({err})"
    raise ValueError(f"Could not parse SMILES {smiles!r}: {reason}. Fix or remove this molecule.")


def _vocab_keys(vocab: list, enum_names: Mapping[str, Any] | None) -> list[int]:
    """The raw RDKit integer value of each vocabulary entry (enum names resolved through ``enum_names``)."""
    if enum_names is None:
        return [int(v) for v in vocab]
    # A name unknown to this RDKit version can never occur, so it gets a key that no atom will have.
    return [int(enum_names[v]) if v in enum_names else -(10**6) for v in vocab]


class _Encoder:
    """Maps a matrix of raw RDKit values ``[n, F]`` to vocabulary indices with one look-up table per column."""

    def __init__(self, vocabs: list[list], enums: list[Mapping[str, Any] | None]) -> None:
        keys = [_vocab_keys(vocab, enum) for vocab, enum in zip(vocabs, enums, strict=True)]
        self.other = np.array([len(v) for v in vocabs], dtype=np.int64)
        self.low = np.array([min(k for k in ks if k > -(10**6)) for ks in keys], dtype=np.int64)
        self.size = np.array([max(ks) for ks in keys], dtype=np.int64) - self.low + 1
        self.base = np.concatenate([[0], np.cumsum(self.size)[:-1]]).astype(np.int64)
        table = np.concatenate([np.full(s, o, dtype=np.int64) for s, o in zip(self.size, self.other, strict=True)])
        for col, ks in enumerate(keys):
            for index, key in enumerate(ks):
                if key > -(10**6):
                    table[self.base[col] + key - self.low[col]] = index
        self.table = table

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        offset = raw - self.low
        inside = (offset >= 0) & (offset < self.size)
        looked_up = self.table[np.where(inside, offset, 0) + self.base]
        return np.where(inside, looked_up, self.other)


def parse_smiles(smiles: str):
    """Parses one SMILES with RDKit, its log muted.

    Args:
        smiles (str): the SMILES.

    Returns:
        rdkit.Chem.Mol: the sanitized molecule.

    Raises:
        ValueError: if ``smiles`` is empty or RDKit cannot parse or sanitize it; the message names the SMILES and
            RDKit's reason.
    """
    with rdkit_logs_muted():
        return _mol_from_smiles(smiles)


# Former private name, still imported by class_hf/search/index.py; new code should call parse_smiles.
_parse_smiles = parse_smiles


@functools.cache
def _encoders() -> tuple[_Encoder, _Encoder]:
    from rdkit import Chem

    atom_enums = {"chirality": Chem.ChiralType.names, "hybridization": Chem.HybridizationType.names}
    bond_enums = {"bond_type": Chem.BondType.names, "stereo": Chem.BondStereo.names}
    atoms = _Encoder(list(ATOM_FEATURES.values()), [atom_enums.get(name) for name in ATOM_FEATURES])
    bonds = _Encoder(list(BOND_FEATURES.values()), [bond_enums.get(name) for name in BOND_FEATURES])
    return atoms, bonds


@functools.cache
def _fingerprint_generator():
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=FINGERPRINT_RADIUS, fpSize=FINGERPRINT_DIM)


# ---------------------------------------------------------------------------------------------------------------
# Motifs
# ---------------------------------------------------------------------------------------------------------------


def _brics_bonds(mol) -> set[tuple[int, int]]:
    _, BRICS = _rdkit()

    return {(min(a, b), max(a, b)) for (a, b), _ in BRICS.FindBRICSBonds(mol)}


def _motif_cliques(mol, bonds: list[tuple[int, int]]) -> list[list[int]]:
    """ORMA's motif cliques for ``mol`` given its bonds as ``(begin, end)`` atom pairs (see motif_decomposition)."""
    Chem, _ = _rdkit()

    n = mol.GetNumAtoms()
    brics = _brics_bonds(mol) if bonds else set()
    kept = [(a, b) for a, b in bonds if (min(a, b), max(a, b)) not in brics]

    # Merge the bond cliques that share an atom: union-find over the bonds that are not BRICS bonds.
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in kept:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    component: list[int] = [0] * n
    root_to_component: dict[int, int] = {}
    cliques: list[list[int]] = []
    for atom in range(n):  # components numbered by their lowest atom index
        root = find(atom)
        if root not in root_to_component:
            root_to_component[root] = len(cliques)
            cliques.append([])
        component[atom] = root_to_component[root]
        cliques[component[atom]].append(atom)

    # A clique holding more than one ring (cyclomatic number > 1) is split: each SSSR ring inside it becomes its own
    # clique (appended at the end), and what is left of the clique keeps the atoms in no ring of it.
    num_edges = [0] * len(cliques)
    for a, _ in kept:
        num_edges[component[a]] += 1
    multi_ring = [num_edges[c] - len(cliques[c]) + 1 > 1 for c in range(len(cliques))]
    if any(multi_ring):
        rings = [list(ring) for ring in Chem.GetSymmSSSR(mol)]
        for c, atoms in enumerate(list(cliques)):
            if not multi_ring[c]:
                continue
            in_rings: set[int] = set()
            for ring in rings:
                if all(component[a] == c for a in ring):
                    cliques.append(ring)
                    in_rings.update(ring)
            cliques[c] = [a for a in atoms if a not in in_rings]
    return [clique for clique in cliques if clique]


def assign_motifs(cliques: Sequence[Sequence[int]], num_atoms: int) -> tuple[list[int], int]:
    """Gives every atom exactly one motif: the first clique (in list order) that holds it.

    Cliques can share atoms (fused rings share their fusion atoms); as in ORMA, such an atom belongs to the first
    clique that holds it. A clique whose atoms all went to earlier cliques (e.g. the inner ring of a fully fused
    ring system) is dropped and the motif ids are renumbered, so every motif has at least one atom.

    Args:
        cliques (Sequence[Sequence[int]]): atom indices of each clique, as from :func:`motif_decomposition`.
        num_atoms (int): number of atoms of the molecule.

    Returns:
        tuple[list[int], int]: ``atom2motif`` (motif id of each atom, in ``[0, num_motifs)``) and ``num_motifs``.

    Raises:
        ValueError: if an atom is in no clique.
    """
    atom2motif = [-1] * num_atoms
    num_motifs = 0
    for clique in cliques:
        claimed = False
        for atom in clique:
            if atom2motif[atom] < 0:
                atom2motif[atom] = num_motifs
                claimed = True
        num_motifs += claimed
    missing = [atom for atom, motif in enumerate(atom2motif) if motif < 0]
    if missing:
        raise ValueError(f"Atoms {missing} are in no clique; every atom must belong to one of `cliques`.")
    return atom2motif, num_motifs


def motif_decomposition(mol_or_smiles) -> list[list[int]]:
    """ORMA's motif decomposition (``motif_decomp`` in DeepLearnXMU/Orma ``chemutils.py``), as cliques of atoms.

    1. every bond is a clique of its two atoms;
    2. BRICS bonds (``rdkit.Chem.BRICS.FindBRICSBonds``) are broken: their cliques are removed;
    3. cliques that share an atom are merged (into connected components of the molecule without its BRICS bonds);
    4. a clique holding more than one SSSR ring is split: each SSSR ring inside it becomes a clique, appended after
       all others, and the clique keeps only its atoms outside these rings (dropped if none is left).

    Differences from ORMA's code, made so that every atom gets exactly one motif (CONTRIBUTING.md):

    - a clique spanning the whole molecule is kept (ORMA drops it before step 4, leaving e.g. benzene or naphthalene
      without motifs);
    - atoms without bonds (``[Na+]``, the ions of a salt) are single-atom cliques (ORMA only handles a one-atom
      molecule);
    - the merge is complete (ORMA's single pass could in principle leave two overlapping cliques unmerged).

    Checked against a port of ORMA's function on all 33,010 ChEBI-20 molecules: the same set of cliques for 26,909;
    ORMA gives no motif at all for 4,893; the other 1,208 differ only by the single-atom cliques of bond-less atoms.
    As in ORMA, the atoms left in a split clique form one clique even when they are not bonded to each other.
    Cliques are ordered by their lowest atom index, then the split-out rings in SSSR order. Fused rings share atoms;
    :func:`assign_motifs` gives each shared atom to the first clique that holds it.

    Args:
        mol_or_smiles (str | rdkit.Chem.Mol): the molecule.

    Returns:
        list[list[int]]: atom indices of each clique; together they cover every atom.
    """
    with rdkit_logs_muted():
        mol = _mol_from_smiles(mol_or_smiles) if isinstance(mol_or_smiles, str) else mol_or_smiles
        bonds = [(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()) for bond in mol.GetBonds()]
        return _motif_cliques(mol, bonds)


# ---------------------------------------------------------------------------------------------------------------
# Featurization
# ---------------------------------------------------------------------------------------------------------------


def _atom_row(atom) -> tuple[int, ...]:
    return (
        atom.GetAtomicNum(),
        int(atom.GetChiralTag()),
        atom.GetTotalDegree(),
        atom.GetFormalCharge(),
        atom.GetTotalNumHs(),
        atom.GetNumRadicalElectrons(),
        int(atom.GetHybridization()),
        int(atom.GetIsAromatic()),
        int(atom.IsInRing()),
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector (restored on exit).

    Featurizing creates millions of small lists and tuples, none of them cyclic; every few hundred allocations the
    collector would scan them all again, which took about 40% of the featurization time (measured on ChEBI-20).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _graphs_from_mols(mols: list, fingerprints: bool = False) -> dict[str, list]:
    """Graph columns for a list of parsed molecules; the per-feature look-ups are vectorized over the whole list."""
    with _gc_paused():
        return _graphs_from_mols_unpaused(mols, fingerprints)


def _graphs_from_mols_unpaused(mols: list, fingerprints: bool) -> dict[str, list]:
    atom_encoder, bond_encoder = _encoders()
    atom_rows: list[tuple[int, ...]] = []
    bond_rows: list[tuple[int, ...]] = []
    num_atoms = np.zeros(len(mols), dtype=np.int64)
    num_bonds = np.zeros(len(mols), dtype=np.int64)
    out: dict[str, list] = {"atom2motif": [], "num_motifs": []}
    with rdkit_logs_muted():
        for i, mol in enumerate(mols):
            # map(GetAtomWithIdx, range(n)) skips the Python-level sequence wrapper of mol.GetAtoms().
            atom_rows.extend(map(_atom_row, map(mol.GetAtomWithIdx, range(mol.GetNumAtoms()))))
            bonds = [
                (b.GetBeginAtomIdx(), b.GetEndAtomIdx(), int(b.GetBondType()), int(b.GetStereo()), b.GetIsConjugated())
                for b in map(mol.GetBondWithIdx, range(mol.GetNumBonds()))
            ]
            bond_rows.extend(bonds)
            num_atoms[i], num_bonds[i] = mol.GetNumAtoms(), len(bonds)
            atom2motif, num_motifs = assign_motifs(
                _motif_cliques(mol, [(b[0], b[1]) for b in bonds]), mol.GetNumAtoms()
            )
            out["atom2motif"].append(atom2motif)
            out["num_motifs"].append(num_motifs)
        if fingerprints:
            generator = _fingerprint_generator()
            out["fp_index"], out["fp_count"] = [], []
            for mol in mols:
                counts = sorted(generator.GetCountFingerprint(mol).GetNonzeroElements().items())
                out["fp_index"].append([bit for bit, _ in counts])
                out["fp_count"].append([count for _, count in counts])

    x = atom_encoder(np.asarray(atom_rows, dtype=np.int64).reshape(-1, len(ATOM_FEATURES)))
    bond_array = np.asarray(bond_rows, dtype=np.int64).reshape(-1, 5)
    bond_attr = bond_encoder(bond_array[:, 2:])

    # Both directions of every bond, then one global sort by (molecule, source, target): atom indices are shifted by
    # the atoms of the molecules before, so sorting the shifted sources keeps the molecules in order.
    atom_offset = np.repeat(np.cumsum(num_atoms) - num_atoms, num_bonds)
    src = np.concatenate([bond_array[:, 0], bond_array[:, 1]]) + np.tile(atom_offset, 2)
    dst = np.concatenate([bond_array[:, 1], bond_array[:, 0]]) + np.tile(atom_offset, 2)
    attr = np.concatenate([bond_attr, bond_attr])
    order = np.lexsort((dst, src))
    src, dst, attr = src[order], dst[order], attr[order]
    edge_offset = np.repeat(np.cumsum(num_atoms) - num_atoms, 2 * num_bonds)
    src, dst = src - edge_offset, dst - edge_offset

    # One ``tolist`` per array, then per-molecule slices: much cheaper than one ``tolist`` per molecule.
    atom_bounds = np.cumsum(np.concatenate([[0], num_atoms])).tolist()
    edge_bounds = np.cumsum(np.concatenate([[0], 2 * num_bonds])).tolist()
    x_list, src_list, dst_list, attr_list = x.tolist(), src.tolist(), dst.tolist(), attr.tolist()
    atom_spans = list(zip(atom_bounds[:-1], atom_bounds[1:], strict=True))
    edge_spans = list(zip(edge_bounds[:-1], edge_bounds[1:], strict=True))
    out["x"] = [x_list[a:b] for a, b in atom_spans]
    out["edge_index"] = [[src_list[a:b], dst_list[a:b]] for a, b in edge_spans]
    out["edge_attr"] = [attr_list[a:b] for a, b in edge_spans]
    out["num_nodes"] = num_atoms.tolist()
    return out


def smiles_to_graph(smiles: str) -> dict:
    """Featurizes one molecule.

    Args:
        smiles (str): the molecule's SMILES.

    Returns:
        dict: ``x`` ``[num_atoms, 9]``, ``edge_index`` ``[2, num_edges]`` (both directions, sorted), ``edge_attr``
        ``[num_edges, 3]``, ``num_nodes``, ``atom2motif`` ``[num_atoms]`` and ``num_motifs``, as (nested) lists of
        ints; the same values as the columns of :func:`featurize_molecules`.

    Raises:
        ValueError: if RDKit cannot parse ``smiles`` (the message names it); never returns an empty graph.

    Example:
        >>> graph = smiles_to_graph("CCO")
        >>> graph["num_nodes"], len(graph["edge_index"][0]), graph["num_motifs"]
        (3, 4, 1)
    """
    graph = _graphs_from_mols([parse_smiles(smiles)])
    return {key: values[0] for key, values in graph.items()}


def _row_label(index: int, cid: Any) -> str:
    return f"row {index}" + (f" (cid {cid!r})" if cid is not None else "")


def _featurize_batch(
    batch: dict[str, list], indices: list[int], smiles_column: str, fingerprints: bool
) -> dict[str, list]:
    """``Dataset.map`` function: parses the batch's SMILES and adds the graph columns."""
    mols = []
    cids = batch.get("cid")
    with rdkit_logs_muted():
        for position, (index, smiles) in enumerate(zip(indices, batch[smiles_column], strict=True)):
            try:
                mols.append(_mol_from_smiles(smiles))
            except ValueError as err:
                label = _row_label(index, cids[position] if cids is not None else None)
                raise ValueError(
                    f"Cannot featurize {label}: {err} Featurization runs after validation (load_chebi20), so this "
                    "row should not be here: validate the dataset first or drop the row."
                ) from err
    return _graphs_from_mols(mols, fingerprints=fingerprints)


def featurize_molecules(
    dataset: Dataset | DatasetDict,
    smiles_column: str = "smiles",
    num_proc: int | None = None,
    fingerprints: bool = False,
    desc: str | None = "Featurizing molecules",
    batch_size: int = 1000,
    load_from_cache_file: bool | None = None,
) -> Dataset | DatasetDict:
    """Adds the molecule graph columns (and optionally Morgan count fingerprints) to a dataset with ``Dataset.map``.

    The map is batched, declares its ``Features`` explicitly and uses a module-level function, so `datasets` caches
    the result next to the dataset's cache files: a second call with the same arguments reloads it.

    Args:
        dataset (Dataset | DatasetDict): rows with a SMILES column (and ideally ``cid``, for error messages). A
            ``DatasetDict`` is featurized split by split.
        smiles_column (str, optional): the SMILES column. (default: ``"smiles"``)
        num_proc (int | None, optional): worker processes for ``Dataset.map``. (default: ``None``)
        fingerprints (bool, optional): also add ``fp_index`` / ``fp_count``, the sparse Morgan count fingerprint
            (radius 2, 2048 bits) from ``rdFingerprintGenerator``. (default: ``False``)
        desc (str | None, optional): progress-bar description. (default: ``"Featurizing molecules"``)
        batch_size (int, optional): rows per ``map`` batch. (default: ``1000``)
        load_from_cache_file (bool | None, optional): passed to ``Dataset.map``; ``False`` recomputes.
            (default: ``None``, i.e. the `datasets` default: reuse the cache when caching is enabled)

    Returns:
        Dataset | DatasetDict: the input columns plus the graph columns of :func:`graph_features`.

    Raises:
        ValueError: if ``smiles_column`` is missing, or a row's SMILES does not parse (the message names the row index
            and its ``cid``).
    """
    if isinstance(dataset, DatasetDict):
        return DatasetDict(
            {
                split: featurize_molecules(
                    part, smiles_column, num_proc, fingerprints, desc and f"{desc} ({split})", batch_size,
                    load_from_cache_file,
                )
                for split, part in dataset.items()
            }
        )  # fmt: skip
    if not isinstance(dataset, Dataset):
        raise TypeError(f"`dataset` must be a datasets.Dataset or DatasetDict, got {type(dataset).__name__}.")
    if smiles_column not in dataset.column_names:
        raise ValueError(
            f"`smiles_column` {smiles_column!r} is not a column of the dataset (columns: {dataset.column_names}). "
            "Pass the name of the column that holds the SMILES."
        )
    features = dataset.features.copy()
    features.update(graph_features(fingerprints))
    return dataset.map(
        _featurize_batch,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        fn_kwargs={"smiles_column": smiles_column, "fingerprints": fingerprints},
        features=features,
        num_proc=num_proc,
        desc=desc,
        load_from_cache_file=load_from_cache_file,
    )


def _dense_fingerprints(indices: Sequence[Sequence[int]], counts: Sequence[Sequence[int]], dim: int) -> np.ndarray:
    """``float32 [N, dim]`` matrix of ``log1p(count)`` from sparse (index, count) lists."""
    lengths = np.fromiter((len(row) for row in indices), dtype=np.int64, count=len(indices))
    flat_index = np.fromiter((i for row in indices for i in row), dtype=np.int64, count=int(lengths.sum()))
    flat_count = np.fromiter((c for row in counts for c in row), dtype=np.float32, count=int(lengths.sum()))
    return _scatter_fingerprints(lengths, flat_index, flat_count, dim)


def _scatter_fingerprints(lengths: np.ndarray, flat_index: np.ndarray, flat_count: np.ndarray, dim: int) -> np.ndarray:
    if flat_index.size and (flat_index.min() < 0 or flat_index.max() >= dim):
        raise ValueError(
            f"Fingerprint indices lie in [{flat_index.min()}, {flat_index.max()}], outside [0, {dim}): `dim` must "
            f"match the fingerprint size the columns were built with ({FINGERPRINT_DIM})."
        )
    out = np.zeros((len(lengths), dim), dtype=np.float32)
    out[np.repeat(np.arange(len(lengths)), lengths), flat_index] = np.log1p(flat_count)
    return out


def fingerprint_matrix(
    dataset_or_rows: Dataset | Sequence[Mapping[str, Any]], dim: int = FINGERPRINT_DIM, smiles_column: str = "smiles"
) -> np.ndarray:
    """Dense Morgan count fingerprints, ``float32 [N, dim]`` of ``log1p(count)``, e.g. for fingerprint scorers.

    Read from the sparse ``fp_index`` / ``fp_count`` columns when present (``featurize_molecules(...,
    fingerprints=True)``), otherwise computed from the SMILES (radius 2, folded to ``dim`` bits).

    Args:
        dataset_or_rows (Dataset | Sequence[Mapping]): a dataset, or a list of row dicts.
        dim (int, optional): fingerprint size. (default: ``2048``)
        smiles_column (str, optional): the SMILES column, used when the fingerprint columns are absent.
            (default: ``"smiles"``)

    Returns:
        np.ndarray: ``float32 [N, dim]``.

    Raises:
        ValueError: if neither the fingerprint columns nor ``smiles_column`` are there, or a SMILES does not parse.
    """
    if isinstance(dataset_or_rows, Dataset):
        columns = dataset_or_rows.column_names
        if all(name in columns for name in FINGERPRINT_COLUMNS):
            table = dataset_or_rows.select_columns(list(FINGERPRINT_COLUMNS)).with_format("arrow")[:]
            index_column = table.column("fp_index").combine_chunks()
            count_column = table.column("fp_count").combine_chunks()
            lengths = np.diff(index_column.offsets.to_numpy()).astype(np.int64)
            flat_index = index_column.flatten().to_numpy().astype(np.int64)
            flat_count = count_column.flatten().to_numpy().astype(np.float32)
            return _scatter_fingerprints(lengths, flat_index, flat_count, dim)
        smiles = dataset_or_rows[smiles_column] if smiles_column in columns else None
    else:
        rows = list(dataset_or_rows)
        if rows and all(name in row for row in rows for name in FINGERPRINT_COLUMNS):
            return _dense_fingerprints([r["fp_index"] for r in rows], [r["fp_count"] for r in rows], dim)
        columns = sorted(rows[0]) if rows else []
        smiles = [row[smiles_column] for row in rows] if all(smiles_column in row for row in rows) else None
    if smiles is None:
        raise ValueError(
            f"Need the columns {list(FINGERPRINT_COLUMNS)} or {smiles_column!r} to build fingerprints; found "
            f"{columns}. Run featurize_molecules(..., fingerprints=True) or pass `smiles_column`."
        )
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=FINGERPRINT_RADIUS, fpSize=dim)
    out = np.zeros((len(smiles), dim), dtype=np.float32)
    with rdkit_logs_muted():
        for row, text in enumerate(smiles):
            try:
                mol = _mol_from_smiles(text)
            except ValueError as err:
                raise ValueError(f"Cannot fingerprint row {row}: {err}") from err
            for bit, count in generator.GetCountFingerprint(mol).GetNonzeroElements().items():
                out[row, bit] = np.log1p(count)
    return out


# ---------------------------------------------------------------------------------------------------------------
# PyG
# ---------------------------------------------------------------------------------------------------------------


class MoleculeGraph(Data):
    """A molecule graph whose ``atom2motif`` is offset by the motifs of the graphs before it when batched.

    Attributes: ``x`` long ``[N, 9]``, ``edge_index`` long ``[2, E]``, ``edge_attr`` long ``[E, 3]``, ``atom2motif``
    long ``[N]``, ``num_motifs`` long (0-dim; ``[B]`` in a batch), optionally ``fp`` float ``[1, dim]`` (``[B, dim]``).
    In a :class:`~torch_geometric.data.Batch`, ``atom2motif`` indexes the batch's ``num_motifs.sum()`` motifs, and
    ``torch.repeat_interleave(batch.num_motifs)`` gives the graph of each motif.
    """

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key == "atom2motif":
            return int(torch.as_tensor(self.num_motifs).sum())
        if key == MOL2VEC_COLUMN:  # vocabulary ids, not node indices: PyG would offset any key holding "index"
            return 0
        return super().__inc__(key, value, *args, **kwargs)


def _column(row: Mapping[str, Any], column: str, position: int) -> Any:
    """``row[column]``, or a ``ValueError`` naming the column and the row's position in the batch."""
    try:
        return row[column]
    except KeyError:
        raise ValueError(
            f"Row {position} of the batch has no {column!r} column (it has {sorted(row)}). Run "
            "featurize_molecules(dataset) first, and keep the collator's columns (`collator.columns`) in the "
            "dataset, e.g. with `remove_unused_columns=False`."
        ) from None


def _int_array(value: Any, width: int, column: str, position: int) -> np.ndarray:
    """``value`` (nested lists, an array or a tensor) as ``int64 [n, width]``, or an error naming the row."""
    try:
        array = np.asarray(value, dtype=np.int64)
    except (TypeError, ValueError) as err:  # ragged or non-integer lists
        raise ValueError(
            f"Row {position} of the batch has a malformed {column!r} ({err}); it must hold {width} integer "
            "indices per entry, as featurize_molecules writes them."
        ) from None
    if array.size % width:
        raise ValueError(
            f"Row {position} of the batch has {array.size} values in {column!r}, not a multiple of {width}; "
            "featurize it with this version of class-hf (featurize_molecules)."
        )
    return array.reshape(-1, width)


def rows_to_batch(rows: Sequence[Mapping[str, Any]], fingerprint_dim: int = FINGERPRINT_DIM) -> Batch:
    """Builds a PyG ``Batch`` of :class:`MoleculeGraph` from featurized dataset rows.

    The batch is the one ``Batch.from_data_list`` builds from one :class:`MoleculeGraph` per row (same tensors,
    offsets and slice / increment bookkeeping, so ``get_example`` and ``to_data_list`` work), assembled with one
    concatenation per column instead of one ``Data`` object per molecule.

    Args:
        rows (Sequence[Mapping]): rows with the graph columns of :func:`featurize_molecules` (lists or tensors), and
            optionally ``mol2vec_index`` (per-atom ids, see ``class_hf.data.mol2vec.Mol2VecIndexer``). When every
            row has ``fp_index`` / ``fp_count``, the batch also gets ``fp`` float ``[B, dim]`` (``log1p`` counts).
        fingerprint_dim (int, optional): size of ``fp``. (default: ``2048``)

    Returns:
        Batch: ``x``, ``edge_index`` (offset per graph), ``edge_attr``, ``atom2motif`` (offset by the motifs of the
        graphs before), ``num_motifs`` ``[B]``, ``batch`` ``[N]``, ``ptr`` and optionally ``fp``.

    Raises:
        ValueError: if ``rows`` is empty, a row lacks a graph column, or a column's size does not fit its atoms or
            bonds (the message names the column and the row).
    """
    if len(rows) == 0:
        raise ValueError("`rows` is empty: a batch needs at least one molecule.")
    has_fp = [all(name in row for name in FINGERPRINT_COLUMNS) for row in rows]
    if not all(has_fp) and any(has_fp):
        raise ValueError(
            f"Row {has_fp.index(False)} of the batch has no {list(FINGERPRINT_COLUMNS)} columns while other rows "
            "have them; featurize every split with the same `fingerprints` setting."
        )
    has_mol2vec = MOL2VEC_COLUMN in rows[0]
    if any((MOL2VEC_COLUMN in row) != has_mol2vec for row in rows):
        position = next(i for i, row in enumerate(rows) if (MOL2VEC_COLUMN in row) != has_mol2vec)
        raise ValueError(
            f"Row {position} of the batch {'lacks' if has_mol2vec else 'has'} the {MOL2VEC_COLUMN!r} column and "
            f"row 0 {'has it' if has_mol2vec else 'does not'}; every row of a dataset must have the same columns."
        )
    xs, edges, edge_attrs, motifs, mol2vec = [], [], [], [], []
    num_motifs = np.empty(len(rows), dtype=np.int64)
    for position, row in enumerate(rows):
        x = _int_array(_column(row, "x", position), len(ATOM_FEATURES), "x", position)
        edge_index = np.asarray(_column(row, "edge_index", position), dtype=np.int64).reshape(2, -1)
        edge_attr = _int_array(_column(row, "edge_attr", position), len(BOND_FEATURES), "edge_attr", position)
        atom2motif = np.asarray(_column(row, "atom2motif", position), dtype=np.int64).reshape(-1)
        num_motifs[position] = int(np.asarray(_column(row, "num_motifs", position)))
        if edge_attr.shape[0] != edge_index.shape[1] or atom2motif.shape[0] != x.shape[0]:
            raise ValueError(
                f"Row {position} of the batch has {edge_index.shape[1]} edges and {edge_attr.shape[0]} `edge_attr` "
                f"rows, {x.shape[0]} atoms and {atom2motif.shape[0]} `atom2motif` entries; its graph columns must "
                "come from one featurize_molecules call."
            )
        if has_mol2vec:
            ids = np.asarray(row[MOL2VEC_COLUMN], dtype=np.int64).reshape(-1)
            if ids.shape[0] != x.shape[0]:
                raise ValueError(
                    f"Row {position} of the batch has {ids.shape[0]} `{MOL2VEC_COLUMN}` entries for "
                    f"{x.shape[0]} atoms; compute the column from the same SMILES as the graph."
                )
            mol2vec.append(ids)
        xs.append(x)
        edges.append(edge_index)
        edge_attrs.append(edge_attr)
        motifs.append(atom2motif)
    num_nodes = torch.tensor([x.shape[0] for x in xs])
    num_edges = torch.tensor([e.shape[1] for e in edges])
    # PyG's slice vectors ([0, c0, c0 + c1, ...]); the increments are the same offsets without the total
    node_slices, edge_slices = cumsum(num_nodes), cumsum(num_edges)
    graph_slices = torch.arange(len(rows) + 1)
    node_offsets, motif_offsets = node_slices[:-1], cumsum(torch.from_numpy(num_motifs))[:-1]
    zeros = torch.zeros(len(rows), dtype=torch.long)

    # `Batch.from_data_list` of MoleculeGraph: the same attributes in the same order, and its bookkeeping
    out = Batch(_base_cls=MoleculeGraph)
    out.x = torch.from_numpy(np.concatenate(xs))
    out.edge_index = torch.from_numpy(np.concatenate(edges, axis=1)) + node_offsets.repeat_interleave(num_edges)
    out.edge_attr = torch.from_numpy(np.concatenate(edge_attrs))
    out.atom2motif = torch.from_numpy(np.concatenate(motifs)) + motif_offsets.repeat_interleave(num_nodes)
    out.num_motifs = torch.from_numpy(num_motifs)
    out._store._num_nodes = num_nodes.tolist()
    out.num_nodes = int(num_nodes.sum())
    slices = {"x": node_slices, "edge_index": edge_slices, "edge_attr": edge_slices, "atom2motif": node_slices}
    slices["num_motifs"] = graph_slices
    increments = {"x": zeros, "edge_index": node_offsets, "edge_attr": zeros, "atom2motif": motif_offsets}
    increments["num_motifs"] = zeros
    if all(has_fp):
        fp = _dense_fingerprints([r["fp_index"] for r in rows], [r["fp_count"] for r in rows], fingerprint_dim)
        out.fp = torch.from_numpy(fp)
        slices["fp"], increments["fp"] = graph_slices, zeros
    if has_mol2vec:
        out.mol2vec_index = torch.from_numpy(np.concatenate(mol2vec))
        slices[MOL2VEC_COLUMN], increments[MOL2VEC_COLUMN] = node_slices, zeros
    out.batch = torch.arange(len(rows)).repeat_interleave(num_nodes)
    out.ptr = node_slices.clone()
    out._num_graphs = len(rows)
    out._slice_dict = slices
    out._inc_dict = increments
    return out
