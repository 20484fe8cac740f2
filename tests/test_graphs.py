"""Tests for class_hf.data.graphs: SMILES -> graph columns, ORMA motifs, Dataset.map featurization, fingerprints."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from datasets import Dataset, DatasetDict, Features, List, Value, load_from_disk
from rdkit import Chem, rdBase
from rdkit.Chem import rdFingerprintGenerator

from class_hf.data.graphs import (
    ATOM_FEATURE_DIMS,
    ATOM_FEATURES,
    BOND_FEATURE_DIMS,
    BOND_FEATURES,
    assign_motifs,
    featurize_molecules,
    fingerprint_matrix,
    graph_features,
    motif_decomposition,
    parse_smiles,
    rdkit_logs_muted,
    smiles_to_graph,
)

KNOWN_SMILES = [
    "CCO",
    "c1ccccc1",
    "c1ccccc1O",
    "[NH3+]CC(=O)[O-]",
    "C[C@H](N)C(=O)O",
    "C/C=C/C",
    "F/C=C\\F",
    "N#CC(=O)OCC",
    "[Cr+6]",
    "N->[Pt]",
    "[CH2]C",
    "c1ccc2ccccc2c1",
    "[Na+].[Cl-]",
]


def _fixture_rows(sample_dir, n: int | None = None) -> list[dict[str, str]]:
    with open(sample_dir / "molt5_sample.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = rows[:n] if n is not None else rows
    return [
        {"cid": r["CID"], "smiles": r["SMILES"].replace("\\\\", "\\"), "description": r["description"]} for r in rows
    ]


def _index(value, vocab: list) -> int:
    return vocab.index(value) if value in vocab else len(vocab)


def _reference_graph(smiles: str) -> dict:
    """Independent RDKit reference: per-atom / per-bond look-ups by enum *name*, as PyG's ``from_smiles`` does."""
    mol = Chem.MolFromSmiles(smiles)
    atom_vocabs = list(ATOM_FEATURES.values())
    x = []
    for atom in mol.GetAtoms():
        values = [
            atom.GetAtomicNum(),
            atom.GetChiralTag().name,
            atom.GetTotalDegree(),
            atom.GetFormalCharge(),
            atom.GetTotalNumHs(),
            atom.GetNumRadicalElectrons(),
            atom.GetHybridization().name,
            atom.GetIsAromatic(),
            atom.IsInRing(),
        ]
        x.append([_index(v, vocab) for v, vocab in zip(values, atom_vocabs, strict=True)])
    edges = {}
    bond_vocabs = list(BOND_FEATURES.values())
    for bond in mol.GetBonds():
        values = [bond.GetBondType().name, bond.GetStereo().name, bond.GetIsConjugated()]
        attr = [_index(v, vocab) for v, vocab in zip(values, bond_vocabs, strict=True)]
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        edges[(i, j)] = attr
        edges[(j, i)] = attr
    ordered = sorted(edges)
    return {
        "x": x,
        "edge_index": [[i for i, _ in ordered], [j for _, j in ordered]],
        "edge_attr": [edges[e] for e in ordered],
        "num_nodes": mol.GetNumAtoms(),
        "num_bonds": mol.GetNumBonds(),
    }


def _assert_matches_reference(smiles: str, graph: dict) -> None:
    ref = _reference_graph(smiles)
    assert graph["num_nodes"] == ref["num_nodes"] == len(graph["x"])
    assert len(graph["edge_index"][0]) == 2 * ref["num_bonds"]
    assert graph["x"] == ref["x"], smiles
    assert graph["edge_index"] == ref["edge_index"], smiles
    assert graph["edge_attr"] == ref["edge_attr"], smiles


def _assert_valid_motifs(graph: dict) -> None:
    a2m = graph["atom2motif"]
    assert len(a2m) == graph["num_nodes"]
    assert sorted(set(a2m)) == list(range(graph["num_motifs"]))  # every motif holds at least one atom


# --- graph columns -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smiles", KNOWN_SMILES)
def test_graph_equals_rdkit_reference(smiles):
    _assert_matches_reference(smiles, smiles_to_graph(smiles))


