"""The curriculum sampler: which samples each epoch trains on, and in what order.

:class:`CurriculumSampler` is an index-level ``torch.utils.data.Sampler[int]``. It deliberately does not subclass
``RandomSampler``: with ``use_seedable_sampler=True`` (the Trainer's default) accelerate replaces every
``RandomSampler`` by its own ``SeedableRandomSampler`` and the curriculum would be silently lost.

Epoch ``e`` trains on a *pool* of ``ceil(lambda(e) * N)`` samples (``lambda`` from the :class:`Pacing`), shuffled with
a local ``torch.Generator`` seeded from ``(seed, e)``. The order is a pure function of ``(difficulty, pacing,
num_epochs, seed, order, epoch)``: every rank computes the same order (accelerate's ``BatchSamplerShard`` then gives
each rank every ``world_size``-th batch), ``set_epoch`` can be called any number of times, and a resumed run replays
exactly the order of the interrupted one (the Trainer itself skips the batches already seen in the resumed epoch).

Order modes (:class:`CurriculumOrder`):

- ``easy_first`` (CLASS): the pool is the easiest ``ceil(lambda N)`` samples (ties broken by a permutation drawn from
  the seed, so a large tie is sampled across the data, not taken from its first rows);
- ``hard_first`` (anti-curriculum): the hardest ``ceil(lambda N)`` samples (ties broken the same way);
- ``random_subset`` (ablation): a random subset of the same size, **re-drawn every epoch** from ``(seed, epoch)``
  (the fair control: same pool sizes, no difficulty ordering; ``redraw_random_subset=False`` keeps the nested pools
  of one fixed random permutation instead, which mimics the nesting of ``easy_first``);
- ``none`` (baseline): every sample every epoch, in random order; the pacing is ignored.

With per-sample ``costs`` (pacing by cost, ``CurriculumTrainingArguments.pacing_cost_column``), ``lambda(e)`` is a
share of the total cost instead of the sample count: the pool is the shortest prefix of the epoch's order (easiest
first, hardest first, or the random draw) whose costs reach ``lambda(e)`` of the sum. With unit costs the pools are
those of pacing by count.

With per-sample ``strata`` (``CurriculumTrainingArguments.curriculum_strata_column``), every pool keeps the training
set's mix of strata: a sample is ranked by its difficulty *within its stratum* (its quantile there), so a pool of
``lambda N`` samples holds about ``lambda`` of every stratum, the easiest (or hardest) of each. On ChEBI-20 the easiest
pairs are the larger molecules; stratifying by molecule size keeps the order of difficulty but not that skew.

With ``pruning`` (:class:`~.pruning.LearnedPairPruning`, ``CurriculumTrainingArguments.prune_fraction``), part of
each pool's easier half by the pairs' recent training losses is left out of the epoch after the pool is chosen.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler
from transformers.utils import ExplicitEnum

from .pacing import Pacing, get_pacing, pool_size
from .pruning import LearnedPairPruning

logger = logging.getLogger(__name__)


class BatchComposition(ExplicitEnum):
    """How an epoch's order is cut into batches."""

    RANDOM = "random"
    CONFUSION = "confusion"


class CurriculumOrder(ExplicitEnum):
    """Which samples enter each epoch's pool."""

    EASY_FIRST = "easy_first"
    HARD_FIRST = "hard_first"
    RANDOM_SUBSET = "random_subset"
    NONE = "none"


