"""Pruning of learned pairs: each epoch leaves out part of the pairs the model already fits, as InfoBatch does.

The curriculum decides which pairs an epoch may train on (its *pool*); pruning then leaves out some of the pool's
pairs that the model has learned, judged by the loss each pair had when it was last trained on. Pairs are ranked by
that loss (pairs without one yet count as the hardest); of the pool's easier half, ``h = ceil(n / 2)`` pairs for a
pool of ``n``, ``k = floor(fraction * h)`` drawn at random are left out, and the rest of that half is up-weighted by
``h / (h - k)`` (about ``1 / (1 - fraction)``), so that the expected loss of the epoch stays that of its whole pool.
The hard half is always trained on. The last ``anneal_fraction`` of the epochs train on whole pools again (InfoBatch's
annealing).

How many pairs an epoch leaves out depends on its pool size only, so the learning-rate schedule is planned before
training as for any curriculum. Which pairs depends on the losses recorded up to epoch ``e - 2``: the data loader draws
epoch ``e`` while epoch ``e - 1`` still trains (see :class:`~.sampler.CurriculumBatchSampler`), so only losses at least
one whole epoch old are certain to be complete at that moment, whatever the prefetching; the first two epochs are never
pruned. The per-pair losses come from the training forward passes (the backbone's ``per_sample_loss``), gathered from
every process, and are saved in checkpoints, so a resumed run prunes as the interrupted one did.

Reference: Qin et al., "InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data Pruning", ICLR 2024.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np
import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

PRUNING_FILE = "curriculum_pruning.npz"
LAG = 2  # epoch e is pruned with the losses of epochs <= e - LAG


def check_pruning_values(fraction: float, anneal_fraction: float) -> None:
    """Raises a ``ValueError`` naming the argument when ``fraction`` is not in ``[0, 1)`` or ``anneal_fraction`` not in
    ``[0, 1]``."""
    if not 0 <= fraction < 1:  # also False for NaN
        raise ValueError(f"`prune_fraction` must lie in [0, 1), got {fraction}.")
    if not 0 <= anneal_fraction <= 1:
        raise ValueError(f"`prune_anneal_fraction` must lie in [0, 1], got {anneal_fraction}.")


class LearnedPairPruning:
    """The losses each pair had when last trained on, and the pruning of every epoch's pool from them.

    Args:
        num_samples (int): training set size ``N``.
        num_epochs (int): curriculum epochs ``E``.
        fraction (float): share of each pool's easier half left out, in ``[0, 1)`` (0: no pruning).
        anneal_fraction (float): share of the last epochs trained on whole pools (``ceil(anneal_fraction * E)``).
        seed (int): seed of the draws (one per epoch).

    Example:
        >>> pruning = LearnedPairPruning(8, num_epochs=10, fraction=0.5, anneal_fraction=0.1)
        >>> [pruning.num_pruned(8, e) for e in (0, 1, 2, 8, 9)]
        [0, 0, 2, 2, 0]
    """

    def __init__(
        self, num_samples: int, num_epochs: int, fraction: float, anneal_fraction: float = 0.125, seed: int = 0
    ) -> None:
        check_pruning_values(fraction, anneal_fraction)
        self.num_samples = int(num_samples)
        self.num_epochs = int(num_epochs)
        self.fraction = float(fraction)
        self.anneal_fraction = float(anneal_fraction)
        self.seed = int(seed)
        self._losses: dict[int, np.ndarray] = {}  # epoch -> loss per sample (NaN: not trained on in that epoch)
        self._weights: dict[int, np.ndarray] = {}  # epoch -> weight of every sample in that epoch

    @property
    def last_pruned_epoch(self) -> int:
        """The last epoch that may be pruned (epochs after it train on whole pools)."""
        return self.num_epochs - 1 - math.ceil(self.anneal_fraction * self.num_epochs)

    @property
    def last_recorded_epoch(self) -> int:
        """The last epoch whose losses a pruned epoch reads (later ones need not be recorded)."""
        return self.last_pruned_epoch - LAG

    @staticmethod
    def source_epoch(epoch: int) -> int:
        """The last epoch whose losses the draw of ``epoch`` reads."""
        return epoch - LAG

    def prunes(self, epoch: int) -> bool:
        """Whether ``epoch`` leaves pairs out (not the first ``LAG`` epochs, not the annealing ones)."""
        return self.fraction > 0 and LAG <= epoch <= self.last_pruned_epoch

    def num_pruned(self, pool_size: int, epoch: int) -> int:
        """How many of a pool of ``pool_size`` pairs epoch ``epoch`` leaves out."""
        if not self.prunes(epoch):
            return 0
        return math.floor(self.fraction * math.ceil(pool_size / 2))

    # ---- losses ---------------------------------------------------------------------------------------------------

    def record(self, epoch: int, sample_idx: torch.Tensor | np.ndarray, losses: torch.Tensor | np.ndarray) -> None:
        """Records the training losses of samples ``sample_idx`` in ``epoch``.

        A non-finite loss (an overflow in reduced precision, say) is recorded as ``+inf``: the pair counts as trained,
        and as among the hardest, so it stays in the next pools.
        """
        idx = np.asarray(torch.as_tensor(sample_idx).detach().cpu(), dtype=np.int64)
        values = np.asarray(torch.as_tensor(losses).detach().float().cpu(), dtype=np.float32)
        values = np.where(np.isfinite(values), values, np.float32(np.inf))
        if idx.shape != values.shape:
            raise ValueError(f"{idx.size} sample indices but {values.size} losses.")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_samples):
            raise ValueError(f"Sample indices must lie in [0, {self.num_samples}), got {idx.min()}..{idx.max()}.")
        if epoch not in self._losses:
            self._losses[epoch] = np.full(self.num_samples, np.nan, dtype=np.float32)
        self._losses[epoch][idx] = values

    def recorded(self, epoch: int) -> int:
        """How many samples have a loss recorded in ``epoch``."""
        return int(np.count_nonzero(~np.isnan(self._losses[epoch]))) if epoch in self._losses else 0

    def latest_losses(self, until_epoch: int) -> np.ndarray:
        """Each sample's loss in the last epoch ``<= until_epoch`` it was trained in (NaN if never)."""
        latest = np.full(self.num_samples, np.nan, dtype=np.float32)
        for epoch in sorted(e for e in self._losses if e <= until_epoch):
            seen = ~np.isnan(self._losses[epoch])
            latest[seen] = self._losses[epoch][seen]
        return latest

    # ---- pools ----------------------------------------------------------------------------------------------------

    def prune(self, pool: np.ndarray, epoch: int, tie_break: np.ndarray | None = None) -> np.ndarray:
        """``pool`` without the pairs ``epoch`` leaves out (in pool order); records the weights of the pairs kept.

        Args:
            pool (np.ndarray): the epoch's pool (sample indices).
            epoch (int): the epoch.
            tie_break (np.ndarray | None): a permutation of the samples ranking pairs of equal loss (by index if None).
        """
        pool = np.asarray(pool, dtype=np.int64)
        k = self.num_pruned(pool.size, epoch)
        self._weights.pop(epoch, None)
        if k == 0:
            return pool
        losses = self.latest_losses(self.source_epoch(epoch))[pool].astype(np.float64)
        losses[np.isnan(losses)] = np.inf  # not trained on yet: among the hardest
        ties = (tie_break if tie_break is not None else np.arange(self.num_samples))[pool]
        half = math.ceil(pool.size / 2)
        easier = pool[np.lexsort((ties, losses))[:half]]
        generator = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch), 3]))
        left_out = generator.choice(easier, size=k, replace=False)
        kept_easy = np.setdiff1d(easier, left_out, assume_unique=True)
        weights = np.ones(self.num_samples, dtype=np.float32)
        weights[kept_easy] = half / (half - k)
        self._weights[epoch] = weights
        return pool[~np.isin(pool, left_out, assume_unique=True)]

    def batch_weights(self, epoch: int, sample_idx: torch.Tensor) -> torch.Tensor | None:
        """The weights of a batch's samples in ``epoch``: ``h / (h - k)`` (about ``1 / (1 - fraction)``) for the
        easier half's pairs that were kept, 1 for the others; None when the epoch prunes nothing. Forgets the weights
        of earlier epochs (batches come in training order; the loader may have drawn later epochs already)."""
        for old in [e for e in self._weights if e < epoch]:
            del self._weights[old]
        if epoch not in self._weights:
            return None
        return torch.from_numpy(self._weights[epoch][sample_idx.detach().long().cpu().numpy()])

    # ---- checkpoints ----------------------------------------------------------------------------------------------

    def save(self, folder: str) -> None:
        """Writes the recorded losses to ``folder/curriculum_pruning.npz``."""
        epochs = sorted(self._losses)
        losses = np.stack([self._losses[e] for e in epochs]) if epochs else np.zeros((0, self.num_samples), np.float32)
        np.savez(os.path.join(folder, PRUNING_FILE), epochs=np.asarray(epochs, dtype=np.int64), losses=losses)

    def load(self, folder: str) -> None:
        """Restores the losses :meth:`save` wrote (none when the checkpoint has no file: it was not pruned).

        Raises:
            ValueError: when the file holds losses of another number of samples.
        """
        self._losses, self._weights = {}, {}
        path = os.path.join(folder, PRUNING_FILE)
        if not os.path.isfile(path):
            return
        with np.load(path) as saved:
            if saved["losses"].shape[1:] != (self.num_samples,):
                raise ValueError(
                    f"{path} holds losses of {saved['losses'].shape[1:]} samples, but the training set has "
                    f"{self.num_samples}; resume with the same training set."
                )
            self._losses = {int(e): row.copy() for e, row in zip(saved["epochs"], saved["losses"], strict=True)}

    def describe(self) -> str:
        """A short description for logs and model cards."""
        return (
            f"pruning {self.fraction:g} of each pool's easier half in epochs {LAG}-{self.last_pruned_epoch} "
            f"(losses of epochs <= e - {LAG})"
        )


class PruningCheckpointCallback(TrainerCallback):
    """Writes the recorded losses of the run's :class:`LearnedPairPruning` into every checkpoint folder (main process).

    Args:
        pruning (Callable[[], LearnedPairPruning | None]): returns the run's pruning (None: nothing to save); the
            trainer builds it with the data loader, after its callbacks.
    """

    def __init__(self, pruning: Callable[[], LearnedPairPruning | None]) -> None:
        self.pruning = pruning

    def on_save(self, args, state, control, **kwargs):
        pruning = self.pruning()
        if pruning is not None and state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            if os.path.isdir(folder):
                pruning.save(folder)
        return control


__all__ = ["PRUNING_FILE", "LearnedPairPruning", "PruningCheckpointCallback", "check_pruning_values"]
