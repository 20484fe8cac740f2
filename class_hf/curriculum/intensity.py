"""Adaptive intensity: training intensity that rises as the curriculum progresses.

Two mechanisms, both driven by the curriculum progress ``p`` in ``[0, 1]`` (``stage / (K - 1)`` for staged pacing,
the progress towards saturation for continuous pacing, see :meth:`~class_hf.curriculum.pacing.Pacing.progress`):

1. **Per-sample weights** in the loss. With ``d_hat_i`` the normalised difficulty of sample ``i``:

   ``w_i = 1 + beta * p * d_hat_i``  and  ``loss = sum_i w_i * l_i / sum_i w_i``

   Early on (``p = 0``) every sample weighs the same; later the hard samples weigh up to ``1 + beta`` times more.
   Because the weights are normalised by their sum, they change the *relative* contribution of the samples, not the
   scale of the loss.

2. **Stage multiplier** ``gamma(p) = gamma_min + (gamma_max - gamma_min) * p`` (for K stages: ``gamma_k`` rising
   linearly from ``gamma_min`` at stage 0 to ``gamma_max`` at the last stage). Where it is applied
   (:class:`IntensityTarget`):

   - ``lr`` (default): a multiplier of the learning rate, composed with the Trainer's schedule (warm-up, decay), so
     the step size grows with the stage. This is the default because under Adam/AdamW a *global* loss multiplier is
     almost a no-op: Adam divides the gradient by the root of its second moment, so scaling the loss by ``gamma``
     scales numerator and denominator alike and leaves the update unchanged (up to ``eps`` and the moments'
     warm-up); with gradient clipping it even cancels out exactly once the norm exceeds ``max_grad_norm``.
   - ``loss``: multiplies the loss (meaningful with SGD-type optimizers only, kept for ablations);
   - ``temperature`` / ``margin``: passed to the backbone as ``forward(..., intensity=gamma)`` when it declares
     ``supports_intensity = True``; the backbone scales its logit scale (sharper softmax) or triplet margin;
   - ``none``: no stage multiplier (the per-sample weights still apply when ``beta > 0``).

The defaults ``gamma_min = 0.5``, ``gamma_max = 1.0`` never exceed the configured learning rate (the last stage
trains at the user's schedule); ``beta = 1``. These are class-hf's reconstruction, not values from the paper.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers.utils import ExplicitEnum

logger = logging.getLogger(__name__)


class IntensityTarget(ExplicitEnum):
    """Where the stage multiplier gamma is applied."""

    LR = "lr"
    LOSS = "loss"
    TEMPERATURE = "temperature"
    MARGIN = "margin"
    NONE = "none"


def normalize_difficulty(difficulty: np.ndarray | Sequence[float]) -> np.ndarray:
    """Difficulty as ``d_hat`` in ``[0, 1]``.

    Values already in ``[0, 1]`` (the contract's percentile column) are used as they are; any other range (e.g. raw
    confusion counts in a custom column) is min-max scaled. A constant array gives zeros (no re-weighting).

    Args:
        difficulty (np.ndarray | Sequence[float]): one value per sample.

    Returns:
        np.ndarray: ``float32 [N]`` in ``[0, 1]``.
    """
    values = np.asarray(difficulty, dtype=np.float64)
    if values.size == 0:
        return values.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        return values.astype(np.float32)
    if high == low:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def sample_weights(d_hat: torch.Tensor, progress: float, beta: float) -> torch.Tensor:
    """``w_i = 1 + beta * progress * d_hat_i``.

    Args:
        d_hat (torch.Tensor): ``[B]`` normalised difficulties in ``[0, 1]``.
        progress (float): curriculum progress ``p`` in ``[0, 1]``.
        beta (float): strength ``beta >= 0``.

    Returns:
        torch.Tensor: ``[B]`` weights, at least 1.
    """
    return 1.0 + float(beta) * float(progress) * d_hat


def weighted_mean(per_sample_loss: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i * l_i / sum_i w_i``: the weights are detached (they scale gradients, they are not trained)."""
    if per_sample_loss.shape != weights.shape:
        raise ValueError(
            f"`per_sample_loss` {tuple(per_sample_loss.shape)} and the weights {tuple(weights.shape)} must have the "
            "same shape: the backbone must return one loss value per pair of the batch."
        )
    weights = weights.detach().to(per_sample_loss.dtype)
    return (weights * per_sample_loss).sum() / weights.sum()


def check_intensity_values(beta: float, gamma_min: float, gamma_max: float) -> None:
    """Raises a ``ValueError`` naming the argument when ``beta`` is not a finite number >= 0 or a stage multiplier
    is not a finite positive number (NaN and infinity included)."""
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"`intensity_beta` must be a finite number >= 0, got {beta}.")
    for name, value in (("intensity_gamma_min", gamma_min), ("intensity_gamma_max", gamma_max)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"`{name}` must be a finite positive number, got {value}.")