def test_fixture_molecules_equal_rdkit_reference(chebi20_sample_dir):
    for row in _fixture_rows(chebi20_sample_dir):
        graph = smiles_to_graph(row["smiles"])
        _assert_matches_reference(row["smiles"], graph)
        _assert_valid_motifs(graph)


def test_vocabularies_unchanged():
    assert ATOM_FEATURE_DIMS == [120, 5, 12, 12, 10, 6, 8, 3, 3]
    assert BOND_FEATURE_DIMS == [5, 7, 3]


def test_specific_features():
    names = list(ATOM_FEATURES)
    benzene = smiles_to_graph("c1ccccc1")
    assert all(row[names.index("is_aromatic")] == 1 for row in benzene["x"])
    assert all(row[names.index("is_in_ring")] == 1 for row in benzene["x"])
    assert all(
        row[names.index("hybridization")] == ATOM_FEATURES["hybridization"].index("SP2") for row in benzene["x"]
    )
    assert all(attr == [3, 0, 1] for attr in benzene["edge_attr"])  # AROMATIC, STEREONONE, conjugated
    assert len(benzene["edge_index"][0]) == 12

    zwitterion = smiles_to_graph("[NH3+]CC(=O)[O-]")  # glycine zwitterion: N+ is atom 0, O- is atom 4
    charge = [row[names.index("formal_charge")] for row in zwitterion["x"]]
    assert charge == [6, 5, 5, 5, 4]  # +1, 0, 0, 0, -1 in range(-5, 6)
    assert zwitterion["x"][0][names.index("num_hs")] == 3

    # out-of-vocabulary values get the "other" index
    assert smiles_to_graph("[Cr+6]")["x"][0][names.index("formal_charge")] == len(ATOM_FEATURES["formal_charge"])
    assert smiles_to_graph("N->[Pt]")["edge_attr"][0][0] == len(BOND_FEATURES["bond_type"])

    butene = smiles_to_graph("C/C=C/C")
    stereo = {attr[1] for attr in butene["edge_attr"]}
    assert BOND_FEATURES["stereo"].index("STEREOE") in stereo


def test_edges_sorted_and_both_directions():
    graph = smiles_to_graph("CC(C)(O)c1ccncc1")
    src, dst = graph["edge_index"]
    pairs = list(zip(src, dst, strict=True))
    assert pairs == sorted(pairs)
    assert set(pairs) == {(j, i) for i, j in pairs}


@pytest.mark.parametrize(
    ("smiles", "num_nodes", "num_edges", "num_motifs"),
    [("[Na+]", 1, 0, 1), ("[H][H]", 2, 2, 1), ("[Na+].[Cl-]", 2, 0, 2), ("C", 1, 0, 1), ("O.O", 2, 0, 2)],
)
def test_edge_cases(smiles, num_nodes, num_edges, num_motifs):
    graph = smiles_to_graph(smiles)
    assert graph["num_nodes"] == num_nodes
    assert len(graph["edge_index"]) == 2 and len(graph["edge_index"][0]) == num_edges
    assert len(graph["edge_attr"]) == num_edges
    assert graph["num_motifs"] == num_motifs
    _assert_valid_motifs(graph)


@pytest.mark.parametrize("smiles", ["C1CC", "not a smiles", "C(C)(C)(C)(C)C"])
def test_unparsable_smiles_raises_naming_it(smiles):
    with pytest.raises(ValueError, match="Could not parse SMILES") as info:
        smiles_to_graph(smiles)
    assert repr(smiles) in str(info.value)


def test_empty_smiles_raises():
    with pytest.raises(ValueError, match="non-empty SMILES"):
        smiles_to_graph("")


def test_parse_smiles_mutes_rdkit_log(capfd):
    assert parse_smiles("CCO").GetNumAtoms() == 3
    capfd.readouterr()
    with pytest.raises(ValueError, match="Could not parse SMILES 'C1CC'"):
        parse_smiles("C1CC")
    assert "SMILES Parse Error" not in capfd.readouterr().err
    Chem.MolFromSmiles("C1CC")  # control: outside the context manager RDKit still logs
    assert "SMILES Parse Error" in capfd.readouterr().err


