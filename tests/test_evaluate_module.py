"""The optional ``evaluate`` module in ``metrics/class_retrieval`` (skipped when ``evaluate`` is not installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

evaluate = pytest.importorskip("evaluate")

MODULE = Path(__file__).resolve().parents[1] / "metrics" / "class_retrieval"


@pytest.fixture(scope="module")
def metric(tmp_path_factory):
    # evaluate copies the script into its modules cache: keep that under a temporary folder, not ~/.cache.
    patch = pytest.MonkeyPatch()
    patch.setattr(evaluate.config, "HF_MODULES_CACHE", str(tmp_path_factory.mktemp("modules")))
    try:
        yield evaluate.load(str(MODULE), keep_in_memory=True)
    finally:
        patch.undo()


def _brute_force(texts: np.ndarray, mols: np.ndarray, extra_mols: np.ndarray | None = None) -> dict[str, float]:
    """Ranks from the full cosine matrix; a tie with a wrong candidate counts against the query."""

    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    t, m = unit(texts), unit(mols)
    pool = m if extra_mols is None else np.concatenate([m, unit(extra_mols)])
    sims_t2m = t @ pool.T
    sims_m2t = m @ t.T
    out = {}
    for name, sims in (("t2m", sims_t2m), ("m2t", sims_m2t)):
        true = sims[np.arange(len(t)), np.arange(len(t))]
        rank = 1 + (sims >= true[:, None]).sum(axis=1) - 1  # minus the true partner itself
        out[f"{name}_hits@1"] = float(np.mean(rank <= 1))
        out[f"{name}_hits@5"] = float(np.mean(rank <= 5))
        out[f"{name}_mrr"] = float(np.mean(1.0 / rank))
        out[f"{name}_mean_rank"] = float(np.mean(rank))
    return out


def test_matches_a_brute_force_ranking_in_both_directions_and_with_extra_molecules(metric):
    rng = np.random.default_rng(0)
    texts = rng.normal(size=(40, 16))
    mols = texts + 1.5 * rng.normal(size=(40, 16))
    extra = rng.normal(size=(25, 16))
    result = metric.compute(predictions=texts, references=mols, ks=[1, 5])
    expected = _brute_force(texts, mols)
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-6), key
    assert 0 < result["t2m_mrr"] < 1  # the pairs are noisy: not every query is solved

    pooled = metric.compute(predictions=texts, references=mols, ks=[1, 5], extra_molecules=extra)
    expected_all = _brute_force(texts, mols, extra)
    assert pooled["t2m_mrr"] == pytest.approx(expected_all["t2m_mrr"], abs=1e-6)
    assert pooled["t2m_mean_rank"] >= result["t2m_mean_rank"]  # more candidates can only push the partner down
    assert pooled["m2t_mrr"] == pytest.approx(result["m2t_mrr"], abs=1e-6)  # no extra texts: m2t unchanged


def test_batches_accumulate_like_a_single_call(metric):
    rng = np.random.default_rng(1)
    texts = rng.normal(size=(30, 8))
    mols = texts + rng.normal(size=(30, 8))
    for start in range(0, 30, 7):
        metric.add_batch(predictions=texts[start : start + 7], references=mols[start : start + 7])
    assert metric.compute() == pytest.approx(metric.compute(predictions=texts, references=mols))


def test_mismatched_widths_are_reported(metric):
    with pytest.raises(ValueError, match="same width"):
        metric.compute(predictions=[[1.0, 0.0, 0.0]], references=[[1.0, 0.0]])
