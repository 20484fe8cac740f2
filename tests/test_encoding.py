"""embed_pairs / embed_texts / embed_molecules with a tiny fake backbone that follows the contract."""

from __future__ import annotations

import datasets
import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from class_hf.evaluation.encoding import embed_molecules, embed_pairs, embed_texts

DIM = 6


class FakeBackbone(torch.nn.Module):
    """encode_text: mean of an embedding table over the unmasked input_ids; encode_molecule: mean over atoms of an
    embedding of the atomic-number column. Records, per call, whether grad was on and whether it was in train mode."""

    def __init__(self, vocab_size: int = 50, num_elements: int = 120):
        super().__init__()
        self.text_table = torch.nn.Embedding(vocab_size, DIM)
        self.atom_table = torch.nn.Embedding(num_elements, DIM)
        self.dropout = torch.nn.Dropout(0.5)
        self.calls: list[tuple[str, bool, bool]] = []

    def encode_text(self, input_ids, attention_mask):
        self.calls.append(("text", torch.is_grad_enabled(), self.training or self.dropout.training))
        mask = attention_mask.unsqueeze(-1).float()
        return self.dropout((self.text_table(input_ids) * mask).sum(1) / mask.sum(1))

    def encode_molecule(self, graph):
        self.calls.append(("mol", torch.is_grad_enabled(), self.training or self.dropout.training))
        atoms = self.atom_table(graph.x[:, 0])
        return self.dropout(scatter(atoms, graph.batch, dim=0, dim_size=graph.num_graphs, reduce="mean"))

    # What the tests expect, computed one row at a time without any batching.
    def expected_text(self, ids):
        return self.text_table.weight[torch.tensor(ids)].mean(0)

    def expected_mol(self, x):
        return self.atom_table.weight[torch.tensor(x)[:, 0]].mean(0)


def trivial_collator(rows):
    """Pads `ids` with 0 and batches `x` / `edge_index` into a PyG Batch."""
    length = max(len(r["ids"]) for r in rows)
    input_ids = torch.zeros(len(rows), length, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r["ids"])] = torch.tensor(r["ids"])
        attention_mask[i, : len(r["ids"])] = 1
    graphs = [
        Data(x=torch.tensor(r["x"], dtype=torch.long), edge_index=torch.tensor(r["edge_index"], dtype=torch.long))
        for r in rows
    ]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "graph": Batch.from_data_list(graphs)}