def stage_multiplier(progress: float, gamma_min: float, gamma_max: float) -> float:
    """``gamma(p) = gamma_min + (gamma_max - gamma_min) * p``."""
    return float(gamma_min) + (float(gamma_max) - float(gamma_min)) * float(progress)


@dataclass
class AdaptiveIntensity:
    """The adaptive-intensity settings of a run (see the module docstring).

    Args:
        beta (float): strength of the per-sample weights (0 turns them off).
        gamma_min (float): stage multiplier at progress 0.
        gamma_max (float): stage multiplier at progress 1.
        target (IntensityTarget | str): where the multiplier applies.
    """

    beta: float = 1.0
    gamma_min: float = 0.5
    gamma_max: float = 1.0
    target: IntensityTarget | str = IntensityTarget.LR

    def __post_init__(self) -> None:
        self.target = IntensityTarget(self.target)
        check_intensity_values(self.beta, self.gamma_min, self.gamma_max)

    @classmethod
    def from_training_args(cls, args: Any) -> AdaptiveIntensity:
        """The settings ``CurriculumTrainingArguments`` describe (``intensity_beta``, ``intensity_target``, ...)."""
        return cls(
            beta=args.intensity_beta,
            gamma_min=args.intensity_gamma_min,
            gamma_max=args.intensity_gamma_max,
            target=args.intensity_target,
        )

    def check_backbone(self, model: Any) -> None:
        """Checks that ``model`` accepts the stage multiplier when the target passes it to the backbone.

        Raises:
            ValueError: target ``temperature``/``margin`` and a backbone without ``supports_intensity = True``.
        """
        if self.target in (IntensityTarget.TEMPERATURE, IntensityTarget.MARGIN) and not getattr(
            model, "supports_intensity", False
        ):
            raise ValueError(
                f"`intensity_target={self.target.value!r}` passes the stage multiplier to the backbone, but "
                f"{type(model).__name__} does not declare `supports_intensity = True`. Use `intensity_target='lr'` "
                "(or 'loss'/'none'), or add an `intensity` argument to the backbone's forward."
            )

    @property
    def uses_gamma(self) -> bool:
        """Whether a stage multiplier is applied at all."""
        return self.target != IntensityTarget.NONE

    @property
    def is_off(self) -> bool:
        """No weights and no multiplier: training is exactly the backbone's own loss and the Trainer's schedule."""
        return self.beta == 0 and not self.uses_gamma

    def gamma(self, progress: float) -> float:
        """The stage multiplier at ``progress`` (1.0 when the target is ``none``)."""
        if not self.uses_gamma:
            return 1.0
        return stage_multiplier(progress, self.gamma_min, self.gamma_max)

    def weights(self, d_hat: torch.Tensor, progress: float) -> torch.Tensor:
        """Per-sample weights of a batch (see :func:`sample_weights`)."""
        return sample_weights(d_hat, progress, self.beta)

    def lr_factor(self, progress: float) -> float:
        """Learning-rate multiplier: gamma with target ``lr``, else 1."""
        return self.gamma(progress) if self.target == IntensityTarget.LR else 1.0

    def loss_factor(self, progress: float) -> float:
        """Loss multiplier: gamma with target ``loss``, else 1."""
        return self.gamma(progress) if self.target == IntensityTarget.LOSS else 1.0

    def backbone_intensity(self, progress: float) -> float | None:
        """The ``intensity`` kwarg for the backbone (targets ``temperature``/``margin``), else None."""
        if self.target in (IntensityTarget.TEMPERATURE, IntensityTarget.MARGIN):
            return self.gamma(progress)
        return None


