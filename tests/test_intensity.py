"""Adaptive intensity: per-sample weights, weighted loss, stage multiplier, LR-schedule composition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import get_scheduler

from class_hf.curriculum.intensity import (
    AdaptiveIntensity,
    IntensityTarget,
    combine_loss,
    normalize_difficulty,
    sample_weights,
    scale_lambda_lr,
    stage_multiplier,
    weighted_mean,
)


def test_weights_follow_the_formula():
    d_hat = torch.tensor([0.0, 0.5, 1.0])
    assert torch.equal(sample_weights(d_hat, progress=0.0, beta=1.0), torch.ones(3))
    assert torch.allclose(sample_weights(d_hat, progress=0.5, beta=2.0), torch.tensor([1.0, 1.5, 2.0]))
    intensity = AdaptiveIntensity(beta=1.0)
    assert torch.allclose(intensity.weights(d_hat, 1.0), torch.tensor([1.0, 1.5, 2.0]))


def test_stage_multiplier_rises_linearly_over_stages():
    gammas = [stage_multiplier(k / 3, 0.5, 1.0) for k in range(4)]
    assert gammas == pytest.approx([0.5, 2 / 3, 5 / 6, 1.0])
    lr = AdaptiveIntensity(gamma_min=0.5, gamma_max=2.0, target="lr")
    assert (lr.lr_factor(1.0), lr.loss_factor(1.0), lr.backbone_intensity(1.0)) == (2.0, 1.0, None)
    loss = AdaptiveIntensity(gamma_min=0.5, gamma_max=2.0, target=IntensityTarget.LOSS)
    assert (loss.lr_factor(0.0), loss.loss_factor(0.0)) == (1.0, 0.5)
    temp = AdaptiveIntensity(gamma_min=0.5, gamma_max=2.0, target="temperature")
    assert temp.backbone_intensity(0.5) == pytest.approx(1.25) and temp.lr_factor(0.5) == 1.0
    none = AdaptiveIntensity(beta=0.0, target="none")
    assert none.is_off and none.gamma(0.7) == 1.0
    with pytest.raises(ValueError, match="intensity_beta"):
        AdaptiveIntensity(beta=-1)
    with pytest.raises(ValueError):
        AdaptiveIntensity(target="everything")


def test_normalize_difficulty():
    assert np.array_equal(normalize_difficulty([0.0, 0.25, 1.0]), np.array([0.0, 0.25, 1.0], dtype=np.float32))
    assert np.allclose(normalize_difficulty([2, 4, 10]), [0.0, 0.25, 1.0])  # raw counts: min-max scaled
    assert np.array_equal(normalize_difficulty([3, 3]), np.zeros(2, dtype=np.float32))


def test_weighted_loss_gradient_is_the_weighted_per_sample_gradient():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 1)
    x, y = torch.randn(6, 4), torch.randn(6)
    weights = torch.tensor([1.0, 1.2, 1.4, 2.0, 1.0, 1.6])

    def per_sample():
        return (layer(x).squeeze(-1) - y) ** 2

    weighted_mean(per_sample(), weights).backward()
    got = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    # Reference: sum_i w_i * grad(l_i) / sum_i w_i, one sample at a time.
    expected = [torch.zeros_like(p) for p in layer.parameters()]
    for i in range(6):
        layer.zero_grad()
        per_sample()[i].backward()
        for e, p in zip(expected, layer.parameters(), strict=False):
            e += weights[i] * p.grad / weights.sum()
    for g, e in zip(got, expected, strict=False):
        assert torch.allclose(g, e, atol=1e-6)
    # And it differs from the unweighted mean's gradient.
    layer.zero_grad()
    per_sample().mean().backward()
    assert not torch.allclose(layer.weight.grad, got[0])


def test_combine_loss_keeps_batch_level_terms():
    per_sample = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    extra = torch.tensor(0.7, requires_grad=True)
    loss = per_sample.mean() + extra  # a backbone's loss with a batch-level (e.g. adversarial) term
    weights = torch.tensor([1.0, 1.0, 2.0])
    total, parts = combine_loss(loss, per_sample, weights)
    assert total.item() == pytest.approx((1 + 2 + 6) / 4 + 0.7)
    assert parts["aux"].item() == pytest.approx(0.7) and parts["retrieval"].item() == pytest.approx(2.25)
    total.backward()
    assert torch.allclose(per_sample.grad, weights / weights.sum())
    assert extra.grad.item() == pytest.approx(1.0)
    # Unit weights give back the backbone's loss.
    same, _ = combine_loss(loss, per_sample, torch.ones(3))
    assert same.item() == pytest.approx(loss.item())
    unchanged, parts = combine_loss(loss, None, weights)
    assert unchanged is loss and parts == {}


def _scheduler(kind="linear", steps=10, warmup=2):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return optimizer, get_scheduler(kind, optimizer=optimizer, num_warmup_steps=warmup, num_training_steps=steps)


def _lrs(optimizer, scheduler, steps):
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    values.append(optimizer.param_groups[0]["lr"])
    return values


def test_scale_lambda_lr_composes_with_the_base_schedule():
    optimizer, base = _scheduler()
    reference = _lrs(*_scheduler(), 10)
    factor = lambda step: 0.5 if step < 5 else 1.0  # noqa: E731
    composed = scale_lambda_lr(base, factor)
    assert isinstance(composed, torch.optim.lr_scheduler.LambdaLR)
    got = _lrs(optimizer, composed, 10)
    assert got == pytest.approx([r * factor(s) for s, r in enumerate(reference)])
    assert got[-1] == 0.0  # the linear schedule still ends at 0 on its last step
    # The composed scheduler saves and restores like any LambdaLR.
    optimizer2, base2 = _scheduler()
    restored = scale_lambda_lr(base2, factor)
    restored.load_state_dict(composed.state_dict())
    assert restored.last_epoch == 10 and restored.get_last_lr() == composed.get_last_lr()


def test_scale_lambda_lr_rejects_other_schedulers():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    with pytest.raises(TypeError, match="intensity_target"):
        scale_lambda_lr(plateau, lambda _step: 1.0)
