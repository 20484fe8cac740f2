"""Tests for class_hf.data.collator.MoleculeTextCollator and graphs.rows_to_batch / MoleculeGraph batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accelerate.utils import send_to_device
from datasets import Dataset
from torch_geometric.data import Batch

from class_hf.data.collator import MoleculeTextCollator
from class_hf.data.graphs import MoleculeGraph, featurize_molecules, fingerprint_matrix, rows_to_batch

# Ethyl benzoate (11 atoms, 11 bonds, 4 motifs), ethanol (3 atoms, 2 bonds, 1 motif), salt (2 atoms, 0 bonds, 2 motifs)
SMILES = ["CCOC(=O)c1ccccc1", "CCO", "[Na+].[Cl-]"]
TEXTS = ["The molecule is a benzoate ester.", "The molecule is an alcohol.", "The molecule is a salt."]


@pytest.fixture(scope="module")
def rows():
    ds = Dataset.from_dict(
        {
            "cid": ["1", "2", "3"],
            "smiles": SMILES,
            "description": TEXTS,
            "sample_idx": [10, 11, 12],
            "difficulty": [0.25, 0.5, 1.0],
        }
    )
    featurized = featurize_molecules(ds, fingerprints=True, desc=None)
    return [featurized[i] for i in range(len(featurized))]


@pytest.fixture()
def collator(tiny_tokenizer):
    return MoleculeTextCollator(tiny_tokenizer)


def test_batch_keys_and_text(collator, rows, tiny_tokenizer):
    batch = collator(rows)
    assert list(batch) == ["input_ids", "attention_mask", "graph", "sample_idx", "difficulty"]
    assert batch["input_ids"].dtype == torch.long and batch["attention_mask"].dtype == torch.long
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[0] == 3
    expected = tiny_tokenizer(TEXTS, padding="longest", return_tensors="pt")
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["sample_idx"], torch.tensor([10, 11, 12]))
    assert batch["difficulty"].dtype == torch.float32
    assert torch.allclose(batch["difficulty"], torch.tensor([0.25, 0.5, 1.0]))


def test_graph_offsets(collator, rows):
    graph = collator(rows)["graph"]
    assert isinstance(graph, Batch) and isinstance(graph, MoleculeGraph)
    assert graph.num_graphs == 3
    assert graph.x.shape == (16, 9) and graph.x.dtype == torch.long
    assert graph.edge_attr.shape == (26, 3) and graph.edge_attr.dtype == torch.long
    # batch vector: 11 atoms of graph 0, 3 of graph 1, 2 of graph 2
    assert torch.equal(graph.batch, torch.tensor([0] * 11 + [1] * 3 + [2] * 2))
    assert torch.equal(graph.ptr, torch.tensor([0, 11, 14, 16]))
    # edge_index: graph 1's edges are shifted by 11 atoms; graph 2 has none
    ethanol_edges = graph.edge_index[:, 22:]
    assert torch.equal(ethanol_edges, torch.tensor(rows[1]["edge_index"]) + 11)
    assert torch.equal(graph.edge_index[:, :22], torch.tensor(rows[0]["edge_index"]))
    # atom2motif: shifted by the motifs of the graphs before (4, then 4 + 1)
    assert torch.equal(graph.num_motifs, torch.tensor([4, 1, 2]))
    assert torch.equal(graph.atom2motif, torch.tensor([0, 0, 1, 2, 2, 3, 3, 3, 3, 3, 3] + [4, 4, 4] + [5, 6]))
    assert int(graph.atom2motif.max()) + 1 == int(graph.num_motifs.sum())
    # motif -> graph via repeat_interleave, as documented
    assert torch.equal(torch.repeat_interleave(graph.num_motifs), torch.tensor([0, 0, 0, 0, 1, 2, 2]))
    # an example taken back out of the batch has its own (un-shifted) ids
    ethanol = graph.get_example(1)
    assert torch.equal(ethanol.atom2motif, torch.tensor([0, 0, 0]))
    assert torch.equal(ethanol.edge_index, torch.tensor(rows[1]["edge_index"]))


def test_graph_fingerprints(collator, rows):
    graph = collator(rows)["graph"]
    assert graph.fp.shape == (3, 2048) and graph.fp.dtype == torch.float32
    np.testing.assert_allclose(graph.fp.numpy(), fingerprint_matrix(rows))

    plain = [{k: v for k, v in row.items() if k not in ("fp_index", "fp_count")} for row in rows]
    assert "fp" not in collator(plain)["graph"]
    with pytest.raises(ValueError, match=r"Row 1 of the batch has no \['fp_index', 'fp_count'\]"):
        collator([rows[0], plain[1]])


def test_optional_columns_absent(collator, rows):
    plain = [{k: v for k, v in row.items() if k not in ("sample_idx", "difficulty")} for row in rows]
    batch = collator(plain)
    assert "sample_idx" not in batch and "difficulty" not in batch
    with pytest.raises(ValueError, match="Row 2 of the batch has no 'sample_idx' column"):
        collator([rows[0], rows[1], {k: v for k, v in rows[2].items() if k != "sample_idx"}])


def test_columns_property(collator):
    assert collator.columns == [
        "description",
        "text_features",
        "x",
        "edge_index",
        "edge_attr",
        "atom2motif",
        "num_motifs",
        "fp_index",
        "fp_count",
        "mol2vec_index",
        "sample_idx",
        "difficulty",
    ]
    assert MoleculeTextCollator(collator.tokenizer, text_column="text").columns[0] == "text"


def test_collates_only_its_columns(collator, rows):
    # A trainer keeps exactly `collator.columns`; the rows must still collate.
    kept = [{k: v for k, v in row.items() if k in collator.columns} for row in rows]
    assert "num_nodes" not in kept[0] and "smiles" not in kept[0]
    assert collator(kept)["graph"].num_nodes == 16


def test_missing_column_names_column_and_row(collator, rows):
    broken = dict(rows[1])
    del broken["edge_index"]
    with pytest.raises(ValueError, match="Row 1 of the batch has no 'edge_index' column"):
        collator([rows[0], broken])
    no_text = {k: v for k, v in rows[0].items() if k != "description"}
    with pytest.raises(ValueError, match="Row 0 of the batch has no 'description' column"):
        collator([no_text])


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_text_names_row(collator, rows, text):
    bad = dict(rows[2], description=text)
    with pytest.raises(ValueError, match="Row 1 of the batch has an empty 'description'"):
        collator([rows[0], bad])


def test_empty_batch(collator):
    with pytest.raises(ValueError, match="empty"):
        collator([])
    with pytest.raises(ValueError, match="empty"):
        rows_to_batch([])


def test_truncation_and_padding(tiny_tokenizer, rows):
    short = MoleculeTextCollator(tiny_tokenizer, max_length=4)(rows)
    assert short["input_ids"].shape == (3, 4)
    padded = MoleculeTextCollator(tiny_tokenizer, max_length=20, padding="max_length")(rows)
    assert padded["input_ids"].shape == (3, 20)
    with pytest.raises(ValueError, match="max_length"):
        MoleculeTextCollator(tiny_tokenizer, max_length=0)


def test_torch_formatted_rows(collator, rows):
    ds = Dataset.from_list(rows).with_format("torch")
    batch = collator([ds[0], ds[1], ds[2]])
    reference = collator(rows)
    for key in ("x", "edge_index", "edge_attr", "atom2motif", "num_motifs", "fp"):
        assert torch.equal(batch["graph"][key], reference["graph"][key]), key


def test_send_to_device_keeps_batch(collator, rows):
    moved = send_to_device(collator(rows), "cpu")
    assert isinstance(moved, dict)
    assert isinstance(moved["graph"], Batch)
    assert moved["graph"].num_graphs == 3 and moved["input_ids"].device.type == "cpu"


def test_works_in_dataloader(collator, rows):
    loader = torch.utils.data.DataLoader(rows, batch_size=2, collate_fn=collator)
    sizes = [batch["graph"].num_graphs for batch in loader]
    assert sizes == [2, 1]


def test_mol2vec_index_carried_without_offset(collator, rows):
    rows = [dict(row, mol2vec_index=list(range(10 * i, 10 * i + len(row["x"])))) for i, row in enumerate(rows[:2])]
    graph = collator(rows)["graph"]
    expected = [i for row in rows for i in row["mol2vec_index"]]
    assert graph.mol2vec_index.tolist() == expected  # vocabulary ids: never offset like node indices
    assert "mol2vec_index" in collator.columns


def test_mol2vec_index_length_mismatch_names_row(collator, rows):
    rows = [dict(row) for row in rows[:2]]
    rows[1]["mol2vec_index"] = [0]
    rows[0]["mol2vec_index"] = [0] * len(rows[0]["x"])
    with pytest.raises(ValueError, match="Row 1 .*mol2vec_index"):
        collator(rows)


def test_null_optional_column_is_absent_and_partial_nulls_name_the_row(collator, rows):
    # a scored dataset read back from parquet/the Hub has null difficulty in its unscored (evaluation) splits
    unscored = [dict(row, difficulty=None) for row in rows[:2]]
    assert "difficulty" not in collator(unscored)
    mixed = [dict(rows[0]), dict(rows[1], difficulty=None)]
    with pytest.raises(ValueError, match="Row 1 .*'difficulty'"):
        collator(mixed)


def test_cached_text_features_replace_the_tokens(collator, rows):
    pooled = [{**row, "text_features": [float(i)] * 6} for i, row in enumerate(rows)]
    batch = collator(pooled)
    assert "input_ids" not in batch and batch["text_features"].shape == (len(rows), 6)
    assert batch["text_features"][2, 0] == 2.0 and batch["graph"].num_graphs == len(rows)
    tokens = [{**row, "text_features": [[1.0] * 4] * (i + 1)} for i, row in enumerate(rows[:3])]
    batch = collator(tokens)
    assert batch["text_features"].shape == (3, 3, 4)
    assert batch["attention_mask"].tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]


def _reference_batch(rows, with_mol2vec=False):
    """PyG's own batching of one MoleculeGraph per row: what rows_to_batch must reproduce."""
    fp = torch.from_numpy(fingerprint_matrix(rows))
    graphs = []
    for position, row in enumerate(rows):
        x = torch.tensor(row["x"]).view(-1, 9)
        graph = MoleculeGraph(
            x=x,
            edge_index=torch.tensor(row["edge_index"], dtype=torch.long).view(2, -1),
            edge_attr=torch.tensor(row["edge_attr"], dtype=torch.long).view(-1, 3),
            atom2motif=torch.tensor(row["atom2motif"]).view(-1),
            num_motifs=torch.tensor(row["num_motifs"]).view(()),
            num_nodes=x.size(0),
        )
        graph.fp = fp[position : position + 1]
        if with_mol2vec:
            graph.mol2vec_index = torch.tensor(row["mol2vec_index"]).view(-1)
        graphs.append(graph)
    return Batch.from_data_list(graphs)