def combine_loss(
    loss: torch.Tensor,
    per_sample_loss: torch.Tensor | None,
    weights: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Replaces the per-sample mean inside the backbone's loss by the weighted mean.

    A backbone's ``loss`` is the mean of its ``per_sample_loss`` plus any batch-level terms (an adversarial or
    regularisation loss). The batch-level part is defined as ``aux = loss - per_sample_loss.mean()``; the result is
    ``sum_i w_i l_i / sum_i w_i + aux``, which equals ``loss`` when all weights are 1 and keeps the gradient of the
    batch-level terms intact.

    Args:
        loss (torch.Tensor): the backbone's scalar loss.
        per_sample_loss (torch.Tensor | None): ``[B]``; when None the loss is returned unchanged.
        weights (torch.Tensor | None): ``[B]`` weights; when None the loss is returned unchanged.

    Returns:
        tuple[torch.Tensor, dict[str, torch.Tensor]]: the combined loss and its detached parts ``retrieval``
        (weighted), ``retrieval_unweighted`` and ``aux``.
    """
    if per_sample_loss is None or weights is None:
        return loss, {}
    mean = per_sample_loss.mean()
    weighted = weighted_mean(per_sample_loss, weights)
    aux = loss - mean
    parts = {"retrieval": weighted.detach(), "retrieval_unweighted": mean.detach(), "aux": aux.detach()}
    return weighted + aux, parts


def scale_lambda_lr(scheduler: torch.optim.lr_scheduler.LRScheduler, factor: Callable[[int], float]):
    """Returns a ``LambdaLR`` whose factor is ``base_lambda(step) * factor(step)`` for every parameter group.

    The base schedule (warm-up, decay, its length) is kept; the new scheduler is built on the same optimizer (the
    optimizer's ``initial_lr`` is left as the first scheduler set it) so it is a plain ``LambdaLR`` that
    ``transformers.Trainer`` saves and restores as usual. ``factor`` must be a pure function of the step, so that a
    resumed run recomputes the same learning rates.

    Args:
        scheduler (LRScheduler): a ``torch.optim.lr_scheduler.LambdaLR`` (what ``transformers.get_scheduler`` builds
            for every schedule except ``reduce_lr_on_plateau`` and ``greedy``).
        factor (Callable[[int], float]): multiplier of the optimizer step (0-based count of scheduler steps).

    Returns:
        torch.optim.lr_scheduler.LambdaLR: the composed scheduler, at the same step as ``scheduler``.

    Raises:
        TypeError: when ``scheduler`` is not a ``LambdaLR``.
    """
    if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        raise TypeError(
            f"`intensity_target='lr'` composes the stage multiplier with a LambdaLR schedule, but the scheduler is a "
            f"{type(scheduler).__name__}. Choose another `lr_scheduler_type` (e.g. 'linear' or 'cosine') or another "
            "`intensity_target` ('loss', 'temperature', 'margin' or 'none')."
        )

    def compose(base: Callable[[int], float]) -> Callable[[int], float]:
        def scaled(step: int) -> float:
            return base(step) * factor(step)

        return scaled

    lambdas = [compose(base) for base in scheduler.lr_lambdas]
    last_epoch = scheduler.last_epoch
    composed = torch.optim.lr_scheduler.LambdaLR(scheduler.optimizer, lr_lambda=lambdas)
    if last_epoch > 0:  # a scheduler created mid-run: move the new one to the same step
        composed.last_epoch = last_epoch - 1
        composed.step()
    return composed


def _scalar(value: Any) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def weigh_loss(
    outputs: Any,
    d_hat: torch.Tensor | None,
    progress: float,
    intensity: AdaptiveIntensity,
    *,
    name: str = "the backbone",
    sample_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of a batch under adaptive intensity, and what to log about it.

    ``loss = gamma_loss * (sum_i w_i l_i / sum_i w_i + aux)`` (see :func:`combine_loss`), with ``w_i = 1 + beta p d_i``
    when ``d_hat`` is given (times ``sample_weights`` when given) and the backbone's own loss otherwise;
    ``gamma_loss`` is gamma with target ``loss`` and 1 otherwise.

    Args:
        outputs: the backbone's output (a mapping with ``loss``, ``per_sample_loss`` and optionally
            ``loss_components``, or a tuple whose first element is the loss).
        d_hat (torch.Tensor | None): ``[B]`` normalised difficulty of the batch's samples; None: no weights.
        progress (float): curriculum progress ``p``.
        intensity (AdaptiveIntensity): the run's settings.
        name (str): the backbone's name, for the error message.
        sample_weights (torch.Tensor | None): ``[B]`` further weights of the batch's samples (the pruning's).

    Returns:
        tuple[torch.Tensor, dict[str, float]]: the loss, and ``intensity/mean_weight`` plus the ``loss/<part>``
        components as floats.

    Raises:
        ValueError: when weights are asked for but the backbone returns no ``per_sample_loss``.
    """
    if isinstance(outputs, Mapping):
        loss, per_sample = outputs["loss"], outputs.get("per_sample_loss")
        components = outputs.get("loss_components") or {}
    else:
        loss, per_sample, components = outputs[0], None, {}
    logs: dict[str, float] = {"intensity/mean_weight": 1.0}
    if d_hat is not None or sample_weights is not None:
        if per_sample is None:
            what = f"`intensity_beta={intensity.beta}`" if d_hat is not None else "`prune_fraction`"
            raise ValueError(
                f"{what} needs the backbone's `per_sample_loss` (one per pair), but {name} returns none. Return it, "
                "or set `intensity_beta=0` and `prune_fraction=0`."
            )
        if d_hat is not None:
            weights = intensity.weights(d_hat.to(device=per_sample.device, dtype=per_sample.dtype), progress)
        else:
            weights = torch.ones_like(per_sample)
        if sample_weights is not None:
            weights = weights * sample_weights.to(device=per_sample.device, dtype=per_sample.dtype)
        loss, parts = combine_loss(loss, per_sample, weights)
        logs["intensity/mean_weight"] = _scalar(weights.mean())
        logs.update({f"loss/{key}": _scalar(value) for key, value in parts.items()})
    factor = intensity.loss_factor(progress)
    if factor != 1.0:
        loss = loss * factor
    logs.update({f"loss/{key}": _scalar(value) for key, value in components.items()})
    return loss, logs
