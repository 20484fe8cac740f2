"""Pacing functions: the fraction of the training set each curriculum epoch trains on.

A :class:`Pacing` maps ``(epoch, num_epochs)`` to a fraction ``lambda(e)`` in ``(0, 1]``; epoch ``e`` trains on the
``ceil(lambda(e) * N)`` samples the sampler admits (the easiest ones under CLASS). Every built-in pacing reaches
``1.0`` by the last epoch, so the end of training always sees the whole training set.

Kinds (``get_pacing(name, **kwargs)``):

- ``staged`` (default, "baby steps"): ``num_stages`` (K = 4) stages with fractions ``start_fraction`` ... ``1.0``
  evenly spaced (0.25 / 0.5 / 0.75 / 1.0), or explicit ``fractions``; the epochs are split equally across stages.
- ``linear``: ``lambda = s + (1 - s) * t``;
- ``root``: ``lambda = (s**p + (1 - s**p) * t) ** (1 / p)`` with ``p = root_degree`` (2: the competence-based
  square-root pacing of Platanios et al., 2019);
- ``geometric``: ``lambda = s * (1 / s) ** t`` (the pool grows by a constant factor per epoch);
- a custom callable ``(epoch, num_epochs) -> fraction``.

For the continuous kinds ``t = min(1, epoch / (saturation * (num_epochs - 1)))`` is the progress towards the
saturation point: ``saturation = 1.0`` (default) reaches the whole set at the last epoch, ``0.5`` half-way.

The saving in sample passes against a plain run is ``1 - sum_e ceil(lambda(e) N) / (E N)`` (37.5 % for the default
four stages), see :func:`planned_sample_passes`; optimizer steps follow :func:`planned_optimizer_steps`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from transformers.utils import ExplicitEnum

logger = logging.getLogger(__name__)

PacingCallable = Callable[[int, int], float]


class PacingKind(ExplicitEnum):
    """Built-in pacing functions."""

    STAGED = "staged"
    LINEAR = "linear"
    ROOT = "root"
    GEOMETRIC = "geometric"


def pool_size(fraction: float, num_samples: int) -> int:
    """Number of samples admitted at ``fraction``: ``ceil(fraction * num_samples)``, at least 1 and at most N.

    The product is rounded to 9 decimals before the ceiling, so that ``0.1 * 30`` gives 3 and not 4.

    Args:
        fraction (float): share of the training set, in ``(0, 1]``.
        num_samples (int): size ``N`` of the training set.

    Returns:
        int: the pool size.
    """
    if num_samples <= 0:
        return 0
    return min(num_samples, max(1, math.ceil(round(fraction * num_samples, 9))))


def _check_fraction(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0 < value <= 1):
        raise ValueError(f"`{name}` must lie in (0, 1], got {value!r}.")


class Pacing:
    """Base class of pacing functions.

    Subclasses implement :meth:`fraction`; :meth:`stage` and :meth:`progress` have defaults that subclasses refine.

    Attributes:
        name (str): the pacing's name, used in logs and checkpoints.
    """

    name: str = "pacing"

    @property
    def num_stages(self) -> int | None:
        """Number of discrete stages, or None when the pool changes every epoch (continuous pacing)."""
        return None

    def fraction(self, epoch: int, num_epochs: int) -> float:
        """Fraction of the training set used in ``epoch`` (0-based) of ``num_epochs``, in ``(0, 1]``."""
        raise NotImplementedError

    def stage(self, epoch: int, num_epochs: int) -> int:
        """0-based stage of ``epoch``: for continuous pacing, the number of pool changes since epoch 0."""
        _check_epochs(epoch, num_epochs)
        fractions = [self.fraction(e, num_epochs) for e in range(min(epoch, num_epochs - 1) + 1)]
        return sum(1 for a, b in zip(fractions, fractions[1:], strict=False) if b != a)

    def progress(self, epoch: int, num_epochs: int) -> float:
        """Curriculum progress ``p`` in ``[0, 1]`` of ``epoch``, used by the adaptive intensity.

        The default is epoch-based: ``epoch / (num_epochs - 1)`` (1.0 for a single epoch).
        """
        _check_epochs(epoch, num_epochs)
        if num_epochs <= 1:
            return 1.0
        return min(1.0, epoch / (num_epochs - 1))

    @staticmethod
    def from_training_args(args: Any) -> Pacing:
        """The pacing ``CurriculumTrainingArguments`` describe (``pacing``, ``pacing_stages``, ...)."""
        return get_pacing(
            args.pacing if callable(args.pacing) else getattr(args.pacing, "value", args.pacing),
            num_stages=args.pacing_stages,
            start_fraction=args.pacing_start_fraction,
            fractions=args.pacing_fractions,
            saturation=args.pacing_saturation,
            root_degree=args.pacing_root_degree,
        )

    def describe(self) -> dict:
        """A JSON-serialisable description, stored in checkpoints and logs."""
        return {"name": self.name}

    def __repr__(self) -> str:
        details = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({details})"


def _check_epochs(epoch: int, num_epochs: int) -> None:
    if num_epochs < 1:
        raise ValueError(f"`num_epochs` must be at least 1, got {num_epochs}.")
    if epoch < 0:
        raise ValueError(f"`epoch` must be non-negative, got {epoch}.")


class StagedPacing(Pacing):
    """Discrete stages ("baby steps"): stage ``k`` trains on the easiest ``ceil(fractions[k] * N)`` samples.

    With ``E >= K`` epochs, epoch ``e`` belongs to stage ``floor(e * K / E)`` (equal shares; the last epoch is in the
    last stage). With fewer epochs than stages, epochs are spread over the stages so that the first epoch is stage 0
    and the last epoch the last stage (``round(e * (K - 1) / (E - 1))``); a single epoch is the last stage.

    Args:
        num_stages (int): number of stages K (4 by default).
        start_fraction (float): fraction of the first stage; the others are evenly spaced up to 1.0.
        fractions (Sequence[float] | None): explicit fractions per stage (non-decreasing, the last one 1.0);
            overrides ``num_stages`` and ``start_fraction``.
    """

    name = "staged"

    def __init__(
        self, num_stages: int = 4, start_fraction: float = 0.25, fractions: Sequence[float] | None = None
    ) -> None:
        if fractions is not None:
            fractions = [float(f) for f in fractions]
            if not fractions:
                raise ValueError("`fractions` must hold at least one stage fraction.")
            for i, f in enumerate(fractions):
                _check_fraction(f"fractions[{i}]", f)
            if any(b < a for a, b in zip(fractions, fractions[1:], strict=False)):
                raise ValueError(f"`fractions` must be non-decreasing, got {fractions}.")
            if fractions[-1] != 1.0:
                raise ValueError(f"The last stage must see all data: `fractions[-1]` must be 1.0, got {fractions}.")
        else:
            if not isinstance(num_stages, int) or num_stages < 1:
                raise ValueError(f"`num_stages` must be a positive integer, got {num_stages!r}.")
            _check_fraction("start_fraction", start_fraction)
            if num_stages == 1:
                fractions = [1.0]
            else:
                fractions = [start_fraction + (1.0 - start_fraction) * k / (num_stages - 1) for k in range(num_stages)]
                fractions[-1] = 1.0
        self.fractions = fractions

    @property
    def num_stages(self) -> int:
        return len(self.fractions)

    def stage(self, epoch: int, num_epochs: int) -> int:
        _check_epochs(epoch, num_epochs)
        k = self.num_stages
        epoch = min(epoch, num_epochs - 1)
        if num_epochs >= k:
            return min(k - 1, epoch * k // num_epochs)
        if num_epochs == 1:
            return k - 1
        return round(epoch * (k - 1) / (num_epochs - 1))

    def fraction(self, epoch: int, num_epochs: int) -> float:
        return self.fractions[self.stage(epoch, num_epochs)]

    def progress(self, epoch: int, num_epochs: int) -> float:
        """``stage / (K - 1)`` (1.0 with a single stage)."""
        if self.num_stages == 1:
            return 1.0
        return self.stage(epoch, num_epochs) / (self.num_stages - 1)

    def describe(self) -> dict:
        return {"name": self.name, "fractions": list(self.fractions)}


class _ContinuousPacing(Pacing):
    """A pacing growing every epoch from ``start_fraction`` to 1.0 at ``saturation`` of the run."""

    def __init__(self, start_fraction: float = 0.25, saturation: float = 1.0) -> None:
        _check_fraction("start_fraction", start_fraction)
        if not (isinstance(saturation, (int, float)) and 0 < saturation <= 1):
            raise ValueError(
                f"`saturation` (share of the epochs until all data is used) must be in (0, 1], got {saturation!r}."
            )
        self.start_fraction = float(start_fraction)
        self.saturation = float(saturation)

    def time(self, epoch: int, num_epochs: int) -> float:
        """Progress ``t`` in ``[0, 1]`` towards the saturation point."""
        _check_epochs(epoch, num_epochs)
        horizon = self.saturation * (num_epochs - 1)
        if horizon <= 0:
            return 1.0
        return min(1.0, epoch / horizon)

    def _grow(self, t: float) -> float:
        raise NotImplementedError

    def fraction(self, epoch: int, num_epochs: int) -> float:
        t = self.time(epoch, num_epochs)
        if t >= 1.0:
            return 1.0
        return min(1.0, max(self.start_fraction, self._grow(t)))

    def progress(self, epoch: int, num_epochs: int) -> float:
        """``t``: 0 at the first epoch, 1 from the saturation point on."""
        return self.time(epoch, num_epochs)

    def describe(self) -> dict:
        return {"name": self.name, "start_fraction": self.start_fraction, "saturation": self.saturation}


class LinearPacing(_ContinuousPacing):
    """``lambda = s + (1 - s) * t``."""

    name = "linear"

    def _grow(self, t: float) -> float:
        return self.start_fraction + (1.0 - self.start_fraction) * t


class RootPacing(_ContinuousPacing):
    """``lambda = (s**p + (1 - s**p) * t) ** (1 / p)``: fast growth early, then slower (``p = root_degree``)."""

    name = "root"

    def __init__(self, start_fraction: float = 0.25, saturation: float = 1.0, root_degree: float = 2.0) -> None:
        super().__init__(start_fraction, saturation)
        if not (isinstance(root_degree, (int, float)) and root_degree >= 1):
            raise ValueError(f"`root_degree` must be a number >= 1, got {root_degree!r}.")
        self.root_degree = float(root_degree)

    def _grow(self, t: float) -> float:
        p = self.root_degree
        s = self.start_fraction**p
        return (s + (1.0 - s) * t) ** (1.0 / p)

    def describe(self) -> dict:
        return {**super().describe(), "root_degree": self.root_degree}


class GeometricPacing(_ContinuousPacing):
    """``lambda = s * (1 / s) ** t``: the pool grows by the same factor every epoch."""

    name = "geometric"

    def _grow(self, t: float) -> float:
        return self.start_fraction ** (1.0 - t)


class CallablePacing(Pacing):
    """Wraps a user function ``(epoch, num_epochs) -> fraction``; the returned fraction is validated.

    Args:
        fn (Callable[[int, int], float]): the pacing function.
        name (str | None): name for logs; the function's ``__name__`` by default.
    """

    def __init__(self, fn: PacingCallable, name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"A custom pacing must be callable as `fn(epoch, num_epochs)`, got {type(fn).__name__}.")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "custom")

    def fraction(self, epoch: int, num_epochs: int) -> float:
        _check_epochs(epoch, num_epochs)
        value = self.fn(epoch, num_epochs)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"The custom pacing {self.name!r} returned {value!r} for epoch {epoch}; need a float."
            ) from None
        if not 0 < value <= 1:
            raise ValueError(
                f"The custom pacing {self.name!r} returned {value} for epoch {epoch} of {num_epochs}; fractions must "
                "lie in (0, 1]."
            )
        return value

    def describe(self) -> dict:
        return {"name": self.name, "custom": True}


_KINDS: dict[str, type[Pacing]] = {
    PacingKind.STAGED.value: StagedPacing,
    PacingKind.LINEAR.value: LinearPacing,
    PacingKind.ROOT.value: RootPacing,
    PacingKind.GEOMETRIC.value: GeometricPacing,
}


def get_pacing(name_or_callable: str | PacingKind | Pacing | PacingCallable = "staged", **kwargs) -> Pacing:
    """Builds a pacing from a name, a :class:`Pacing` instance or a callable.

    Keyword arguments the chosen kind does not take are ignored with a debug message, so one set of training
    arguments (``num_stages``, ``start_fraction``, ``saturation``, ``root_degree``, ``fractions``) serves every kind;
    a ``None`` value means "the kind's default".

    Args:
        name_or_callable (str | PacingKind | Pacing | Callable): ``staged``, ``linear``, ``root``, ``geometric``, a
            ready pacing, or a function ``(epoch, num_epochs) -> fraction``.
        **kwargs: arguments of the kind (see the classes above).

    Returns:
        Pacing: the pacing.

    Example:
        >>> [get_pacing("staged").fraction(e, 8) for e in range(8)]
        [0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0]
    """
    if isinstance(name_or_callable, Pacing):
        return name_or_callable
    if callable(name_or_callable) and not isinstance(name_or_callable, (str, PacingKind)):
        return CallablePacing(name_or_callable)
    name = name_or_callable.value if isinstance(name_or_callable, PacingKind) else str(name_or_callable)
    if name not in _KINDS:
        raise ValueError(f"Unknown pacing {name!r}; choose one of {sorted(_KINDS)} or pass a callable.")
    cls = _KINDS[name]
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    used = {k: v for k, v in kwargs.items() if k in accepted and v is not None}
    ignored = sorted(k for k, v in kwargs.items() if k not in accepted and v is not None)
    if ignored:
        logger.debug("Pacing %r ignores the arguments %s.", name, ignored)
    return cls(**used)


def pool_sizes(num_samples: int, pacing: Pacing, num_epochs: int) -> list[int]:
    """``ceil(lambda(e) * N)`` for every epoch ``e``."""
    return [pool_size(pacing.fraction(e, num_epochs), num_samples) for e in range(num_epochs)]


def planned_sample_passes(num_samples: int, pacing: Pacing, num_epochs: int) -> int:
    """Total sample passes of a curriculum run: ``sum_e ceil(lambda(e) * N)``.

    Args:
        num_samples (int): training set size ``N``.
        pacing (Pacing): the pacing.
        num_epochs (int): number of epochs ``E``.

    Returns:
        int: the planned number of sample passes (``N * E`` for a plain run).

    Example:
        >>> planned_sample_passes(100, get_pacing("staged"), 8)
        500
    """
    return sum(pool_sizes(num_samples, pacing, num_epochs))


def sample_pass_saving(num_samples: int, pacing: Pacing, num_epochs: int) -> float:
    """Share of sample passes saved against ``E`` full epochs: ``1 - planned / (N * E)`` (0.375 by default)."""
    if num_samples <= 0 or num_epochs <= 0:
        return 0.0
    return 1.0 - planned_sample_passes(num_samples, pacing, num_epochs) / (num_samples * num_epochs)


def planned_optimizer_steps(
    num_samples: int,
    pacing: Pacing,
    num_epochs: int,
    batch_size: int,
    world_size: int = 1,
    gradient_accumulation_steps: int = 1,
    drop_last: bool = False,
    pace_batch_size: bool = False,
) -> list[int]:
    """Optimizer steps of every epoch of a curriculum run (see :class:`~class_hf.curriculum.plan.CurriculumPlan`).

    Epoch ``e`` has ``ceil(P_e / (B * W * GA))`` optimizer steps for a pool of ``P_e = ceil(lambda(e) N)`` samples
    (``floor`` with ``drop_last``): the Trainer's count for as many batches, with the pool spread over whole steps on
    every process. The learning-rate schedule spans ``sum(planned_optimizer_steps(...))`` steps.

    Args:
        num_samples (int): training set size ``N``.
        pacing (Pacing): the pacing.
        num_epochs (int): number of epochs ``E``.
        batch_size (int): per-device batch size ``B``.
        world_size (int): number of data-parallel processes ``W``.
        gradient_accumulation_steps (int): ``GA``.
        drop_last (bool): ``dataloader_drop_last``.
        pace_batch_size (bool): the batch size is paced with the pool
            (``CurriculumTrainingArguments.pace_batch_size``).

    Returns:
        list[int]: optimizer steps per epoch.
    """
    from .plan import CurriculumPlan

    plan = CurriculumPlan.build(
        num_samples,
        pacing,
        num_epochs,
        batch_size=batch_size,
        world_size=world_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        drop_last=drop_last,
        pace_batch_size=pace_batch_size,
    )
    return list(plan.updates)
