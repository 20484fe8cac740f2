"""Retrieval metrics against a brute-force reference (full score matrix, explicit loops) and hand-computed cases;
the evaluation plot helpers (class_hf/evaluation/plots.py) at the end."""

from __future__ import annotations

import logging
import math

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.image import imread

from class_hf.evaluation.plots import curves_figure, plot_curves, plot_sample_ratio, sample_ratio_figure
from class_hf.evaluation.retrieval import confusion_counts, metrics_from_ranks, ranks, retrieval_metrics


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _neg_euclidean(a: np.ndarray, b: np.ndarray) -> float:
    return -float(np.linalg.norm(a - b))


def brute_force_counts(text, mol, pair_score=_cosine, delta=0.0, extra_mol=None, extra_text=None):
    """Reference: the full score matrix in float64, one pair at a time, then counted with explicit loops."""
    text, mol = np.asarray(text, dtype=np.float64), np.asarray(mol, dtype=np.float64)
    mol_pool = mol if extra_mol is None else np.concatenate([mol, np.asarray(extra_mol, dtype=np.float64)])
    text_pool = text if extra_text is None else np.concatenate([text, np.asarray(extra_text, dtype=np.float64)])
    n = len(text)
    s_t2m = [[pair_score(text[i], mol_pool[j]) for j in range(len(mol_pool))] for i in range(n)]
    s_m2t = [[pair_score(text_pool[j], mol[i]) for j in range(len(text_pool))] for i in range(n)]
    n_t2m, n_m2t = [], []
    for i in range(n):
        n_t2m.append(sum(1 for j in range(len(mol_pool)) if j != i and s_t2m[i][j] >= s_t2m[i][i] - delta))
        n_m2t.append(sum(1 for j in range(len(text_pool)) if j != i and s_m2t[i][j] >= s_m2t[i][i] - delta))
    return n_t2m, n_m2t


def brute_force_metrics(n_t2m, n_m2t, ks=(1, 5, 10)):
    out = {}
    for direction, counts in (("t2m", n_t2m), ("m2t", n_m2t)):
        rank = [c + 1 for c in counts]
        for k in ks:
            out[f"{direction}_hits@{k}"] = sum(1 for r in rank if r <= k) / len(rank)
        out[f"{direction}_mrr"] = sum(1.0 / r for r in rank) / len(rank)
        out[f"{direction}_mean_rank"] = sum(rank) / len(rank)
    return out


def _random_pairs(n=40, dim=8, noise=1.0, seed=0):
    """Correlated pairs (so ranks spread over 1..n) with deliberate exact duplicates on both sides."""
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(n, dim, generator=g)
    mol = text + noise * torch.randn(n, dim, generator=g)
    mol[5] = mol[3]  # duplicate molecules: t_3 and t_5 each tie their own molecule with the other one
    mol[11] = mol[10]
    text[21] = text[20]  # duplicate texts: ties in m2t
    text[30], mol[30] = text[31], mol[31]  # a fully duplicated pair
    return text, mol


def _assert_counts(actual, expected):
    n_t2m, n_m2t = actual
    assert n_t2m.dtype == torch.long and n_m2t.dtype == torch.long
    assert n_t2m.tolist() == expected[0]
    assert n_m2t.tolist() == expected[1]


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
@pytest.mark.parametrize("delta", [0.0, 0.15])
def test_counts_match_brute_force_with_ties(chunk_size, delta):
    text, mol = _random_pairs()
    expected = brute_force_counts(text, mol, delta=delta)
    # The duplicates really produce ties in the reference, and the delta really changes something.
    assert expected[0][3] >= 1 and expected[0][5] >= 1 and expected[1][20] >= 1 and expected[1][30] >= 1
    if delta > 0:
        assert sum(expected[0]) > sum(brute_force_counts(text, mol)[0])
    _assert_counts(confusion_counts(text, mol, delta=delta, chunk_size=chunk_size), expected)


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_counts_with_extra_pools_match_brute_force(chunk_size):
    text, mol = _random_pairs(seed=1)
    g = torch.Generator().manual_seed(2)
    extra_mol = torch.randn(25, 8, generator=g)
    extra_text = torch.randn(17, 8, generator=g)
    extra_mol[4] = mol[7]  # a copy of a split molecule among the extras ties with it
    extra_text[9] = text[12]
    expected = brute_force_counts(text, mol, extra_mol=extra_mol, extra_text=extra_text)
    actual = confusion_counts(
        text, mol, chunk_size=chunk_size, extra_mol_embeds=extra_mol, extra_text_embeds=extra_text
    )
    _assert_counts(actual, expected)
    split_only = confusion_counts(text, mol)
    assert bool((actual[0] >= split_only[0]).all()) and bool((actual[1] >= split_only[1]).all())
    assert actual[0][7] >= split_only[0][7] + 1 and actual[1][12] >= split_only[1][12] + 1


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_custom_scorer_negative_euclidean(chunk_size):
    text, mol = _random_pairs(seed=3, noise=0.7)
    extra_mol = torch.randn(12, 8, generator=torch.Generator().manual_seed(4))

    def scorer(t, m):
        return -torch.cdist(t, m, compute_mode="donot_use_mm_for_euclid_dist")

    expected = brute_force_counts(text, mol, pair_score=_neg_euclidean, delta=0.1, extra_mol=extra_mol)
    assert expected != brute_force_counts(text, mol, delta=0.1, extra_mol=extra_mol)  # differs from cosine
    actual = confusion_counts(text, mol, scorer=scorer, delta=0.1, chunk_size=chunk_size, extra_mol_embeds=extra_mol)
    _assert_counts(actual, expected)