@pytest.mark.parametrize("with_mol2vec", [False, True])
def test_rows_to_batch_is_pygs_batch_of_molecule_graphs(rows, with_mol2vec):
    rows = [rows[2], rows[0], rows[1], rows[0]]  # a graph without bonds first, a repeated one
    if with_mol2vec:
        rows = [dict(row, mol2vec_index=list(range(7, 7 + len(row["x"])))) for row in rows]
    batch, expected = rows_to_batch(rows), _reference_batch(rows, with_mol2vec)
    assert type(batch) is type(expected) and batch.num_graphs == expected.num_graphs == 4
    assert sorted(batch.keys()) == sorted(expected.keys())
    for key in expected.keys():
        if torch.is_tensor(expected[key]):
            assert batch[key].dtype == expected[key].dtype and torch.equal(batch[key], expected[key]), key
        else:
            assert batch[key] == expected[key], key
    # the bookkeeping behind get_example / to_data_list / index_select
    assert batch._slice_dict.keys() == expected._slice_dict.keys()
    for key, slices in expected._slice_dict.items():
        assert torch.equal(batch._slice_dict[key], slices), key
        assert torch.equal(batch._inc_dict[key], expected._inc_dict[key]), key
    for ours, theirs in zip(batch.to_data_list(), expected.to_data_list(), strict=True):
        assert ours.num_nodes == theirs.num_nodes
        for key in theirs.keys():
            if torch.is_tensor(theirs[key]):
                assert torch.equal(ours[key], theirs[key]), key
            else:
                assert ours[key] == theirs[key], key
    picked = batch.index_select([3, 0])
    assert torch.equal(Batch.from_data_list(picked).x, Batch.from_data_list(expected.index_select([3, 0])).x)