def as_difficulty_array(difficulty: Any, name: str = "difficulty") -> np.ndarray:
    """Materialises difficulty values (list, tensor, numpy array or ``datasets.Column``) once as ``float64 [N]``.

    Raises:
        ValueError: naming ``name`` when the values are not one-dimensional or not finite.
    """
    if isinstance(difficulty, torch.Tensor):
        array = difficulty.detach().cpu().double().numpy()
    else:
        array = np.asarray(difficulty, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must hold one number per sample (shape [N]), got shape {array.shape}.")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"`{name}` is missing or not finite in {bad.size} rows (first: row {int(bad[0])}).")
    return array


def as_cost_array(costs: Any, num_samples: int, name: str = "costs") -> np.ndarray:
    """Per-sample costs of pacing by cost as ``float64 [N]``: finite and positive, one per training sample.

    Raises:
        ValueError: naming ``name``, the first offending row and the count, or the length mismatch.
    """
    array = as_difficulty_array(costs, name)
    if array.size != num_samples:
        raise ValueError(f"`{name}` has {array.size} values but the training set has {num_samples} samples.")
    bad = np.flatnonzero(array <= 0)
    if bad.size:
        raise ValueError(
            f"`{name}` must be positive; {bad.size} rows are not (first: row {int(bad[0])}, value {array[bad[0]]})."
        )
    return array


def as_strata_array(strata: Any, num_samples: int, name: str = "strata") -> np.ndarray:
    """Stratum labels as consecutive ``int64 [N]`` codes (``0 .. S-1``, in sorted order of the labels).

    Raises:
        ValueError: naming ``name``, on a length mismatch or a missing label (None or NaN), with its first row.
    """
    values = list(strata.tolist() if isinstance(strata, (np.ndarray, torch.Tensor)) else strata)
    if len(values) != num_samples:
        raise ValueError(f"`{name}` has {len(values)} values but the training set has {num_samples} samples.")
    _check_present(values, name)
    _, codes = np.unique(np.asarray(values), return_inverse=True)
    return codes.astype(np.int64).reshape(-1)


def _check_present(values: list[Any], name: str) -> None:
    """Raises a ``ValueError`` naming ``name``, the count and the first row when a value is None or NaN."""
    missing = [row for row, v in enumerate(values) if v is None or (isinstance(v, (float, np.floating)) and v != v)]
    if missing:
        raise ValueError(f"`{name}` is missing in {len(missing)} rows (first: row {missing[0]}).")


def strata_labels(values: Any, num_strata: int, name: str = "strata") -> np.ndarray:
    """Stratum codes of a column: numbers cut into ``num_strata`` quantile bins, other values taken as they are.

    Numbers (e.g. ``num_nodes``) are binned at the column's ``1/S, 2/S, ...`` quantiles, equal values always in the
    same bin (so a column with few distinct values may give fewer than ``num_strata`` bins); strings and booleans are
    categories, one stratum per value.

    Args:
        values (Sequence): one value per training sample.
        num_strata (int): number of quantile bins of a numeric column (at least 1).
        name (str): the column's name, for error messages.

    Returns:
        np.ndarray: ``int64 [N]`` stratum codes.

    Raises:
        ValueError: naming ``name`` on a missing value or a bad ``num_strata``.
    """
    if not isinstance(num_strata, int) or num_strata < 1:
        raise ValueError(f"`num_strata` must be a positive integer, got {num_strata!r}.")
    values = list(values.tolist() if isinstance(values, (np.ndarray, torch.Tensor)) else values)
    if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values):
        return as_strata_array(values, len(values), name)  # categories (a missing value is neither)
    _check_present(values, name)
    numbers = np.asarray(values, dtype=np.float64)
    edges = np.quantile(numbers, np.arange(1, num_strata) / num_strata)
    return np.searchsorted(np.unique(edges), numbers, side="left").astype(np.int64)


def _interleave_strata(ranked: np.ndarray, strata: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """``ranked`` re-ordered by each sample's quantile within its stratum, so every prefix holds each stratum's share.

    A sample at position ``k`` (0-based) among the ``n_s`` samples of its stratum in ``ranked`` gets the key
    ``(k + 0.5) / n_s``; samples are then sorted by key, equal keys by ``tie_break``.
    """
    in_ranked_order = strata[ranked]
    counts = np.bincount(in_ranked_order)
    grouped = np.argsort(in_ranked_order, kind="stable")  # by stratum, each in ranked order
    starts = np.cumsum(counts) - counts
    position = np.empty(ranked.size, dtype=np.int64)
    position[ranked[grouped]] = np.arange(ranked.size) - starts[in_ranked_order[grouped]]
    key = (position + 0.5) / counts[strata]
    return np.lexsort((tie_break, key))


def difficulty_fingerprint(difficulty: np.ndarray) -> str:
    """A short hash of the difficulty values, to check that a resumed run uses the same ones."""
    return hashlib.sha1(np.ascontiguousarray(difficulty, dtype=np.float64).tobytes()).hexdigest()[:16]


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed derived from ``(seed, epoch, stream)`` (no collisions between e.g. seed 0 epoch 1 and seed 1)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(1, dtype=np.uint64)[0] >> 1)