def test_custom_scorer_with_different_dimensions():
    g = torch.Generator().manual_seed(5)
    text, mol, weight = (
        torch.randn(30, 6, generator=g),
        torch.randn(30, 4, generator=g),
        torch.randn(6, 4, generator=g),
    )
    expected = brute_force_counts(text, mol, pair_score=lambda a, b: float(a @ weight.double().numpy() @ b))
    _assert_counts(confusion_counts(text, mol, scorer=lambda t, m: t @ weight @ m.T, chunk_size=4), expected)


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_metrics_match_brute_force(chunk_size):
    text, mol = _random_pairs(seed=6)
    extra_mol, extra_text = torch.randn(20, 8), torch.randn(20, 8)
    expected = brute_force_metrics(*brute_force_counts(text, mol, extra_mol=extra_mol, extra_text=extra_text))
    actual = retrieval_metrics(
        text, mol, extra_mol_embeds=extra_mol, extra_text_embeds=extra_text, chunk_size=chunk_size
    )
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert isinstance(actual[key], float)
        assert actual[key] == pytest.approx(value, abs=1e-12), key
    assert 0 < actual["t2m_hits@1"] < actual["t2m_hits@10"] < 1  # the data spread the ranks


def test_chunk_sizes_identical_on_larger_pool():
    """Exact duplicates tie whatever the chunking, also where BLAS kernels round equal rows differently."""
    g = torch.Generator().manual_seed(7)
    text, mol = torch.randn(64, 223, generator=g), torch.randn(64, 223, generator=g)
    mol = 0.3 * mol + text
    extra_mol, extra_text = torch.randn(1275, 223, generator=g), torch.randn(1211, 223, generator=g)
    extra_mol[100:110] = mol[2]
    extra_text[50:53] = text[1]
    results = [
        confusion_counts(text, mol, chunk_size=c, extra_mol_embeds=extra_mol, extra_text_embeds=extra_text)
        for c in (1, 2, 7, 64, 5000)
    ]
    for other in results[1:]:
        assert torch.equal(other[0], results[0][0]) and torch.equal(other[1], results[0][1])
    assert results[0][0][2] >= 10 and results[0][1][1] >= 3


@pytest.mark.parametrize("chunk_size", [1, 3, 8])
def test_duplicate_candidates_tie_with_custom_scorer(chunk_size):
    """m2t with a custom scorer puts the text pool on the left of the product, where BLAS may round equal rows
    differently (seen on CPU for pools of a few hundred rows and a few columns); duplicates must still tie."""
    g = torch.Generator().manual_seed(10)
    text = torch.randn(300, 203, generator=g)
    mol = text + 2.0 * torch.randn(300, 203, generator=g)
    extra_text = text[torch.arange(0, 300, 3)].clone()  # every third text once more among the extras
    text[131] = text[18]
    expected = brute_force_counts(text, mol, pair_score=lambda a, b: float(a @ b), extra_text=extra_text)
    assert all(expected[1][i] >= 1 for i in range(0, 300, 3))
    actual = confusion_counts(
        text, mol, scorer=lambda t, m: t @ m.T, chunk_size=chunk_size, extra_text_embeds=extra_text
    )
    _assert_counts(actual, expected)