def test_rows_to_batch_names_the_row_of_inconsistent_columns(rows):
    flat = [value for atom in rows[1]["x"] for value in atom][:23]  # 23 values: not whole atoms
    with pytest.raises(ValueError, match=r"Row 1 of the batch has 23 values in 'x', not a multiple of 9"):
        rows_to_batch([rows[0], dict(rows[1], x=flat)])
    ragged = dict(rows[1], x=rows[1]["x"][:2] + [rows[1]["x"][2][:5]])
    with pytest.raises(ValueError, match=r"Row 1 of the batch has a malformed 'x' \(.*9 integer indices"):
        rows_to_batch([rows[0], ragged])
    no_bond_features = dict(rows[0], edge_attr=rows[0]["edge_attr"][:-1])
    with pytest.raises(ValueError, match=r"Row 1 of the batch has 22 edges and 21 `edge_attr` rows"):
        rows_to_batch([rows[1], no_bond_features])
    with_ids = dict(rows[1], mol2vec_index=[1, 2, 3])
    with pytest.raises(ValueError, match=r"Row 1 of the batch lacks the 'mol2vec_index' column and row 0 has it"):
        rows_to_batch([with_ids, rows[0]])
    with pytest.raises(ValueError, match=r"Row 1 of the batch has the 'mol2vec_index' column and row 0 does not"):
        rows_to_batch([rows[0], with_ids])
    with pytest.raises(ValueError, match=r"Row 0 of the batch has 2 `mol2vec_index` entries for 3 atoms"):
        rows_to_batch([dict(rows[1], mol2vec_index=[1, 2])])