def test_rdkit_log_state_restored():
    before = rdBase.LogStatus()
    with pytest.raises(ValueError):
        smiles_to_graph("C1CC")
    smiles_to_graph("[H]")  # would log "not removing hydrogen atom without neighbors"
    assert rdBase.LogStatus() == before
    with rdkit_logs_muted():
        pass
    assert rdBase.LogStatus() == before


# --- motifs --------------------------------------------------------------------------------------------------------


def test_motifs_hand_checked():
    assert smiles_to_graph("c1ccccc1")["num_motifs"] == 1
    assert smiles_to_graph("CCCCCC")["num_motifs"] == 1  # no BRICS bond: the whole molecule is one motif

    # Ethyl benzoate: BRICS cuts CH2-O, O-C(=O) and C(=O)-ring -> ethyl | O | C=O | phenyl.
    ester = smiles_to_graph("CCOC(=O)c1ccccc1")
    assert ester["num_motifs"] == 4
    assert ester["atom2motif"] == [0, 0, 1, 2, 2, 3, 3, 3, 3, 3, 3]

    # Naphthalene: two SSSR rings in one clique -> split into two rings; the fusion atoms (3, 8) go to the first.
    assert motif_decomposition("c1ccc2ccccc2c1") == [[0, 1, 2, 3, 8, 9], [3, 4, 5, 6, 7, 8]]
    naphthalene = smiles_to_graph("c1ccc2ccccc2c1")
    assert naphthalene["num_motifs"] == 2
    assert naphthalene["atom2motif"] == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]

    # 2-Methylnaphthalene: the methyl is what is left of the split clique; it comes first, the rings after it.
    methyl = smiles_to_graph("Cc1ccc2ccccc2c1")
    assert methyl["num_motifs"] == 3
    assert methyl["atom2motif"][0] == 0

    # Anthracene: three fused rings.
    assert smiles_to_graph("c1ccc2cc3ccccc3cc2c1")["num_motifs"] == 3

    # Cubane: 6 SSSR rings, but the last two have no atom left after the first four: they are dropped.
    cubane = smiles_to_graph("C12C3C4C1C5C2C3C45")
    assert len(motif_decomposition("C12C3C4C1C5C2C3C45")) == 6
    assert cubane["num_motifs"] == 4
    _assert_valid_motifs(cubane)


def test_motif_cliques_cover_every_atom(chebi20_sample_dir):
    for row in _fixture_rows(chebi20_sample_dir, 100):
        mol = Chem.MolFromSmiles(row["smiles"])
        cliques = motif_decomposition(mol)
        assert set().union(*map(set, cliques)) == set(range(mol.GetNumAtoms()))
        # Only ring cliques may share atoms (fused rings).
        rings = {frozenset(r) for r in Chem.GetSymmSSSR(mol)}
        for i, a in enumerate(cliques):
            for b in cliques[i + 1 :]:
                if set(a) & set(b):
                    assert frozenset(a) in rings and frozenset(b) in rings


def test_assign_motifs_first_clique_wins():
    assert assign_motifs([[0, 1], [1, 2], [2]], 3) == ([0, 0, 1], 2)
    with pytest.raises(ValueError, match=r"Atoms \[3\] are in no clique"):
        assign_motifs([[0, 1, 2]], 4)


# --- Dataset.map featurization -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_dataset(chebi20_sample_dir):
    rows = _fixture_rows(chebi20_sample_dir, 40)
    return Dataset.from_list(rows)


@pytest.fixture(scope="module")
def featurized(sample_dataset):
    return featurize_molecules(sample_dataset, fingerprints=True, desc=None)


def test_featurize_declares_features(featurized):
    expected = {
        "x": List(List(Value("int64"))),
        "edge_index": List(List(Value("int64"))),
        "edge_attr": List(List(Value("int64"))),
        "atom2motif": List(Value("int64")),
        "num_motifs": Value("int64"),
        "num_nodes": Value("int64"),
        "fp_index": List(Value("int64")),
        "fp_count": List(Value("int64")),
    }
    for name, feature in expected.items():
        assert featurized.features[name] == feature
    assert featurized.column_names[:3] == ["cid", "smiles", "description"]  # input columns kept
    assert isinstance(graph_features(), Features) and "fp_index" not in graph_features()