def test_three_pairs_by_hand():
    # Unit vectors at angles: texts 0, 90, 45 degrees; molecules 0, 30, 45 degrees; cosine = cos(angle difference).
    def unit(deg):
        return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]

    text = torch.tensor([unit(0), unit(90), unit(45)])
    mol = torch.tensor([unit(0), unit(30), unit(45)])
    # t2m: t1 (90) scores m1 (30) 0.5 but m2 (45) 0.707 -> rank 2; others rank 1.
    # m2t: m1 (30) scores t1 (90) 0.5 but t0 0.866 and t2 0.966 -> rank 3; others rank 1.
    rank_t2m, rank_m2t = ranks(text, mol)
    assert rank_t2m.tolist() == [1, 2, 1] and rank_m2t.tolist() == [1, 3, 1]
    metrics = retrieval_metrics(text, mol, ks=(1, 2, 5))
    assert metrics == pytest.approx(
        {
            "t2m_hits@1": 2 / 3,
            "t2m_hits@2": 1.0,
            "t2m_hits@5": 1.0,
            "t2m_mrr": 5 / 6,
            "t2m_mean_rank": 4 / 3,
            "m2t_hits@1": 2 / 3,
            "m2t_hits@2": 2 / 3,
            "m2t_hits@5": 1.0,
            "m2t_mrr": 7 / 9,
            "m2t_mean_rank": 5 / 3,
        }
    )
    # delta = 0.2: everything scoring >= true - 0.2 is confused.
    _assert_counts(confusion_counts(text, mol, delta=0.2), ([1, 1, 1], [0, 2, 0]))


def test_ties_count_against_the_query():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mol = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # the same molecule twice
    rank_t2m, rank_m2t = ranks(text, mol)
    assert rank_t2m.tolist() == [2, 2]  # each text scores both molecules equally
    assert rank_m2t.tolist() == [1, 2]  # m1 prefers t0 (1.0) over its own t1 (0.0)
    assert retrieval_metrics(text, mol, ks=(1,))["t2m_hits@1"] == 0.0


def test_input_types_and_dtypes_agree():
    text, mol = _random_pairs(seed=8)
    reference = confusion_counts(text, mol)
    for t, m in [
        (text.numpy(), mol.numpy()),
        (text.double(), mol.double().numpy()),
        (text.numpy().astype(np.float64), mol),
    ]:
        result = confusion_counts(t, m)
        assert torch.equal(result[0], reference[0]) and torch.equal(result[1], reference[1])
    half = confusion_counts(text.half(), mol.bfloat16())  # lower precision is accepted (computed in float32)
    assert half[0].shape == (40,)


def test_metrics_from_ranks_prefix_and_ks():
    metrics = metrics_from_ranks(torch.tensor([1, 3, 10]), torch.tensor([2, 2, 2]), ks=(10, 1), prefix="test_all_")
    assert metrics == pytest.approx(
        {
            "test_all_t2m_hits@1": 1 / 3,
            "test_all_t2m_hits@10": 1.0,
            "test_all_t2m_mrr": (1 + 1 / 3 + 1 / 10) / 3,
            "test_all_t2m_mean_rank": 14 / 3,
            "test_all_m2t_hits@1": 0.0,
            "test_all_m2t_hits@10": 1.0,
            "test_all_m2t_mrr": 0.5,
            "test_all_m2t_mean_rank": 2.0,
        }
    )
    with pytest.raises(ValueError, match="ks"):
        metrics_from_ranks(torch.tensor([1]), torch.tensor([1]), ks=(0,))
    with pytest.raises(ValueError, match="rank_m2t"):
        metrics_from_ranks(torch.tensor([1]), torch.tensor([0]))


def test_custom_scorer_under_no_grad():
    text, mol = _random_pairs(seed=9)
    weight = torch.nn.Parameter(torch.eye(8))
    seen = []

    def scorer(t, m):
        out = t @ weight @ m.T
        seen.append(out.requires_grad)
        return out

    confusion_counts(text, mol, scorer=scorer, chunk_size=16)
    assert seen and not any(seen)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mol_embeds": torch.randn(4, 3)}, ValueError, "has 5 rows but `mol_embeds` has 4"),
        ({"mol_embeds": torch.randn(5, 2)}, ValueError, "equal dimensions"),
        ({"text_embeds": torch.ones(5, 3, dtype=torch.long)}, TypeError, "floating-point"),
        ({"text_embeds": [[1.0, 2.0, 3.0]]}, TypeError, "torch.Tensor or a numpy.ndarray"),
        ({"text_embeds": torch.randn(5)}, ValueError, "2-D"),
        ({"text_embeds": torch.randn(0, 3), "mol_embeds": torch.randn(0, 3)}, ValueError, "empty"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"delta": -0.1}, ValueError, "delta"),
        ({"delta": float("nan")}, ValueError, "delta"),
        ({"extra_mol_embeds": torch.randn(4, 2)}, ValueError, "extra_mol_embeds"),
        ({"extra_text_embeds": torch.randn(4, 7)}, ValueError, "extra_text_embeds"),
        ({"scorer": lambda t, m: t @ m.T[:, :1]}, ValueError, "shape"),
        ({"scorer": lambda t, m: torch.full((len(t), len(m)), float("nan"))}, ValueError, "NaN scores"),
    ],
)
def test_invalid_inputs(kwargs, error, match):
    args = {"text_embeds": torch.randn(5, 3), "mol_embeds": torch.randn(5, 3)} | kwargs
    with pytest.raises(error, match=match):
        confusion_counts(**args)