class CurriculumSampler(Sampler[int]):
    """Yields the indices of the current epoch's pool in a deterministic random order.

    Args:
        difficulty (Sequence[float] | np.ndarray | torch.Tensor): one difficulty per training sample (higher =
            harder); a ``datasets.Column`` is materialised once. Only the order of the values matters.
        pacing (Pacing | str | Callable): fraction of the data per epoch (see :func:`~.pacing.get_pacing`).
        num_epochs (int): number of epochs the pacing is spread over.
        seed (int): seed of the shuffles and of the order among tied difficulties (use the Trainer's ``data_seed``
            or ``seed``).
        order (CurriculumOrder | str): ``easy_first``, ``hard_first``, ``random_subset`` or ``none``.
        redraw_random_subset (bool): with ``random_subset``, draw a fresh subset every epoch (default) rather than
            taking nested prefixes of one fixed permutation.
        costs (Sequence[float] | np.ndarray | None): a positive cost per sample (e.g. its number of atoms) to pace
            by: each pool then holds ``lambda(e)`` of the total cost rather than of the samples. None paces by count.
        strata (Sequence | np.ndarray | None): a stratum label per sample (see :func:`strata_labels`); the pools
            of ``easy_first`` and ``hard_first`` then take the same share of every stratum. None ranks all samples
            together.
        pruning (LearnedPairPruning | None): leaves part of every pool's learned pairs out of its epoch (sizes are
            those of :meth:`LearnedPairPruning.num_pruned`, so they are known before training).

    Example:
        >>> sampler = CurriculumSampler([0.9, 0.1, 0.5, 0.3], "staged", num_epochs=4, seed=0)
        >>> sampler.set_epoch(0); sorted(sampler)
        [1]
        >>> sampler.set_epoch(1); sorted(sampler)
        [1, 3]
    """

    def __init__(
        self,
        difficulty: Sequence[float] | np.ndarray | torch.Tensor,
        pacing: Pacing | str = "staged",
        num_epochs: int = 1,
        seed: int = 0,
        order: CurriculumOrder | str = CurriculumOrder.EASY_FIRST,
        redraw_random_subset: bool = True,
        costs: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        strata: Sequence[Any] | np.ndarray | None = None,
        pruning: LearnedPairPruning | None = None,
    ) -> None:
        self.order = CurriculumOrder(order)
        self.pacing = get_pacing(pacing)
        if not isinstance(num_epochs, int) or num_epochs < 1:
            raise ValueError(f"`num_epochs` must be a positive integer, got {num_epochs!r}.")
        self.num_epochs = num_epochs
        self.seed = int(seed)
        self.redraw_random_subset = bool(redraw_random_subset)
        self.epoch = 0
        self.tie_break = "seed"
        self._cache: tuple[int, torch.Tensor] | None = None
        self.strata: np.ndarray | None = None
        self.set_difficulty(difficulty)
        if pruning is not None and (pruning.num_samples, pruning.num_epochs) != (self.num_samples, num_epochs):
            raise ValueError(
                f"The pruning was built for {pruning.num_samples} samples and {pruning.num_epochs} epochs, the "
                f"sampler for {self.num_samples} and {num_epochs}."
            )
        self.pruning = pruning
        self.costs = None if costs is None else as_cost_array(costs, self.num_samples, "costs")
        if strata is not None:
            self.strata = as_strata_array(strata, self.num_samples)
            self._sort()

    # ---- difficulty ----------------------------------------------------------------------------------------------

    def set_difficulty(self, difficulty: Sequence[float] | np.ndarray | torch.Tensor) -> None:
        """Replaces the difficulty values (e.g. after a refresh with the current model); N must stay the same."""
        array = as_difficulty_array(difficulty)
        if array.size == 0:
            raise ValueError("`difficulty` is empty: the training set has no samples.")
        if hasattr(self, "difficulty") and array.size != self.difficulty.size:
            raise ValueError(
                f"The new difficulty has {array.size} values but the sampler was built for {self.difficulty.size} "
                "samples."
            )
        self.difficulty = array
        self._sort()

    def _sort(self) -> None:
        # Ties are broken by one permutation drawn from the seed (the same in both directions, for every epoch and
        # after a refresh), not by row: with many tied pairs (a strong scorer ranks most of them first) the early
        # pools would otherwise be the first rows of the file. Checkpoints written before this choice
        # record no `tie_break` and resume with ties broken by row, as they were drawn.
        if self.tie_break == "seed":
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, 0, stream=2))
            tie_break = torch.randperm(self.difficulty.size, generator=generator).numpy()
        else:
            tie_break = np.arange(self.difficulty.size)
        self._tie_break = tie_break
        self._easy_to_hard = np.lexsort((tie_break, self.difficulty))
        self._hard_to_easy = np.lexsort((tie_break, -self.difficulty))
        if self.strata is not None:
            self._easy_to_hard = _interleave_strata(self._easy_to_hard, self.strata, tie_break)
            self._hard_to_easy = _interleave_strata(self._hard_to_easy, self.strata, tie_break)
        self._cache = None

    @property
    def num_samples(self) -> int:
        """Size ``N`` of the training set."""
        return int(self.difficulty.size)

    # ---- epochs --------------------------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose pool and order :meth:`__iter__` yields (idempotent)."""
        epoch = int(epoch)
        if epoch < 0:
            raise ValueError(f"`epoch` must be non-negative, got {epoch}.")
        self.epoch = epoch

    def fraction(self, epoch: int | None = None) -> float:
        """Pacing fraction of ``epoch`` (the current one by default); 1.0 with order ``none``."""
        if self.order == CurriculumOrder.NONE:
            return 1.0
        return self.pacing.fraction(self.epoch if epoch is None else epoch, self.num_epochs)

    def stage(self, epoch: int | None = None) -> int:
        """Pacing stage of ``epoch`` (the current one by default)."""
        return self.pacing.stage(self.epoch if epoch is None else epoch, self.num_epochs)

    def pool_size(self, epoch: int | None = None) -> int:
        """``ceil(lambda(epoch) * N)`` (N with order ``none``); with ``costs``, the length of the shortest prefix of
        the epoch's order whose costs reach ``lambda(epoch)`` of their sum; less the pairs ``pruning`` leaves out."""
        epoch = self.epoch if epoch is None else int(epoch)
        size = self._pool_size(epoch, self._ranked(epoch) if self.costs is not None else None)
        return size - (self.pruning.num_pruned(size, epoch) if self.pruning is not None else 0)

    def _pool_size(self, epoch: int, ranked: np.ndarray | None) -> int:
        fraction = self.fraction(epoch)
        if self.costs is None or self.order == CurriculumOrder.NONE or fraction >= 1:
            return pool_size(fraction, self.num_samples)
        cumulative = np.cumsum(self.costs[ranked])
        budget = round(fraction * float(cumulative[-1]), 9)
        reached = int(np.searchsorted(cumulative, budget * (1 - 1e-12), side="left")) + 1
        return min(self.num_samples, max(1, reached))

    def _ranked(self, epoch: int) -> np.ndarray:
        """Every sample in the order the pools of ``epoch`` are taken from (the pool is a prefix of it)."""
        if self.order == CurriculumOrder.EASY_FIRST:
            return self._easy_to_hard
        if self.order == CurriculumOrder.HARD_FIRST:
            return self._hard_to_easy
        if self.order == CurriculumOrder.RANDOM_SUBSET:
            draw = epoch if self.redraw_random_subset else 0
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, draw, stream=1))
            return torch.randperm(self.num_samples, generator=generator).numpy()
        return np.arange(self.num_samples)

    def pool(self, epoch: int | None = None) -> np.ndarray:
        """The indices admitted in ``epoch``, in pool order (before the shuffle); with ``pruning``, those it keeps."""
        epoch = self.epoch if epoch is None else int(epoch)
        ranked = self._ranked(epoch)
        pool = ranked[: self._pool_size(epoch, ranked)]
        return pool if self.pruning is None else self.pruning.prune(pool, epoch, self._tie_break)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """The shuffled indices of ``epoch``: the pool permuted with a generator seeded from ``(seed, epoch)``."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        pool = torch.from_numpy(np.ascontiguousarray(self.pool(epoch), dtype=np.int64))
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = pool[torch.randperm(pool.numel(), generator=generator)]
        self._cache = (epoch, order)
        return order

    def __iter__(self) -> Iterator[int]:
        yield from self.indices().tolist()

    def __len__(self) -> int:
        return self.pool_size()

    # ---- checkpointing -------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The state that determines the order (JSON-serialisable; the difficulty itself only as a hash)."""
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "order": self.order.value,
            "num_epochs": self.num_epochs,
            "num_samples": self.num_samples,
            "pacing": self.pacing.describe(),
            "redraw_random_subset": self.redraw_random_subset,
            "tie_break": self.tie_break,
            "difficulty_sha1": difficulty_fingerprint(self.difficulty),
            "costs_sha1": None if self.costs is None else difficulty_fingerprint(self.costs),
            "strata_sha1": None if self.strata is None else difficulty_fingerprint(self.strata),
            "pruning": None if self.pruning is None else self.pruning.describe(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores ``epoch`` and ``seed``, after checking that the run is the same curriculum.

        Raises:
            ValueError: naming the field that differs (samples, order, epochs, pacing or difficulty values).
        """
        checks = {
            "num_samples": self.num_samples,
            "order": self.order.value,
            "num_epochs": self.num_epochs,
            "pacing": self.pacing.describe(),
            "difficulty_sha1": difficulty_fingerprint(self.difficulty),
            "costs_sha1": None if self.costs is None else difficulty_fingerprint(self.costs),
            "strata_sha1": None if self.strata is None else difficulty_fingerprint(self.strata),
            "pruning": None if self.pruning is None else self.pruning.describe(),
        }
        for key, current in checks.items():
            # a checkpoint without a key is not checked on it, except the costs, strata and pruning: their absence
            # means pacing by count over unstratified, unpruned pools
            saved = state.get(key, None if key in ("costs_sha1", "strata_sha1", "pruning") else current)
            if saved != current:
                raise ValueError(
                    f"Cannot restore the curriculum sampler: the checkpoint has `{key}`={saved!r} but this run "
                    f"has {current!r}. Resume with the same training set, difficulty and curriculum arguments."
                )
        self.seed = int(state.get("seed", self.seed))
        self.redraw_random_subset = bool(state.get("redraw_random_subset", self.redraw_random_subset))
        self.tie_break = state.get("tie_break", "row")
        self.set_epoch(int(state.get("epoch", 0)))
        self._sort()

    def __repr__(self) -> str:
        return (
            f"CurriculumSampler(num_samples={self.num_samples}, order={self.order.value!r}, pacing={self.pacing!r}, "
            f"num_epochs={self.num_epochs}, seed={self.seed}, epoch={self.epoch})"
        )


class CurriculumBatchSampler(Sampler[list[int]]):
    """Every curriculum epoch's batches, back to back, as one deterministic stream (what the Trainer iterates).

    Epoch ``e`` draws its order from ``sampler.indices(e)`` and cuts it into the batch sizes of
    :meth:`CurriculumPlan.batch_sizes` (sizes that differ by at most one, a whole number of optimizer steps on every
    process). accelerate shards the stream as any batch sampler, batch ``j`` to process ``j mod W``; since every
    epoch has a multiple of ``W`` batches, no process pads or repeats a sample, whatever ``even_batches`` says.

    The Trainer sees a single pass over this stream (``max_steps`` is the plan's total), so resuming relies on its own
    batch skipping: the stream replays identically from ``(difficulty, pacing, seed, order)``.

    Args:
        sampler (CurriculumSampler): the per-epoch pools and orders.
        plan (CurriculumPlan): the batch sizes of every epoch.
        before_epoch (Callable[[int], None] | None): called with ``e`` before epoch ``e``'s order is drawn (the
            trainer refreshes the difficulty there). The data loader draws ahead of training (accelerate prefetches
            one batch, the Trainer the batches of one optimizer step), so it runs during the last optimizer step of
            epoch ``e - 1``, before that step's update.
        compose (Callable | None): ``compose(order, sizes) -> batches`` cuts an epoch's order into batches of the
            given sizes in another way than consecutively (e.g. :func:`compose_confusion_batches`).

    Attributes:
        batch_size (None): batches vary in size (accelerate reads this attribute).
        drop_last (bool): always True: accelerate never completes a batch from the start of the stream.
    """

    batch_size = None
    drop_last = True

    def __init__(
        self,
        sampler: CurriculumSampler,
        plan,
        before_epoch: Callable[[int], None] | None = None,
        compose: Callable[[list[int], list[int]], list[list[int]]] | None = None,
    ) -> None:
        if plan.num_samples != sampler.num_samples or plan.num_epochs != sampler.num_epochs:
            raise ValueError(
                f"The plan ({plan.num_samples} samples, {plan.num_epochs} epochs) does not match the sampler "
                f"({sampler.num_samples} samples, {sampler.num_epochs} epochs)."
            )
        self.sampler = sampler
        self.plan = plan
        self.before_epoch = before_epoch
        self.compose = compose

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The batches of ``epoch`` in stream order (all processes)."""
        order = self.sampler.indices(epoch).tolist()
        sizes = self.plan.batch_sizes(epoch)
        if self.compose is not None:  # with `dataloader_drop_last` the sizes cover only the epoch's first pairs
            return self.compose(order[: sum(sizes)], sizes)
        batches, start = [], 0
        for size in sizes:
            batches.append(order[start : start + size])
            start += size
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for epoch in range(self.plan.num_epochs):
            if self.before_epoch is not None:
                self.before_epoch(epoch)
            yield from self.epoch_batches(epoch)

    def __len__(self) -> int:
        return self.plan.total_batches

    def set_epoch(self, epoch: int) -> None:
        """Accepted and ignored: the stream covers every curriculum epoch (the Trainer runs one pass over it)."""


def compose_confusion_batches(
    order: Sequence[int], sizes: Sequence[int], neighbors: np.ndarray, share: float = 0.5
) -> list[list[int]]:
    """Batches in which pairs that confuse each other meet: each batch's hardest negatives come from the difficulty.

    Batch by batch, in the epoch's ``order``: the first unplaced pair seeds the batch; its confusing neighbours that
    are in the pool and unplaced join it, then theirs (breadth first), until ``share`` of the batch is filled; the
    rest of the batch is the next unplaced pairs of ``order``. Every pair of the order is placed exactly once, in
    batches of exactly ``sizes``.

    Args:
        order (Sequence[int]): the epoch's pool in its shuffled order.
        sizes (Sequence[int]): the batch sizes (they sum to ``len(order)``).
        neighbors (np.ndarray): ``[N, k]`` confusing neighbours of every training pair, most confusing first.
        share (float): share of each batch filled by neighbourhoods, in ``[0, 1]``.

    Returns:
        list[list[int]]: the batches.
    """
    order = list(order)
    if sum(sizes) != len(order):
        raise ValueError(f"The batch sizes sum to {sum(sizes)} but the epoch holds {len(order)} pairs.")
    in_pool = np.zeros(len(neighbors), dtype=bool)
    in_pool[order] = True
    placed = np.zeros(len(neighbors), dtype=bool)
    position, batches = 0, []

    def next_unplaced() -> int:
        nonlocal position
        while placed[order[position]]:
            position += 1
        return order[position]

    for size in sizes:
        batch: list[int] = []
        queue = deque([next_unplaced()])  # the seed and its neighbourhood, breadth first
        while queue and len(batch) < min(size, max(1, round(share * size))):
            current = queue.popleft()
            if not placed[current]:
                batch.append(current)
                placed[current] = True
                queue.extend(int(j) for j in neighbors[current] if in_pool[j] and not placed[j])
        while len(batch) < size:  # the rest of the batch in the epoch's order
            batch.append(next_unplaced())
            placed[batch[-1]] = True
        batches.append(batch)
    return batches
