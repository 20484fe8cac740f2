"""Difficulty scoring: confusion counts against brute force, percentile ranks, sources and the fingerprint scorer."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from datasets import Dataset, Value

from class_hf.curriculum.difficulty import (
    add_difficulty_columns,
    attach_precomputed,
    compute_difficulty,
    difficulty_from_counts,
    score_difficulty,
    score_with_model,
)
from class_hf.curriculum.fingerprint_scorer import FingerprintScorer


# ----------------------------------------------------------------------------------------------------- references
def brute_force_counts(text: torch.Tensor, mol: torch.Tensor, delta: float, scorer) -> tuple[np.ndarray, np.ndarray]:
    """The definition, pair by pair, with a full score matrix in float64."""
    scores = scorer(text.double(), mol.double()).numpy()
    n = len(scores)
    n_t2m = np.zeros(n, dtype=np.int64)
    n_m2t = np.zeros(n, dtype=np.int64)
    for i in range(n):
        for j in range(n):
            if j == i:
                continue
            n_t2m[i] += scores[i, j] >= scores[i, i] - delta
            n_m2t[i] += scores[j, i] >= scores[i, i] - delta
    return n_t2m, n_m2t


def brute_force_percentile(total: np.ndarray) -> np.ndarray:
    n = len(total)
    out = np.zeros(n)
    for i in range(n):
        below = np.sum(total < total[i])
        ties = np.sum(total == total[i]) - 1
        out[i] = (below + ties / 2) / (n - 1)
    return out


def dot(text: torch.Tensor, mol: torch.Tensor) -> torch.Tensor:
    return text @ mol.T


def cosine(text: torch.Tensor, mol: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(text, dim=-1) @ torch.nn.functional.normalize(mol, dim=-1).T


def pairs(n: int) -> Dataset:
    return Dataset.from_dict({"cid": [str(i) for i in range(n)], "description": [f"text {i}" for i in range(n)]})


@pytest.fixture(scope="module")
def tied_embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    """Small integer embeddings (exact dot products) with many tied scores and duplicated rows."""
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(-2, 3, (60, 4), generator=generator).float()
    mol = torch.randint(-2, 3, (60, 4), generator=generator).float()
    mol[:30] = 2 * text[:30] + torch.randint(-1, 2, (30, 4), generator=generator)  # easier half
    text[10] = text[3]  # duplicated candidates and queries
    mol[20] = mol[5]
    mol[21] = mol[5]
    return text, mol


# ----------------------------------------------------------------------------------------------------- counts
@pytest.mark.parametrize("delta", [0.0, 2.0])
def test_counts_match_brute_force_with_ties(tied_embeddings, delta):
    text, mol = tied_embeddings
    expected_t2m, expected_m2t = brute_force_counts(text, mol, delta, dot)
    assert np.any(expected_t2m > 0) and np.any(expected_t2m == 0)  # the data has easy and hard pairs
    scores = dot(text, mol)
    strict = (scores > scores.diag()[:, None] - delta).sum(1) - 1
    assert np.any(strict.numpy() != expected_t2m)  # ... and candidates tied with the true one
    scored = score_difficulty(pairs(60), text, mol, scorer=dot, delta=delta, chunk_size=8)
    np.testing.assert_array_equal(scored["n_confusing_t2m"], expected_t2m)
    np.testing.assert_array_equal(scored["n_confusing_m2t"], expected_m2t)
    np.testing.assert_allclose(
        scored["difficulty"], brute_force_percentile(expected_t2m + expected_m2t), rtol=0, atol=1e-6
    )


def test_counts_match_brute_force_cosine_default():
    generator = torch.Generator().manual_seed(1)
    text, mol = torch.randn(40, 8, generator=generator), torch.randn(40, 8, generator=generator)
    mol[:20] += 1.5 * text[:20]  # half the pairs easy, half hard
    expected_t2m, expected_m2t = brute_force_counts(text, mol, 0.1, cosine)
    scored = score_difficulty(pairs(40), text, mol, delta=0.1)
    np.testing.assert_array_equal(scored["n_confusing_t2m"], expected_t2m)
    np.testing.assert_array_equal(scored["n_confusing_m2t"], expected_m2t)
    assert np.mean(scored["difficulty"][:20]) < np.mean(scored["difficulty"][20:])


def test_chunk_size_does_not_change_results(tied_embeddings):
    text, mol = tied_embeddings
    results = [
        score_difficulty(pairs(60), text, mol, scorer=dot, delta=0.5, chunk_size=size).to_dict()
        for size in (1, 7, 60, 1024)
    ]
    for other in results[1:]:
        assert other == results[0]


def test_scoring_embeddings_of_the_wrong_length_raises():
    with pytest.raises(ValueError, match="10 rows.*`text_embeds` 9"):
        score_difficulty(pairs(10), torch.randn(9, 4), torch.randn(9, 4))


# ----------------------------------------------------------------------------------------------------- percentile
def test_percentile_definition_with_ties():
    d = difficulty_from_counts([0, 0, 3, 1], [0, 0, 2, 0])  # N = 0, 0, 5, 1
    np.testing.assert_allclose(d, [1 / 6, 1 / 6, 1.0, 2 / 3], rtol=1e-6)
    assert d.dtype == np.float32


def test_percentile_edge_cases():
    np.testing.assert_array_equal(difficulty_from_counts([4], [2]), [0.0])
    np.testing.assert_allclose(difficulty_from_counts([3, 3, 3], [0, 0, 0]), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(difficulty_from_counts([0, 1, 2, 3, 4], [0] * 5), [0, 0.25, 0.5, 0.75, 1.0])
    assert difficulty_from_counts([], []).shape == (0,)


def test_percentile_matches_brute_force_and_equal_totals_get_equal_difficulty():
    rng = np.random.default_rng(0)
    t2m, m2t = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    d = difficulty_from_counts(t2m, m2t)
    total = t2m + m2t
    np.testing.assert_allclose(d, brute_force_percentile(total), atol=1e-6)
    for value in np.unique(total):
        assert len(set(d[total == value].tolist())) == 1
    order = np.argsort(total, kind="stable")
    assert np.all(np.diff(d[order]) >= 0)
    assert 0.0 <= d.min() and d.max() <= 1.0


# ----------------------------------------------------------------------------------------------------- columns
def test_add_difficulty_columns_features_and_replacement():
    ds = add_difficulty_columns(pairs(4), torch.tensor([0, 2, 1, 0]), np.array([1, 0, 1, 0]))
    assert ds.features["n_confusing_t2m"] == Value("int64")
    assert ds.features["n_confusing_m2t"] == Value("int64")
    assert ds.features["difficulty"] == Value("float32")
    assert ds["n_confusing_t2m"][:] == [0, 2, 1, 0]
    np.testing.assert_allclose(ds["difficulty"], [1 / 3, 5 / 6, 5 / 6, 0.0], rtol=1e-6)
    again = add_difficulty_columns(ds, [0, 0, 0, 5], [0, 0, 0, 0])
    assert again.column_names.count("difficulty") == 1
    assert again["difficulty"][3] == 1.0
    assert again["cid"][:] == ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    ("n_t2m", "n_m2t", "match"),
    [
        ([0, 1, 2], [0, 1, 2, 3], "4 rows but `n_t2m` has 3 and `n_m2t` has 4"),
        ([0, 1, 2, 3], [0, 1], "4 rows but `n_t2m` has 4 and `n_m2t` has 2"),
        ([0, -1, 2, 3], [0, 1, 2, 3], "non-negative; row 1"),
        ([0, 0.5, 2, 3], [0, 1, 2, 3], "whole numbers"),
    ],
)
def test_add_difficulty_columns_rejects_bad_counts(n_t2m, n_m2t, match):
    with pytest.raises(ValueError, match=match):
        add_difficulty_columns(pairs(4), n_t2m, n_m2t)


# ----------------------------------------------------------------------------------------------------- precomputed
def test_precomputed_present_is_kept():
    ds = add_difficulty_columns(pairs(5), [0, 1, 2, 3, 4], [0, 0, 0, 0, 0])
    scored, info = compute_difficulty(ds, "precomputed")
    assert scored["difficulty"][:] == ds["difficulty"][:]
    assert info["source"] == "precomputed" and info["seconds"] >= 0
    assert info["zero_confusion_share"] == pytest.approx(0.2)
    assert info["scored_t2m_mrr"] == pytest.approx(np.mean(1 / np.arange(1, 6)))


def test_precomputed_missing_or_invalid_column_raises():
    with pytest.raises(ValueError, match="needs a `difficulty` column"):
        compute_difficulty(pairs(5), "precomputed")
    bad = pairs(3).add_column("difficulty", [0.1, 1.5, 0.2])
    with pytest.raises(ValueError, match=r"`difficulty` must lie in \[0, 1\].*row 1"):
        compute_difficulty(bad, "precomputed")
    missing = pairs(3).add_column("difficulty", [0.1, None, 0.2])
    with pytest.raises(ValueError, match="`difficulty` is missing or not finite in 1 rows"):
        compute_difficulty(missing, "precomputed")


def test_precomputed_from_a_saved_dataset_matches_by_cid_and_checks_length(tmp_path):
    scored = add_difficulty_columns(pairs(6), [5, 4, 3, 2, 1, 0], [0, 0, 0, 0, 0, 0])
    scored.save_to_disk(tmp_path / "scores")
    # Reversed rows: matched by cid, not position.
    target = pairs(6).select([5, 4, 3, 2, 1, 0])
    attached, info = compute_difficulty(target, f"precomputed:{tmp_path / 'scores'}")
    assert attached["n_confusing_t2m"][:] == [0, 1, 2, 3, 4, 5]
    assert info["source"].startswith("precomputed:")
    # Without a cid column to match by, the lengths must agree.
    no_cid = scored.remove_columns("cid")
    with pytest.raises(ValueError, match="have 6 rows but the dataset has 4"):
        attach_precomputed(pairs(4), no_cid)
    with pytest.raises(ValueError, match="1 of 7 rows have no precomputed score.*'6'"):
        attach_precomputed(pairs(7), scored)


def test_unknown_source_raises():
    with pytest.raises(ValueError, match="Unknown `difficulty_source` 'oracle'"):
        compute_difficulty(pairs(3), "oracle")


def test_callable_source_uses_its_score():
    generator = torch.Generator().manual_seed(2)
    text, mol = torch.randn(30, 6, generator=generator), torch.randn(30, 6, generator=generator)

    class Source:
        name = "random"

        def __call__(self, dataset):
            return text[: len(dataset)], mol[: len(dataset)]

        @staticmethod
        def score(t, m):
            return -(torch.cdist(t, m))  # a non-cosine scorer

    scored, info = compute_difficulty(pairs(30), Source())
    expected_t2m, expected_m2t = brute_force_counts(text, mol, 0.0, lambda t, m: -torch.cdist(t, m))
    np.testing.assert_array_equal(scored["n_confusing_t2m"], expected_t2m)
    np.testing.assert_array_equal(scored["n_confusing_m2t"], expected_m2t)
    assert info["source"] == "random"


# ----------------------------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def chebi_pairs(chebi20_sample_dir):
    from class_hf.data.chebi20 import load_chebi20

    return load_chebi20(chebi20_sample_dir / "molt5_sample.tsv")["train"]


@pytest.fixture(scope="module")
def tiny_text_encoder(tiny_tokenizer):
    from conftest import make_tiny_bert_config
    from transformers import BertModel

    torch.manual_seed(0)
    return BertModel(make_tiny_bert_config(len(tiny_tokenizer)))


def test_fingerprint_scorer_beats_chance_on_the_pairs_it_was_fitted_on(chebi_pairs, tiny_text_encoder, tiny_tokenizer):
    from class_hf.evaluation.retrieval import retrieval_metrics

    before = {k: v.clone() for k, v in tiny_text_encoder.state_dict().items()}
    tiny_text_encoder.train()
    scorer = FingerprintScorer(tiny_text_encoder, tiny_tokenizer, show_progress=False)
    with pytest.raises(RuntimeError, match="not fitted"):
        scorer(chebi_pairs)
    scorer.fit(chebi_pairs, max_epochs=10, patience=3)
    text_embeds, mol_embeds = scorer(chebi_pairs)
    assert text_embeds.shape == mol_embeds.shape == (300, 256)
    metrics = retrieval_metrics(text_embeds, mol_embeds, scorer=scorer.score)
    chance = sum(1 / r for r in range(1, 301)) / 300  # expected MRR of a random ranking, about 0.021
    assert metrics["t2m_mrr"] > 5 * chance and metrics["m2t_mrr"] > 5 * chance, metrics
    assert 1 <= scorer.fit_info["fingerprint_best_epoch"] <= 10
    assert scorer.fit_info["fingerprint_eval_pairs"] == 30
    # The frozen encoder is untouched, and its train/eval mode restored.
    assert tiny_text_encoder.training
    for name, value in tiny_text_encoder.state_dict().items():
        assert torch.equal(value, before[name]), name
    # Encoding raw texts and SMILES gives the same embeddings as the dataset path.
    torch.testing.assert_close(scorer.encode_text(chebi_pairs["description"][:5]), text_embeds[:5])
    torch.testing.assert_close(scorer.encode_molecule(chebi_pairs["smiles"][:5]), mol_embeds[:5])


def test_fingerprint_scorer_text_features_are_computed_once_and_reloaded(
    chebi_pairs, tiny_text_encoder, tiny_tokenizer
):
    pairs = chebi_pairs.select(range(40))
    calls = []  # texts per forward pass of the encoder
    hook = tiny_text_encoder.register_forward_hook(
        lambda _module, _args, _kwargs, out: calls.append(out.last_hidden_state.shape[0]), with_kwargs=True
    )
    try:
        first = FingerprintScorer(tiny_text_encoder, tiny_tokenizer, show_progress=False)
        text, mol = first.dataset_features(pairs)
        assert sum(calls) == 40 + 1  # every text, and the one-word probe of the feature size
        assert text.shape == (40, tiny_text_encoder.config.hidden_size) and mol.shape == (40, 2048)
        torch.testing.assert_close(text, first.text_features(pairs["description"][:]))
        calls.clear()
        # another scorer (another seed, run or process) reloads them from the cache: only the probe runs
        second = FingerprintScorer(tiny_text_encoder, tiny_tokenizer, seed=1, show_progress=False)
        again, _ = second.dataset_features(pairs)
        assert calls == [1]
        assert torch.equal(again, text)
        # other weights are another key: encoded again
        other = copy.deepcopy(tiny_text_encoder)
        with torch.no_grad():
            other.embeddings.word_embeddings.weight.add_(1.0)
        changed, _ = FingerprintScorer(other, tiny_tokenizer, show_progress=False).dataset_features(pairs)
        assert not torch.allclose(changed, text)
    finally:
        hook.remove()
    assert tiny_text_encoder.training  # left in the mode it was in


def test_fingerprint_scorer_with_eval_dataset_reports_its_mrr(chebi_pairs, tiny_text_encoder, tiny_tokenizer):
    train, held_out = chebi_pairs.select(range(200)), chebi_pairs.select(range(200, 300))
    scorer = FingerprintScorer(tiny_text_encoder, tiny_tokenizer, projection_dim=32, show_progress=False)
    scorer.fit(train, eval_dataset=held_out, max_epochs=5, patience=2, batch_size=None)
    assert scorer.fit_info["fingerprint_eval_pairs"] == 100
    assert 0 < scorer.fit_info["fingerprint_eval_mrr"] <= 1
    assert scorer(held_out)[0].shape == (100, 32)


def test_compute_difficulty_fingerprint_scores_out_of_fold(chebi_pairs, tiny_text_encoder, tiny_tokenizer):
    fit = {"max_epochs": 8, "patience": 2, "projection_dim": 32}
    common = {"text_encoder": tiny_text_encoder, "tokenizer": tiny_tokenizer, "show_progress": False}
    scored, info = compute_difficulty(chebi_pairs, "fingerprint", fingerprint_kwargs=fit, **common)
    assert {"n_confusing_t2m", "n_confusing_m2t", "difficulty"} <= set(scored.column_names)
    assert scored["cid"][:] == chebi_pairs["cid"][:]
    assert info["source"] == "fingerprint" and info["seconds"] > 0 and info["num_pairs"] == 300
    assert info["fingerprint_cross_fit_folds"] == 5
    t2m, m2t = np.asarray(scored["n_confusing_t2m"]), np.asarray(scored["n_confusing_m2t"])
    assert t2m.max() <= 299 and m2t.max() <= 299  # ranked against the whole pool of 300
    assert info["zero_confusion_share"] == pytest.approx(np.mean(t2m + m2t == 0))
    # Above chance (0.021, sd about 0.004 over 300 queries) on pairs each fold's scorer never saw, even with a random
    # tiny text encoder.
    assert info["scored_t2m_mrr"] > 0.032 and info["scored_m2t_mrr"] > 0.032
    np.testing.assert_allclose(scored["difficulty"], brute_force_percentile(t2m + m2t), atol=1e-6)
    # Scoring the pairs the projections were fitted on makes them look easier than out of fold.
    _, in_sample = compute_difficulty(
        chebi_pairs, "fingerprint", fingerprint_kwargs={**fit, "cross_fit_folds": 0}, **common
    )
    assert in_sample["fingerprint_cross_fit_folds"] == 0
    assert in_sample["scored_t2m_mrr"] > info["scored_t2m_mrr"]
    assert in_sample["zero_confusion_share"] > info["zero_confusion_share"]


def test_cross_fit_needs_a_fitted_scorer_and_valid_folds(chebi_pairs, tiny_text_encoder, tiny_tokenizer):
    scorer = FingerprintScorer(tiny_text_encoder, tiny_tokenizer, projection_dim=8, show_progress=False)
    small = chebi_pairs.select(range(20))
    with pytest.raises(RuntimeError, match="not fitted"):
        scorer.cross_fit_counts(small)
    scorer.fit(small, max_epochs=2, patience=1)
    with pytest.raises(ValueError, match=r"`folds` must lie in \[2, 10\] for 20 pairs"):
        scorer.cross_fit_counts(small, folds=11)


def test_fingerprint_needs_a_text_encoder(chebi_pairs):
    with pytest.raises(ValueError, match="needs a text encoder"):
        compute_difficulty(chebi_pairs, "fingerprint")


# ----------------------------------------------------------------------------------------------------- backbones
@pytest.fixture(scope="module")
def featurized(chebi_pairs):
    from class_hf.data.graphs import featurize_molecules

    return featurize_molecules(chebi_pairs.select(range(96)), desc=None)


def make_backbone(tokenizer):
    from conftest import make_tiny_bert_config

    from class_hf.models.configuration_dual_encoder import DualEncoderConfig
    from class_hf.models.modeling_dual_encoder import DualEncoderModel

    torch.manual_seed(0)
    config = DualEncoderConfig(
        text_config=make_tiny_bert_config(len(tokenizer)), gnn_hidden_size=16, gnn_num_layers=2, projection_dim=16
    )
    return DualEncoderModel(config)


@pytest.fixture()
def collator(tiny_tokenizer):
    from class_hf.data.collator import MoleculeTextCollator

    return MoleculeTextCollator(tiny_tokenizer, max_length=64)


def test_warmup_scores_with_a_trained_copy_and_leaves_the_model_alone(featurized, tiny_tokenizer, collator):
    model = make_backbone(tiny_tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    untrained = score_with_model(model, featurized, collator, show_progress=False)
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    scored, info = compute_difficulty(
        featurized,
        "warmup",
        model=model,
        data_collator=collator,
        batch_size=16,
        warmup_learning_rate=1e-2,
        eval_dataset=featurized.select(range(32)),
        show_progress=False,
    )
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), f"warm-up changed the backbone's {name}"
    torch.testing.assert_close(torch.rand(3), expected_draw)  # the global RNG is left as it was
    assert info["source"] == "warmup" and info["seconds"] >= info["warmup_seconds"] > 0
    assert info["warmup_pairs"] == math.ceil(0.25 * 96)
    assert 0 < info["eval_t2m_mrr"] <= 1 and 0 <= info["zero_confusion_share"] <= 1
    assert scored["n_confusing_t2m"][:] != untrained["n_confusing_t2m"][:]  # scored by the warmed copy
    total = np.asarray(scored["n_confusing_t2m"]) + np.asarray(scored["n_confusing_m2t"])
    np.testing.assert_allclose(scored["difficulty"], brute_force_percentile(total), atol=1e-6)


def test_warmup_needs_model_and_collator(featurized, tiny_tokenizer):
    with pytest.raises(ValueError, match="needs the backbone"):
        compute_difficulty(featurized, "warmup")
    with pytest.raises(ValueError, match="needs `data_collator`"):
        compute_difficulty(featurized, "warmup", model=make_backbone(tiny_tokenizer))


def test_score_with_model_matches_brute_force_on_its_embeddings(featurized, tiny_tokenizer, collator):
    from class_hf.evaluation.encoding import embed_pairs

    model = make_backbone(tiny_tokenizer).eval()
    scored = score_with_model(model, featurized, collator, batch_size=32, chunk_size=10, show_progress=False)
    text, mol = embed_pairs(model, featurized, collator, batch_size=32, show_progress=False)
    expected_t2m, expected_m2t = brute_force_counts(text, mol, 0.0, model.score)
    # Float64 brute force vs float32 chunks may disagree only on near-exact ties.
    assert np.mean(np.asarray(scored["n_confusing_t2m"]) == expected_t2m) > 0.97
    assert np.mean(np.asarray(scored["n_confusing_m2t"]) == expected_m2t) > 0.97


def test_model_source_loads_a_checkpoint(tmp_path, featurized, tiny_tokenizer, collator):
    model = make_backbone(tiny_tokenizer).eval()
    model.save_pretrained(tmp_path / "ckpt")
    tiny_tokenizer.save_pretrained(tmp_path / "ckpt")
    expected = score_with_model(model, featurized, collator, show_progress=False)
    scored, info = compute_difficulty(featurized, f"model:{tmp_path / 'ckpt'}", show_progress=False)
    assert scored["n_confusing_t2m"][:] == expected["n_confusing_t2m"][:]
    assert scored["n_confusing_m2t"][:] == expected["n_confusing_m2t"][:]
    assert info["source"] == f"model:{tmp_path / 'ckpt'}" and info["seconds"] > 0