def make_rows(n: int = 23, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        num_tokens = int(torch.randint(1, 9, (1,), generator=g))
        num_atoms = int(torch.randint(1, 7, (1,), generator=g))
        x = torch.randint(0, 120, (num_atoms, 9), generator=g)
        chain = torch.arange(num_atoms - 1)
        edge_index = torch.stack([torch.cat([chain, chain + 1]), torch.cat([chain + 1, chain])])
        rows.append(
            {
                "ids": torch.randint(1, 50, (num_tokens,), generator=g).tolist(),
                "x": x.tolist(),
                "edge_index": edge_index.tolist(),
            }
        )
    return rows


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return FakeBackbone()


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_embed_pairs_matches_row_by_row_reference(model, batch_size):
    rows = make_rows()
    text, mol = embed_pairs(model, rows, trivial_collator, batch_size=batch_size, show_progress=False)
    assert text.shape == (23, DIM) and mol.shape == (23, DIM)
    assert text.dtype == torch.float32 and mol.dtype == torch.float32 and not text.requires_grad
    with torch.no_grad():
        expected_text = torch.stack([model.expected_text(r["ids"]) for r in rows])
        expected_mol = torch.stack([model.expected_mol(r["x"]) for r in rows])
    torch.testing.assert_close(text, expected_text)
    torch.testing.assert_close(mol, expected_mol)
    assert len(model.calls) == 2 * -(-23 // batch_size)


def test_embed_pairs_from_hf_dataset_equals_list(model):
    rows = make_rows(seed=1)
    dataset = datasets.Dataset.from_list(rows)
    from_list = embed_pairs(model, rows, trivial_collator, batch_size=5, show_progress=False)
    from_dataset = embed_pairs(model, dataset, trivial_collator, batch_size=5, show_progress=True)
    assert torch.equal(from_list[0], from_dataset[0]) and torch.equal(from_list[1], from_dataset[1])


def test_eval_mode_no_grad_and_modes_restored(model):
    model.train()
    model.text_table.eval()  # a mixed state must come back exactly as it was
    embed_pairs(model, make_rows(5), trivial_collator, batch_size=2, show_progress=False)
    assert model.calls and all(not grad and not training for _, grad, training in model.calls)
    assert model.training and model.dropout.training and not model.text_table.training
    model.eval()
    embed_pairs(model, make_rows(5), trivial_collator, show_progress=False)
    assert not any(m.training for m in model.modules())


def test_eval_mode_restored_after_an_error(model):
    model.train()

    def broken_collator(_rows):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        embed_pairs(model, make_rows(3), broken_collator, show_progress=False)
    assert model.training and model.dropout.training


def test_collator_missing_keys_and_dropped_rows(model):
    def no_graph(rows):
        batch = trivial_collator(rows)
        del batch["graph"]
        return batch

    with pytest.raises(KeyError, match=r"missing \['graph'\]"):
        embed_pairs(model, make_rows(3), no_graph, show_progress=False)

    def drops_a_row(rows):
        return trivial_collator(rows[:-1] if len(rows) > 1 else rows)

    with pytest.raises(ValueError, match=r"rows 0\.\.3 \(4 rows\)"):
        embed_pairs(model, make_rows(8), drops_a_row, batch_size=4, show_progress=False)
    with pytest.raises(ValueError, match="empty"):
        embed_pairs(model, [], trivial_collator, show_progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        embed_pairs(model, make_rows(3), trivial_collator, batch_size=0, show_progress=False)


def test_embed_texts_with_tokenizer(tiny_tokenizer):
    texts = ["the molecule is an acid .", "a sugar", "it is a conjugate base of an amino acid ."]
    model = FakeBackbone(vocab_size=len(tiny_tokenizer))
    embeds = embed_texts(model, texts, tiny_tokenizer, batch_size=2, show_progress=False)
    with torch.no_grad():
        expected = torch.stack([model.expected_text(tiny_tokenizer(t)["input_ids"]) for t in texts])
    torch.testing.assert_close(embeds, expected)
    truncated = embed_texts(model, texts, tiny_tokenizer, max_length=3, show_progress=False)
    with torch.no_grad():
        torch.testing.assert_close(truncated[2], model.expected_text(tiny_tokenizer(texts[2])["input_ids"][:2] + [3]))
    with pytest.raises(TypeError, match="sequence of strings"):
        embed_texts(model, "a single string", tiny_tokenizer)


def test_embed_molecules_matches_embed_pairs(model):
    rows = make_rows(seed=2)
    _, mol = embed_pairs(model, rows, trivial_collator, show_progress=False)
    alone = embed_molecules(
        model, datasets.Dataset.from_list(rows), trivial_collator, batch_size=4, show_progress=False
    )
    torch.testing.assert_close(alone, mol)
    assert [kind for kind, _, _ in model.calls[-6:]] == ["mol"] * 6  # 23 rows in batches of 4, no text encoding


# ------------------------------------------------------------------------- with the real data pipeline
@pytest.fixture(scope="module")
def featurized_sample(chebi20_sample_dir):
    from class_hf.data.chebi20 import load_chebi20
    from class_hf.data.graphs import featurize_molecules

    pairs = load_chebi20(chebi20_sample_dir / "orma_sample.csv", splits="test")["test"].select(range(24))
    return featurize_molecules(pairs, fingerprints=True, desc=None)


def test_embed_pairs_with_molecule_text_collator(featurized_sample, tiny_tokenizer):
    from class_hf.data.collator import MoleculeTextCollator

    model = FakeBackbone(vocab_size=len(tiny_tokenizer))
    collator = MoleculeTextCollator(tiny_tokenizer, max_length=32)
    text, mol = embed_pairs(model, featurized_sample, collator, batch_size=5, show_progress=False)
    with torch.no_grad():
        expected_text = [
            model.expected_text(tiny_tokenizer(row["description"], truncation=True, max_length=32)["input_ids"])
            for row in featurized_sample
        ]
        expected_mol = [model.expected_mol(row["x"]) for row in featurized_sample]
    torch.testing.assert_close(text, torch.stack(expected_text))
    torch.testing.assert_close(mol, torch.stack(expected_mol))
    # Molecules alone: the default graph-only batching needs no text column, and agrees with the pair encoding.
    without_text = featurized_sample.remove_columns("description")
    torch.testing.assert_close(embed_molecules(model, without_text, batch_size=7, show_progress=False), mol)
    torch.testing.assert_close(embed_molecules(model, featurized_sample, collator, show_progress=False), mol)


def test_dual_encoder_end_to_end(featurized_sample, tiny_tokenizer, tiny_bert_config):
    """A real backbone, the real collator, then ranking with the backbone's own score."""
    from class_hf.data.collator import MoleculeTextCollator
    from class_hf.evaluation.retrieval import retrieval_metrics
    from class_hf.models.configuration_dual_encoder import DualEncoderConfig
    from class_hf.models.modeling_dual_encoder import DualEncoderModel

    torch.manual_seed(0)
    config = DualEncoderConfig(text_config=tiny_bert_config, gnn_hidden_size=16, gnn_num_layers=2, projection_dim=8)
    model = DualEncoderModel(config).train()
    collator = MoleculeTextCollator(tiny_tokenizer, max_length=32)
    text, mol = embed_pairs(model, featurized_sample, collator, batch_size=8, show_progress=False)
    assert model.training  # restored
    again, _ = embed_pairs(model, featurized_sample, collator, batch_size=24, show_progress=False)
    torch.testing.assert_close(again, text)  # eval mode: no dropout, batch size does not matter
    with torch.no_grad():
        model.eval()
        batch = collator([featurized_sample[3]])
        torch.testing.assert_close(text[3], model.encode_text(batch["input_ids"], batch["attention_mask"])[0])
    metrics = retrieval_metrics(text, mol, scorer=model.score)
    assert metrics == retrieval_metrics(text, mol)  # its score is the cosine