def test_non_finite_rows_are_reported():
    mol = torch.randn(5, 3)
    mol[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"`mol_embeds` has 1 row\(s\) with NaN or infinite values \(first: row 3\)"):
        confusion_counts(torch.randn(5, 3), mol)


# ------------------------------------------------------------------------------------------------------ plots
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0  # not a blank canvas


def test_plot_sample_ratio_writes_png(tmp_path):
    arms = {"CLASS (root)": [0.33, 0.58, 0.82, 1.0], "random sampling": [1.0, 1.0, 1.0, 1.0]}
    path = plot_sample_ratio(arms, tmp_path / "nested" / "ratio.png")
    assert path == tmp_path / "nested" / "ratio.png"
    _assert_png(path)


def test_sample_ratio_figure_holds_the_data():
    arms = {"a": [0.25, np.float32(0.5), 1.0], "b": [1.0, 1.0]}
    ax = sample_ratio_figure(arms).axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines[0].get_ydata(), [0.25, 0.5, 1.0])
    np.testing.assert_array_equal(lines[1].get_xdata(), [1, 2])


def test_plot_curves_writes_png_and_holds_the_data(tmp_path):
    history = {"CLASS": [(10.0, 0.31), (20.5, 0.45), (33.0, 0.52)], "baseline": [(15.0, 0.30), (30.0, 0.50)]}
    path = plot_curves(history, tmp_path / "mrr.png", "wall-clock (s)", "validation MRR", "MRR vs time")
    _assert_png(path)
    ax = curves_figure(history, "wall-clock (s)", "validation MRR", "MRR vs time").axes[0]
    assert ax.get_xlabel() == "wall-clock (s)" and ax.get_title() == "MRR vs time"
    np.testing.assert_allclose(ax.get_lines()[1].get_xydata(), [[15.0, 0.30], [30.0, 0.50]])


def test_pyplot_backend_untouched(tmp_path):
    before = matplotlib.get_backend()
    plot_curves({"a": [(0, 1), (1, 2)]}, tmp_path / "x.png", "x", "y", "t")
    assert matplotlib.get_backend() == before


def test_non_finite_points_are_reported(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="class_hf.evaluation.plots"):
        plot_curves({"diverged": [(0, 1.0), (1, float("nan")), (2, 0.5)]}, tmp_path / "l.png", "step", "loss", "t")
    assert "1 non-finite point(s) of 3" in caplog.text


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: plot_sample_ratio({}, p), "non-empty dict"),
        (lambda p: plot_sample_ratio({"a": []}, p), r"`epochs_to_fraction\['a'\]` is empty"),
        (lambda p: plot_sample_ratio({"a": [0.5, 1.5]}, p), "at epoch 2"),
        (lambda p: plot_sample_ratio({"a": [0.5, float("nan")]}, p), "at epoch 2"),
        (lambda p: plot_curves({"a": [(1.0,)]}, p, "x", "y", "t"), "number pairs"),
        (lambda p: plot_curves({"a": [(1.0, "high")]}, p, "x", "y", "t"), "number pairs"),
    ],
)
def test_plot_invalid_inputs(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_planned_arms_are_labelled_and_dashed():
    arms = {"CLASS": [0.25, 0.5, 1.0], "baseline": [1.0, 1.0, 1.0]}
    ax = sample_ratio_figure(arms, planned=["baseline"]).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"CLASS", "baseline (planned, not measured)"}
    assert lines["baseline (planned, not measured)"].get_linestyle() == "--"
    assert lines["CLASS"].get_linestyle() == "-"
    with pytest.raises(ValueError, match=r"`planned` names arms \['other'\]"):
        sample_ratio_figure(arms, planned=["other"])


def test_curves_mark_stage_boundaries_on_whole_epochs():
    history = {"text→molecule": [(1.0, 0.2), (2.0, 0.3), (3.0, 0.35), (4.0, 0.4)]}
    figure = curves_figure(
        history, "epoch", "MRR", "Validation MRR", boundaries=[(1.0, "stage 2 (50%)"), (2.0, "stage 3 (75%)")],
        integer_x=True,
    )  # fmt: skip
    ax = figure.axes[0]
    vertical = [line for line in ax.get_lines() if line.get_label().startswith("_")]
    assert [float(line.get_xdata()[0]) for line in vertical] == [1.0, 2.0]
    assert [text.get_text() for text in ax.texts] == ["stage 2 (50%)", "stage 3 (75%)"]
    figure.canvas.draw()
    ticks = [tick for tick in ax.get_xticks() if ax.get_xlim()[0] <= tick <= ax.get_xlim()[1]]
    assert all(float(tick).is_integer() for tick in ticks)