def test_featurize_matches_smiles_to_graph(featurized):
    for row in featurized:
        graph = smiles_to_graph(row["smiles"])
        for key, value in graph.items():
            assert row[key] == value, (row["cid"], key)


def test_featurize_num_proc_same_result(sample_dataset, featurized):
    parallel = featurize_molecules(sample_dataset, num_proc=2, fingerprints=True, desc=None)
    assert parallel.to_dict() == featurized.to_dict()


def test_featurize_is_cached(sample_dataset, tmp_path):
    sample_dataset.save_to_disk(str(tmp_path / "ds"))
    on_disk = load_from_disk(str(tmp_path / "ds"))
    first = featurize_molecules(on_disk, desc=None)
    second = featurize_molecules(on_disk, desc=None)
    assert first.cache_files and first.cache_files == second.cache_files
    recomputed = featurize_molecules(on_disk, desc=None, fingerprints=True)
    assert recomputed.cache_files != first.cache_files  # different arguments, different cache file


def test_featurize_datasetdict(sample_dataset):
    dd = DatasetDict({"train": sample_dataset.select(range(5)), "test": sample_dataset.select(range(5, 8))})
    out = featurize_molecules(dd, desc=None)
    assert isinstance(out, DatasetDict) and out["test"].num_rows == 3 and "atom2motif" in out["train"].column_names


def test_featurize_bad_row_names_index_and_cid():
    ds = Dataset.from_dict({"cid": ["11", "22", "33"], "smiles": ["CCO", "C1CC", "CC"]})
    with pytest.raises(ValueError, match=r"row 1 \(cid '22'\).*'C1CC'"):
        featurize_molecules(ds, desc=None)


def test_featurize_missing_column():
    ds = Dataset.from_dict({"SMILES": ["CCO"]})
    with pytest.raises(ValueError, match="`smiles_column` 'smiles' is not a column"):
        featurize_molecules(ds, desc=None)
    assert featurize_molecules(ds, smiles_column="SMILES", desc=None)[0]["num_nodes"] == 3


# --- fingerprints --------------------------------------------------------------------------------------------------


def test_fingerprint_columns_match_rdkit(featurized):
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    for row in featurized.select(range(10)):
        dense = generator.GetCountFingerprintAsNumPy(Chem.MolFromSmiles(row["smiles"]))
        assert row["fp_index"] == np.flatnonzero(dense).tolist()
        assert row["fp_count"] == dense[dense > 0].tolist()


def test_fingerprint_matrix_from_columns_and_from_smiles(featurized):
    from_columns = fingerprint_matrix(featurized)
    assert from_columns.dtype == np.float32 and from_columns.shape == (featurized.num_rows, 2048)
    plain = featurized.remove_columns(["fp_index", "fp_count"])
    np.testing.assert_allclose(fingerprint_matrix(plain), from_columns, rtol=1e-6)
    rows = [featurized[i] for i in range(5)]
    np.testing.assert_allclose(fingerprint_matrix(rows), from_columns[:5], rtol=1e-6)
    np.testing.assert_allclose(fingerprint_matrix([{"smiles": r["smiles"]} for r in rows]), from_columns[:5])
    # Values are log1p(counts); an index-selected view reads the selected rows.
    first = featurized[0]
    np.testing.assert_allclose(from_columns[0, first["fp_index"]], np.log1p(first["fp_count"]), rtol=1e-6)
    np.testing.assert_allclose(fingerprint_matrix(featurized.select([3, 1])), from_columns[[3, 1]])


def test_fingerprint_matrix_errors(featurized):
    with pytest.raises(ValueError, match="Need the columns"):
        fingerprint_matrix(featurized.select_columns(["cid"]))
    with pytest.raises(ValueError, match="outside"):
        fingerprint_matrix(featurized, dim=16)
    with pytest.raises(ValueError, match="row 1"):
        fingerprint_matrix([{"smiles": "CC"}, {"smiles": "C1CC"}])
