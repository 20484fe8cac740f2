"""Pacing functions: values, stages, progress and the planned sample passes / optimizer steps."""

from __future__ import annotations

import math

import pytest

from class_hf.curriculum.pacing import (
    CallablePacing,
    GeometricPacing,
    LinearPacing,
    RootPacing,
    StagedPacing,
    get_pacing,
    planned_optimizer_steps,
    planned_sample_passes,
    pool_size,
    sample_pass_saving,
)


def test_staged_default_splits_epochs_equally_over_four_stages():
    pacing = get_pacing("staged")
    assert pacing.num_stages == 4
    assert [pacing.fraction(e, 8) for e in range(8)] == [0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0]
    assert [pacing.stage(e, 8) for e in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [pacing.progress(e, 8) for e in range(8)] == [0, 0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1]
    # Uneven split: every stage present, the last epoch in the last stage.
    assert [pacing.stage(e, 6) for e in range(6)] == [0, 0, 1, 2, 2, 3]


def test_staged_fewer_epochs_than_stages_ends_on_all_data():
    pacing = StagedPacing(num_stages=4)
    assert [pacing.fraction(e, 2) for e in range(2)] == [0.25, 1.0]
    assert pacing.fraction(0, 1) == 1.0
    assert [pacing.stage(e, 3) for e in range(3)] == [0, 2, 3]  # round(e * 3 / 2): 0, 1.5 -> 2, 3


def test_staged_custom_fractions_and_validation():
    pacing = StagedPacing(fractions=[0.1, 0.3, 1.0])
    assert [pacing.fraction(e, 3) for e in range(3)] == [0.1, 0.3, 1.0]
    assert StagedPacing(num_stages=5, start_fraction=0.2).fractions == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    with pytest.raises(ValueError, match="last stage"):
        StagedPacing(fractions=[0.2, 0.5])
    with pytest.raises(ValueError, match="non-decreasing"):
        StagedPacing(fractions=[0.5, 0.2, 1.0])
    with pytest.raises(ValueError, match="start_fraction"):
        StagedPacing(start_fraction=0.0)
    with pytest.raises(ValueError, match="num_stages"):
        StagedPacing(num_stages=0)


@pytest.mark.parametrize("saturation", [1.0, 0.5])
def test_continuous_pacings_rise_from_start_to_one(saturation):
    epochs = 9
    for cls in (LinearPacing, RootPacing, GeometricPacing):
        pacing = cls(start_fraction=0.2, saturation=saturation)
        values = [pacing.fraction(e, epochs) for e in range(epochs)]
        assert values[0] == pytest.approx(0.2)
        assert values[-1] == 1.0
        assert all(b >= a for a, b in zip(values, values[1:], strict=False)), (cls.__name__, values)
        saturated_at = round(saturation * (epochs - 1))
        assert values[saturated_at] == 1.0 and (saturated_at == 0 or values[saturated_at - 1] < 1.0)
        assert pacing.progress(0, epochs) == 0.0 and pacing.progress(epochs - 1, epochs) == 1.0
        assert pacing.num_stages is None


def test_continuous_formulas():
    epochs = 5  # t = e / 4
    assert LinearPacing(0.2).fraction(1, epochs) == pytest.approx(0.2 + 0.8 * 0.25)
    assert RootPacing(0.2, root_degree=2).fraction(2, epochs) == pytest.approx(math.sqrt(0.04 + 0.96 * 0.5))
    assert RootPacing(0.2, root_degree=3).fraction(1, epochs) == pytest.approx((0.008 + 0.992 * 0.25) ** (1 / 3))
    assert GeometricPacing(0.25).fraction(2, epochs) == pytest.approx(0.5)  # 0.25 * 4 ** 0.5
    # Root pacing grows faster early than linear, geometric slower.
    assert RootPacing(0.2).fraction(1, epochs) > LinearPacing(0.2).fraction(1, epochs)
    assert GeometricPacing(0.2).fraction(1, epochs) < LinearPacing(0.2).fraction(1, epochs)
    # Stages of a continuous pacing count the pool changes.
    assert [LinearPacing(0.25).stage(e, epochs) for e in range(epochs)] == [0, 1, 2, 3, 4]


def test_custom_callable_pacing_is_validated():
    pacing = get_pacing(lambda e, n: 0.5 if e < n - 1 else 1.0)
    assert isinstance(pacing, CallablePacing)
    assert [pacing.fraction(e, 3) for e in range(3)] == [0.5, 0.5, 1.0]
    assert [pacing.stage(e, 3) for e in range(3)] == [0, 0, 1]
    assert pacing.progress(1, 3) == 0.5
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        get_pacing(lambda _epoch, _num_epochs: 0.0).fraction(0, 2)
    with pytest.raises(ValueError, match="Unknown pacing"):
        get_pacing("cosine")


def test_get_pacing_forwards_only_the_arguments_a_kind_takes():
    pacing = get_pacing("root", start_fraction=0.1, root_degree=3, num_stages=7, saturation=None)
    assert isinstance(pacing, RootPacing)
    assert (pacing.start_fraction, pacing.root_degree, pacing.saturation) == (0.1, 3.0, 1.0)
    assert get_pacing("staged", num_stages=2, start_fraction=0.5, root_degree=3).fractions == [0.5, 1.0]


def test_pool_size_is_a_robust_ceiling():
    assert pool_size(0.1, 30) == 3  # 0.1 * 30 = 3.0000000000000004 in floating point
    assert pool_size(0.25, 10) == 3
    assert pool_size(1e-6, 10) == 1
    assert pool_size(1.0, 10) == 10


def test_planned_sample_passes_and_saving():
    staged = get_pacing("staged")
    assert planned_sample_passes(100, staged, 8) == 2 * (25 + 50 + 75 + 100)
    assert sample_pass_saving(100, staged, 8) == pytest.approx(0.375)
    assert planned_sample_passes(10, staged, 4) == 3 + 5 + 8 + 10


def test_planned_optimizer_steps_counts_remainders():
    staged = get_pacing("staged")
    # N=40, 4 epochs: pools 10, 20, 30, 40; B=4 -> batches 3, 5, 8, 10
    assert planned_optimizer_steps(40, staged, 4, batch_size=4) == [3, 5, 8, 10]
    # GA=2: ceil(batches / 2); the last update of an epoch takes the remainder
    assert planned_optimizer_steps(40, staged, 4, batch_size=4, gradient_accumulation_steps=2) == [2, 3, 4, 5]
    # 2 ranks: batches per rank ceil(ceil(pool / B) / 2) = 2, 3, 4, 5
    assert planned_optimizer_steps(40, staged, 4, batch_size=4, world_size=2) == [2, 3, 4, 5]
    assert planned_optimizer_steps(40, staged, 4, batch_size=4, drop_last=True) == [2, 5, 7, 10]
