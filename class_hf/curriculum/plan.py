"""The curriculum plan: every epoch's pool, batches and optimizer steps, and which step belongs to which epoch.

A curriculum epoch ``e`` trains on a pool of ``P_e = ceil(lambda(e) N)`` samples. :class:`CurriculumPlan` splits that
pool into optimizer steps and batches so that, on any number of processes ``W`` and with any gradient accumulation
``GA``:

- the epoch has ``S_e = ceil(P_e / (B * GA * W))`` optimizer steps (``B``: per-device batch size), each made of
  ``GA`` batches on every process;
- its ``S_e * GA * W`` batches have sizes that differ by at most one and never exceed ``B``, so every pool sample is
  seen exactly once per epoch across all processes: no process pads its last batch with repeated samples (as
  accelerate's ``even_batches`` would) and none waits for a batch another process does not have;
- with ``drop_last``, ``S_e = floor(P_e / (B * GA * W))`` steps of full batches, and the rest of the pool is left out
  of that epoch (and counted as such);
- with a paced batch size (``pace_batch_size``), epoch ``e``'s batches hold at most ``B_e = max(2, ceil(lambda(e) B))``
  samples instead of ``B`` (``ceil(P_e B / N)`` for pools paced by cost): an early epoch then makes about as many
  optimizer steps as a full one, and the number of in-batch negatives grows with the pool.

An optimizer step never spans two epochs, so the step number alone tells the epoch
(:meth:`CurriculumPlan.epoch_of_step`): the trainer's callback, the learning-rate multiplier and the per-sample
weights all derive the curriculum epoch from ``TrainerState.global_step``, which makes them exact after a resume.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .pacing import Pacing, pool_size


def balanced_batch_sizes(pool: int, batch_size: int, batches_per_step: int = 1, drop_last: bool = False) -> list[int]:
    """Sizes of the batches that cover ``pool`` samples in whole steps of ``batches_per_step`` batches.

    ``ceil(pool / (batch_size * batches_per_step))`` steps (``floor`` with ``drop_last``, all batches then full) of
    ``batches_per_step`` batches whose sizes differ by at most one and never exceed ``batch_size``.

    Args:
        pool (int): samples to cover.
        batch_size (int): largest batch.
        batches_per_step (int): batches of one step over all processes (``GA * W``).
        drop_last (bool): only full batches; the rest of the pool is left out.

    Returns:
        list[int]: the sizes, a multiple of ``batches_per_step`` of them.

    Raises:
        ValueError: when the pool cannot give every batch of its steps at least one sample.
    """
    per_step = batch_size * batches_per_step
    steps = pool // per_step if drop_last else math.ceil(pool / per_step)
    count = steps * batches_per_step
    if steps == 0 or count > pool:
        raise ValueError(
            f"{pool} samples are too few for {max(steps, 1)} step(s) of {batches_per_step} non-empty batch(es) of at "
            f"most {batch_size} (drop_last={drop_last})."
        )
    if drop_last:
        return [batch_size] * count
    base, extra = divmod(pool, count)
    return [base + 1] * extra + [base] * (count - extra)


def balanced_batches(num_samples: int, batch_size: int, batches_per_step: int = 1) -> list[list[int]]:
    """``0 .. num_samples - 1`` in order, cut into :func:`balanced_batch_sizes` (e.g. an evaluation set that every
    process must see the same number of batches of)."""
    bounds = np.cumsum([0, *balanced_batch_sizes(num_samples, batch_size, batches_per_step)])
    return [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@dataclass
class CurriculumPlan:
    """The planned size of every curriculum epoch of a run.

    Attributes:
        num_samples (int): training set size ``N``.
        batch_size (int): per-device batch size ``B``.
        world_size (int): number of data-parallel processes ``W``.
        gradient_accumulation_steps (int): ``GA``.
        drop_last (bool): whether samples that do not fill a whole optimizer step are left out of the epoch.
        fractions (list[float]): pacing fraction of every epoch.
        pool_sizes (list[int]): samples admitted per epoch, ``ceil(lambda(e) N)``.
        stages (list[int]): pacing stage of every epoch.
        progress (list[float]): curriculum progress ``p`` of every epoch.
        updates (list[int]): optimizer steps per epoch (computed from the pools when empty).
        epoch_samples (list[int] | None): sample passes per epoch when they are not the pools (the Trainer's own
            sampler under accelerate's ``even_batches``, which pads the last batches with repeated samples).
        epoch_batch_sizes (list[int] | None): largest per-device batch of every epoch when it is paced with the pool
            (``batch_size`` for every epoch when None).
    """

    num_samples: int
    batch_size: int
    world_size: int
    gradient_accumulation_steps: int
    drop_last: bool
    fractions: list[float]
    pool_sizes: list[int]
    stages: list[int]
    progress: list[float]
    updates: list[int] = field(default_factory=list)
    epoch_samples: list[int] | None = None
    epoch_batch_sizes: list[int] | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "world_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.epoch_batch_sizes is not None and len(self.epoch_batch_sizes) != len(self.pool_sizes):
            raise ValueError(
                f"`epoch_batch_sizes` needs one batch size per epoch ({len(self.pool_sizes)}), got "
                f"{len(self.epoch_batch_sizes)}."
            )
        if not self.updates:
            self.updates = [self._steps(epoch) for epoch in range(len(self.pool_sizes))]

    @classmethod
    def build(
        cls,
        num_samples: int,
        pacing: Pacing,
        num_epochs: int,
        *,
        batch_size: int,
        world_size: int = 1,
        gradient_accumulation_steps: int = 1,
        drop_last: bool = False,
        full_data: bool = False,
        pace_batch_size: bool = False,
        pool_sizes: list[int] | None = None,
    ) -> CurriculumPlan:
        """The plan of ``num_epochs`` epochs over ``num_samples`` samples paced by ``pacing``.

        Args:
            num_samples (int): training set size ``N``.
            pacing (Pacing): the pacing (its stages and progress are recorded even with ``full_data``).
            num_epochs (int): number of curriculum epochs ``E``.
            batch_size (int): per-device batch size ``B``.
            world_size (int): number of data-parallel processes ``W``.
            gradient_accumulation_steps (int): ``GA``.
            drop_last (bool): leave out the samples that do not fill a whole optimizer step.
            full_data (bool): every epoch's pool is the whole training set (the random-order baseline).
            pace_batch_size (bool): epoch ``e``'s largest batch is ``max(2, ceil(lambda(e) B))`` (at most ``B``)
                instead of ``B``, so that every epoch makes about as many optimizer steps as a full one; with
                ``pool_sizes``, ``lambda(e)`` is the pool's share of the samples.
            pool_sizes (list[int] | None): every epoch's pool size when it is not ``ceil(lambda(e) N)``: the
                sampler's, when it paces by cost or prunes
                (:meth:`~class_hf.curriculum.sampler.CurriculumSampler.pool_size`).

        Raises:
            ValueError: when an epoch's pool is too small to give every process a non-empty batch in each of its
                optimizer steps; the message names the epoch and the numbers.
        """
        fractions = [1.0 if full_data else pacing.fraction(e, num_epochs) for e in range(num_epochs)]
        shares = fractions  # of the samples, for a paced batch size
        if pool_sizes is None:
            pool_sizes = [pool_size(f, num_samples) for f in fractions]
        elif len(pool_sizes) != num_epochs or any(not 1 <= size <= num_samples for size in pool_sizes):
            raise ValueError(
                f"`pool_sizes` must hold one size in [1, {num_samples}] per epoch ({num_epochs}), got {pool_sizes}."
            )
        else:  # pools paced by cost, or pruned: their share of the samples is not the pacing's fraction
            shares = [size / num_samples for size in pool_sizes]
        paced = [paced_batch_size(batch_size, f) for f in shares] if pace_batch_size and not full_data else None
        return cls(
            num_samples=num_samples,
            batch_size=batch_size,
            world_size=world_size,
            gradient_accumulation_steps=gradient_accumulation_steps,
            drop_last=drop_last,
            fractions=fractions,
            pool_sizes=list(pool_sizes),
            stages=[pacing.stage(e, num_epochs) for e in range(num_epochs)],
            progress=[pacing.progress(e, num_epochs) for e in range(num_epochs)],
            epoch_batch_sizes=paced,
        )

    @classmethod
    def for_trainer_epochs(
        cls,
        num_samples: int,
        pacing: Pacing,
        num_epochs: int,
        *,
        batches_per_process: int,
        batch_size: int,
        world_size: int = 1,
        gradient_accumulation_steps: int = 1,
        drop_last: bool = False,
        padded: bool = False,
    ) -> CurriculumPlan:
        """The Trainer's own epochs (no curriculum: every sample every epoch) as a plan.

        Args:
            num_samples (int): training set size ``N``.
            pacing (Pacing): the pacing (for the stages and progress of the intensity).
            num_epochs (int): epochs.
            batches_per_process (int): the Trainer's data loader length.
            batch_size (int): per-device batch size.
            world_size (int): number of processes.
            gradient_accumulation_steps (int): ``GA``.
            drop_last (bool): ``dataloader_drop_last``.
            padded (bool): accelerate completes the last batches with repeated samples (``even_batches``), so an
                epoch makes ``batches * W * B`` sample passes.
        """
        per_epoch = batches_per_process * world_size * batch_size if padded else num_samples
        return cls(
            num_samples=num_samples,
            batch_size=batch_size,
            world_size=world_size,
            gradient_accumulation_steps=gradient_accumulation_steps,
            drop_last=drop_last,
            fractions=[1.0] * num_epochs,
            pool_sizes=[num_samples] * num_epochs,
            stages=[pacing.stage(e, num_epochs) for e in range(num_epochs)],
            progress=[pacing.progress(e, num_epochs) for e in range(num_epochs)],
            updates=[max(1, math.ceil(batches_per_process / gradient_accumulation_steps))] * num_epochs,
            epoch_samples=[per_epoch] * num_epochs,
        )

    # ------------------------------------------------------------------------------------------------- sizes
    @property
    def batches_per_step(self) -> int:
        """Batches of one optimizer step over all processes, ``GA * W``."""
        return self.gradient_accumulation_steps * self.world_size

    def _steps(self, epoch: int) -> int:
        try:
            sizes = self.batch_sizes(epoch)
        except ValueError as error:
            raise ValueError(
                f"Epoch {epoch} of the curriculum: {error} ({self.gradient_accumulation_steps} batch(es) per "
                f"optimizer step on each of {self.world_size} process(es), per_device_train_batch_size="
                f"{self.batch_size}{self._paced_note(epoch)}). "
                "Raise `pacing_start_fraction`, or lower the batch size, `gradient_accumulation_steps` or the number "
                "of processes."
            ) from None
        return len(sizes) // self.batches_per_step

    def batch_sizes(self, epoch: int) -> list[int]:
        """Sizes of the epoch's batches in stream order (all processes): ``updates[e] * GA * W`` sizes.

        Batch ``j`` goes to process ``j mod W`` (accelerate's sharding); the sizes differ by at most one.
        """
        return balanced_batch_sizes(
            self.pool_sizes[epoch], self.epoch_batch_size(epoch), self.batches_per_step, self.drop_last
        )

    def epoch_batch_size(self, epoch: int) -> int:
        """The largest per-device batch of ``epoch``: ``batch_size``, or its paced size."""
        return self.batch_size if self.epoch_batch_sizes is None else self.epoch_batch_sizes[epoch]

    def _paced_note(self, epoch: int) -> str:
        if self.epoch_batch_sizes is None:
            return ""
        return f", paced to {self.epoch_batch_size(epoch)} in this epoch"

    @property
    def num_epochs(self) -> int:
        return len(self.updates)

    @property
    def total_updates(self) -> int:
        """Planned optimizer steps of the whole run (the length of the learning-rate schedule)."""
        return sum(self.updates)

    @property
    def total_batches(self) -> int:
        """Batches of the whole run over all processes."""
        return self.total_updates * self.batches_per_step

    def samples(self, epoch: int) -> int:
        """Sample passes of ``epoch`` (all processes): its pool, or the full steps of it with ``drop_last``."""
        if self.epoch_samples is not None:
            return self.epoch_samples[epoch]
        return sum(self.batch_sizes(epoch)) if self.drop_last else self.pool_sizes[epoch]

    @property
    def sample_passes(self) -> int:
        """Planned sample passes of the whole run."""
        return sum(self.samples(e) for e in range(self.num_epochs))

    @property
    def full_sample_passes(self) -> int:
        """Sample passes of as many full epochs, ``N * E``."""
        return self.num_samples * self.num_epochs

    # ------------------------------------------------------------------------------------------------- steps
    def first_step(self, epoch: int) -> int:
        """Global step count at the start of ``epoch`` (optimizer steps of the epochs before it)."""
        return sum(self.updates[:epoch])

    def end_step(self, epoch: int) -> int:
        """Global step count at the end of ``epoch``."""
        return sum(self.updates[: epoch + 1])

    def epoch_of_step(self, step: int) -> int:
        """The epoch in which optimizer step ``step`` (0-based) happens; the last epoch past the end."""
        done = 0
        for epoch, updates in enumerate(self.updates):
            done += updates
            if step < done:
                return epoch
        return self.num_epochs - 1

    def epoch_position(self, global_step: int) -> float:
        """``global_step`` completed steps as a fractional epoch count (``2.5``: half-way through epoch 2)."""
        epoch = self.epoch_of_step(global_step)
        if global_step >= self.total_updates:
            return float(self.num_epochs)
        return epoch + (global_step - self.first_step(epoch)) / self.updates[epoch]

    def epochs_for(self, steps: int) -> int:
        """How many epochs (the last one possibly partial) ``steps`` optimizer steps reach into."""
        return min(self.num_epochs, self.epoch_of_step(max(steps - 1, 0)) + 1)

    def samples_in_steps(self, epoch: int, steps: int) -> int:
        """Sample passes of the first ``steps`` optimizer steps of ``epoch``."""
        return sum(self.batch_sizes(epoch)[: steps * self.batches_per_step])

    def samples_until(self, global_step: int) -> int:
        """Sample passes of the first ``global_step`` optimizer steps of the run."""
        epoch = self.epoch_of_step(max(global_step - 1, 0))
        done = min(global_step, self.total_updates) - self.first_step(epoch)
        before = sum(self.samples(e) for e in range(epoch))
        return before + (self.samples(epoch) if done >= self.updates[epoch] else self.samples_in_steps(epoch, done))

    def log_values(self, global_step: int) -> dict[str, float]:
        """The ``curriculum/{epoch,stage,fraction,progress,samples_seen}`` log values after ``global_step`` steps."""
        epoch = self.epoch_of_step(max(global_step - 1, 0))
        return {
            "curriculum/epoch": epoch,
            "curriculum/stage": self.stages[epoch],
            "curriculum/fraction": self.fractions[epoch],
            "curriculum/progress": self.progress[epoch],
            "curriculum/samples_seen": self.samples_until(global_step),
        }

    # ------------------------------------------------------------------------------------------------- state
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CurriculumPlan:
        return cls(**values)

    def describe(self) -> str:
        batches = "" if self.epoch_batch_sizes is None else f"per-device batch sizes {self.epoch_batch_sizes}, "
        return (
            f"pools {self.pool_sizes}, {batches}optimizer steps {self.updates} (total {self.total_updates}), "
            f"{self.sample_passes} of {self.full_sample_passes} sample passes"
        )


def paced_batch_size(batch_size: int, fraction: float) -> int:
    """The batch size paced with the pool: ``ceil(fraction * batch_size)``, at least 2 (one negative), at most
    ``batch_size``."""
    return min(batch_size, max(2, math.ceil(fraction * batch_size - 1e-9)))


__all__ = ["CurriculumPlan", "balanced_batch_sizes", "balanced_batches", "paced_batch_size"]
