"""``RetrievalEvaluator``: its keys, both candidate pools, CID de-duplication, and agreement with brute force."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_bert_config
from datasets import Dataset, concatenate_datasets

from class_hf.data.chebi20 import load_chebi20
from class_hf.data.features import MoleculeFeatures
from class_hf.evaluation.encoding import embed_molecules, embed_pairs
from class_hf.evaluation.evaluator import RetrievalEvaluator, metrics_by_pool
from class_hf.evaluation.retrieval import cosine_scores
from class_hf.models.registry import get_backbone

SPLIT_KEYS = {
    f"{direction}_{metric}"
    for direction in ("t2m", "m2t")
    for metric in ("hits@1", "hits@5", "hits@10", "mrr", "mean_rank")
} | {"mrr"}


@pytest.fixture(scope="module")
def pairs(chebi20_sample_dir):
    """40 evaluation pairs and 60 further pairs of the fixture, graphs only."""
    data = load_chebi20(chebi20_sample_dir / "molt5_sample.tsv")["train"]
    return data.select(range(40)), data.select(range(40, 100))


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    torch.manual_seed(0)
    config = make_tiny_bert_config(len(tiny_tokenizer))
    spec = get_backbone("dual_encoder")
    return spec.build(text_config=config, gnn_hidden_size=16, gnn_num_layers=2, projection_dim=16).eval()


@pytest.fixture(scope="module")
def collator(model, tiny_tokenizer):
    return MoleculeFeatures.for_model(model).collator(tiny_tokenizer, model=model)


def _brute_force_ranks(text: torch.Tensor, mol: torch.Tensor, pool_mol: torch.Tensor, pool_text: torch.Tensor):
    """Ranks from the full score matrices: 1 + #candidates scoring at least the true partner (ties count against)."""
    t2m = cosine_scores(text, pool_mol)
    m2t = cosine_scores(pool_text, mol).T
    n = text.shape[0]
    truth_t2m, truth_m2t = t2m[range(n), range(n)], m2t[range(n), range(n)]
    return (t2m >= truth_t2m[:, None]).sum(1), (m2t >= truth_m2t[:, None]).sum(1)


def test_split_pool_keys_mean_mrr_and_brute_force(pairs, model, collator):
    queries, _ = pairs
    evaluator = RetrievalEvaluator(queries, data_collator=collator, batch_size=16)
    metrics = evaluator(model)
    assert set(metrics) == SPLIT_KEYS
    assert evaluator.primary_metric == "mrr" and evaluator.pool_sizes == {"num_queries": 40}
    assert metrics["mrr"] == pytest.approx((metrics["t2m_mrr"] + metrics["m2t_mrr"]) / 2)
    text, mol = embed_pairs(model, MoleculeFeatures.for_model(model).featurize(queries), collator, show_progress=False)
    rank_t2m, rank_m2t = _brute_force_ranks(text, mol, mol, text)
    assert metrics["t2m_mrr"] == pytest.approx(float((1.0 / rank_t2m.double()).mean()))
    assert metrics["m2t_hits@5"] == pytest.approx(float((rank_m2t <= 5).double().mean()))
    assert metrics["t2m_mean_rank"] == pytest.approx(float(rank_t2m.double().mean()))


def test_all_pool_counts_every_cid_once(pairs, model, collator):
    queries, others = pairs
    # The further pairs, again with some of the split's own pairs and a repeat of themselves, and molecules alone.
    repeated = concatenate_datasets([others, queries.select(range(5)), others.select(range(3))])
    table = Dataset.from_dict({"cid": ["table-1", "table-2", queries["cid"][0]], "smiles": ["CCO", "CCN", "CCC"]})
    evaluator = RetrievalEvaluator(queries, data_collator=collator, extra_molecules=[repeated, table], name="test")
    metrics = evaluator(model)
    assert set(metrics) == {f"test_{key}" for key in SPLIT_KEYS} | {f"test_all_{key}" for key in SPLIT_KEYS}
    assert evaluator.pool_sizes == {
        "num_queries": 40,
        "all_num_candidate_molecules": 40 + 60 + 2,  # the split, the 60 further pairs once, the 2 new table CIDs
        "all_num_candidate_texts": 40 + 60,  # table rows have no description: molecules only
    }
    features = MoleculeFeatures.for_model(model)
    text, mol = embed_pairs(model, features.featurize(queries), collator, show_progress=False)
    other_text, other_mol = embed_pairs(model, features.featurize(others), collator, show_progress=False)
    table_mol = embed_molecules(model, features.featurize(table.select(range(2))), show_progress=False)
    rank_t2m, rank_m2t = _brute_force_ranks(
        text, mol, torch.cat([mol, other_mol, table_mol]), torch.cat([text, other_text])
    )
    assert metrics["test_all_t2m_mrr"] == pytest.approx(float((1.0 / rank_t2m.double()).mean()), abs=1e-6)
    assert metrics["test_all_m2t_mean_rank"] == pytest.approx(float(rank_m2t.double().mean()), abs=1e-6)
    # More candidates can only push the true partner down.
    assert metrics["test_all_t2m_mean_rank"] >= metrics["test_t2m_mean_rank"]
    pools = metrics_by_pool(metrics, name="test")
    assert set(pools) == {"split", "all"} and pools["all"]["t2m_mrr"] == metrics["test_all_t2m_mrr"]
    assert "mrr" not in pools["split"]  # the mean is not a metric of one direction


def test_a_second_call_reuses_the_featurized_data(pairs, model, collator, monkeypatch):
    queries, others = pairs
    evaluator = RetrievalEvaluator(queries, data_collator=collator, extra_molecules=others)
    first = evaluator(model)
    calls = []
    original = MoleculeFeatures.featurize
    monkeypatch.setattr(MoleculeFeatures, "featurize", lambda *a, **k: calls.append(1) or original(*a, **k))
    assert evaluator(model) == first and not calls


def test_the_model_reads_its_features_and_its_saved_tokenizer(pairs, tiny_tokenizer, tmp_path):
    queries, _ = pairs
    torch.manual_seed(0)
    spec = get_backbone("dual_encoder")
    config = make_tiny_bert_config(len(tiny_tokenizer))
    sizes = {"gnn_hidden_size": 16, "gnn_num_layers": 2, "projection_dim": 16}
    model = spec.build(text_config=config, use_fingerprint=True, **sizes)
    with pytest.raises(ValueError, match="needs a `data_collator`"):
        RetrievalEvaluator(queries)(model)  # built in memory: no tokenizer saved next to it
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)
    assert "fp_index" not in queries.column_names
    metrics = RetrievalEvaluator(queries)(loaded)  # fingerprints added, collator from the saved tokenizer
    assert 0 < metrics["t2m_mrr"] <= 1


def test_bad_arguments_are_reported(pairs):
    queries, _ = pairs
    with pytest.raises(ValueError, match="non-empty `dataset`"):
        RetrievalEvaluator(queries.select([]))
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
        RetrievalEvaluator(queries, batch_size=0)
    with pytest.raises(ValueError, match="`chunk_size` must be a positive integer"):
        RetrievalEvaluator(queries, chunk_size=True)
    assert "extra_molecules=none" in repr(RetrievalEvaluator(queries, name="val"))
