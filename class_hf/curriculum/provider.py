"""Where a run's difficulty values come from, when they are refreshed, and how every process gets the same ones.

:class:`DifficultyProvider` owns the difficulty of one training run:

- **before training** (:meth:`DifficultyProvider.prepare`): the values of a checkpoint being resumed, else the
  training set's difficulty column (checked exactly as ``compute_difficulty(dataset, "precomputed")`` checks it:
  numeric, finite, in ``[0, 1]``, naming the column and the row), else a scoring pass from ``difficulty_source``;
- **during training** (:meth:`DifficultyProvider.maybe_refresh`): with ``difficulty_refresh``, a re-scoring with the
  current model before the first epoch of every new pacing stage;
- **on every process**: the values of process 0 (scoring may differ in the last bits between processes);
- **in checkpoints**: :meth:`save` / :meth:`load` write and read ``curriculum_difficulty.npy`` and
  ``curriculum_state.json`` beside the Trainer's files, so a resumed run neither re-scores (a ``warmup`` scorer would
  not give the same values) nor depends on the dataset column.

The per-sample weights of epoch ``e`` use the values its order was drawn with (:meth:`normalized`), so a refresh never
changes the weights of the epoch it happens in.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .intensity import normalize_difficulty
from .pacing import Pacing
from .sampler import as_difficulty_array, compose_confusion_batches

logger = logging.getLogger(__name__)

STATE_FILE = "curriculum_state.json"
DIFFICULTY_FILE = "curriculum_difficulty.npy"
NEIGHBORS_FILE = "curriculum_neighbors.npy"
SAMPLE_IDX = "sample_idx"
"""Column (and batch key) holding each training row's position; the provider adds it when missing."""


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def broadcast_from_main(values: np.ndarray) -> np.ndarray:
    """Process 0's values on every process (scoring may differ in the last bits between processes)."""
    from accelerate import PartialState

    if PartialState().num_processes <= 1:
        return values
    from accelerate.utils import broadcast_object_list

    box = [values]
    broadcast_object_list(box, from_process=0)
    return np.asarray(box[0])


def with_sample_idx(dataset):
    """``dataset`` with a ``sample_idx`` column holding the row positions (added when missing, checked otherwise)."""
    positions = np.arange(len(dataset), dtype=np.int64)
    if SAMPLE_IDX in dataset.column_names:
        existing = np.asarray(dataset[SAMPLE_IDX])
        if existing.shape != positions.shape or not np.array_equal(existing, positions):
            raise ValueError(
                f"The training set's `{SAMPLE_IDX}` column must hold the row positions 0..{len(dataset) - 1}; it "
                f"holds other values. Drop it (`dataset.remove_columns('{SAMPLE_IDX}')`) and the trainer adds it."
            )
        return dataset
    return dataset.add_column(SAMPLE_IDX, positions)


class DifficultyProvider:
    """The difficulty values of a training run: prepared once, refreshed at stage boundaries, saved in checkpoints.

    Args:
        source (str): ``difficulty_source`` (used when the training set lacks ``column``).
        column (str): the difficulty column of the training set.
        pacing (Pacing): the run's pacing (its stages decide when to refresh).
        num_epochs (int): curriculum epochs.
        refresh (bool): re-score with the current model before every new stage.
        score_kwargs (dict): ``delta``, ``chunk_size``, ``batch_size``, ``show_progress`` of the scoring passes.
        source_kwargs (dict): the extra arguments of :func:`~class_hf.curriculum.difficulty.compute_difficulty`
            (``seed``, ``warmup_fraction``, ``warmup_epochs``, ``warmup_learning_rate``, ``warmup_batch_size``).
        broadcast (Callable[[np.ndarray], np.ndarray] | None): gives every process process 0's values (default:
            accelerate's ``broadcast_object_list`` on several processes).
        neighbors (int): also keep every pair's ``k`` confusing neighbours (``confusing_neighbors``; 0: no), for
            ``batch_composition="confusion"``.
        confusion_share (float): share of each batch filled by confusing neighbourhoods (:meth:`compose_batches`).
    """

    def __init__(
        self,
        *,
        source: str,
        column: str,
        pacing: Pacing,
        num_epochs: int,
        refresh: bool = False,
        score_kwargs: dict[str, Any] | None = None,
        source_kwargs: dict[str, Any] | None = None,
        broadcast: Callable[[np.ndarray], np.ndarray] | None = None,
        neighbors: int = 0,
        confusion_share: float = 0.5,
    ) -> None:
        self.source = source
        self.column = column
        self.pacing = pacing
        self.num_epochs = num_epochs
        self.refresh = refresh
        self.score_kwargs = dict(score_kwargs or {})
        self.source_kwargs = dict(source_kwargs or {})
        self.broadcast = broadcast or broadcast_from_main
        self.num_neighbors = int(neighbors)
        self.confusion_share = float(confusion_share)
        self.reset()

    @classmethod
    def from_training_args(cls, args: Any, pacing: Pacing, num_epochs: int) -> DifficultyProvider:
        """The provider ``CurriculumTrainingArguments`` describe (``difficulty_*``, ``eval_chunk_size``, ...)."""
        return cls(
            source=args.difficulty_source,
            column=args.difficulty_column,
            pacing=pacing,
            num_epochs=num_epochs,
            refresh=args.difficulty_refresh and args.uses_batch_stream,
            neighbors=args.confusion_neighbors if args.batch_composition == "confusion" else 0,
            confusion_share=args.confusion_share,
            score_kwargs={
                "delta": args.difficulty_delta,
                "chunk_size": args.eval_chunk_size,
                "batch_size": args.difficulty_batch_size or args.per_device_eval_batch_size,
                "show_progress": not args.disable_tqdm,
            },
            source_kwargs={
                "seed": args.data_seed if args.data_seed is not None else args.seed,
                "warmup_fraction": args.difficulty_warmup_fraction,
                "warmup_epochs": args.difficulty_warmup_epochs,
                "warmup_learning_rate": args.difficulty_warmup_learning_rate or args.learning_rate,
                "warmup_batch_size": args.difficulty_warmup_batch_size or args.per_device_train_batch_size,
            },
        )

    def reset(self) -> None:
        """Forgets the values of a previous run."""
        self.values: np.ndarray | None = None
        self.neighbors: np.ndarray | None = None
        self.scoring_info: dict[str, Any] = {}
        self.scoring_seconds = 0.0
        self.refresh_seconds: dict[int, float] = {}
        self.last_refresh_epoch: int | None = None
        self._normalized: dict[int, torch.Tensor] = {}

    # ------------------------------------------------------------------------------------------------ values
    def _set(self, values: np.ndarray, from_epoch: int) -> None:
        self.values = self.broadcast(np.asarray(values, dtype=np.float64))
        self._normalized[from_epoch] = torch.from_numpy(normalize_difficulty(self.values))

    def normalized(self, epoch: int) -> torch.Tensor:
        """``d_hat`` in ``[0, 1]`` of every sample, as epoch ``epoch``'s order was drawn with it."""
        if not self._normalized:
            raise RuntimeError("The difficulty has not been prepared; call `prepare` first.")
        start = max((e for e in self._normalized if e <= epoch), default=min(self._normalized))
        return self._normalized[start]

    def batch_normalized(
        self, epoch: int, sample_idx: torch.Tensor | None, difficulty: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``d_hat`` of a batch's samples in ``epoch`` (by ``sample_idx``, else the batch's own ``difficulty``).

        Raises:
            ValueError: when the batch has neither.
        """
        if sample_idx is not None and self.values is not None:
            return self.normalized(epoch)[sample_idx.detach().long().cpu()]
        if difficulty is not None:
            return difficulty.detach().clamp(0.0, 1.0)
        raise ValueError(
            f"The per-sample weights (`intensity_beta` > 0) need each sample's difficulty, but the batch has neither "
            f"`{SAMPLE_IDX}` nor `difficulty`. Use a collator that passes them through (MoleculeTextCollator does) "
            "or set `intensity_beta=0`."
        )

    def prepare(self, dataset, *, model=None, data_collator=None, tokenizer=None, restored: np.ndarray | None = None):
        """Gives the training set its difficulty values and a ``sample_idx`` column; returns the dataset to train on.

        Args:
            dataset (datasets.Dataset): the training pairs.
            model (torch.nn.Module | None): the backbone (``warmup`` scoring; its text encoder for ``fingerprint``).
            data_collator (Callable | None): builds model inputs from rows (scoring).
            tokenizer: the text tokenizer (``fingerprint``, ``model:``).
            restored (np.ndarray | None): the values of a checkpoint being resumed.

        Returns:
            datasets.Dataset: ``dataset`` with ``sample_idx`` (and the difficulty columns when they were scored).

        Raises:
            ValueError: values that are not one number in ``[0, 1]`` per row (naming the column and row), a
                precomputed source without the column, or restored values of another size.
        """
        import datasets

        if not isinstance(dataset, datasets.Dataset):
            raise TypeError(
                f"The curriculum and the per-sample weights need a `datasets.Dataset` train_dataset, got "
                f"{type(dataset).__name__}. Convert it with `datasets.Dataset.from_list(...)`, or set "
                "`curriculum='none'` and `intensity_beta=0`."
            )
        from .difficulty import NEIGHBORS_COLUMN, check_difficulty_column, compute_difficulty

        if restored is not None:
            if len(restored) != len(dataset):
                raise ValueError(
                    f"The checkpoint's curriculum difficulty has {len(restored)} values but the training set has "
                    f"{len(dataset)} rows; resume with the same training set."
                )
            values = as_difficulty_array(restored, name="the checkpoint's difficulty")
        elif self.column in dataset.column_names:
            if self.num_neighbors and NEIGHBORS_COLUMN not in dataset.column_names and self.neighbors is None:
                raise ValueError(
                    f"`batch_composition='confusion'` needs every pair's confusing neighbours, but the training set "
                    f"has `{self.column}` without `{NEIGHBORS_COLUMN}`. Drop the difficulty columns so that they are "
                    "scored again (with the neighbours), or add the column."
                )
            check_difficulty_column(dataset, self.column)
            values = np.asarray(dataset[self.column], dtype=np.float64)
        elif self.source == "precomputed":
            raise ValueError(
                f"`difficulty_source='precomputed'` but the training set has no `{self.column}` column (it has "
                f"{dataset.column_names}). Score it first (`class-hf score` or `compute_difficulty`), name the right "
                "column with `difficulty_column`, or choose another `difficulty_source`."
            )
        else:
            from .difficulty import DIFFICULTY_COLUMN

            dataset, info = compute_difficulty(
                dataset,
                self.source,
                model=model,
                data_collator=data_collator,
                tokenizer=tokenizer,
                neighbors=self.num_neighbors,
                **self.source_kwargs,
                **self.score_kwargs,
            )
            self.scoring_info = _json_safe(info)
            self.scoring_seconds += float(info.get("seconds", 0.0))
            values = np.asarray(dataset[DIFFICULTY_COLUMN], dtype=np.float64)
        self._set(values, from_epoch=0)
        if self.num_neighbors and self.neighbors is None:
            self.neighbors = self.broadcast(np.asarray(dataset[NEIGHBORS_COLUMN], dtype=np.int64))
        return with_sample_idx(dataset)

    def compose_batches(self, order: list[int], sizes: list[int]) -> list[list[int]]:
        """An epoch's batches filled partly with mutually confusing pairs (the current neighbours; see
        :func:`~class_hf.curriculum.sampler.compose_confusion_batches`)."""
        if self.neighbors is None:
            raise RuntimeError("The confusing neighbours have not been prepared; call `prepare` with `neighbors` set.")
        return compose_confusion_batches(order, sizes, self.neighbors, self.confusion_share)

    def due(self, epoch: int) -> bool:
        """Whether the values are re-scored before ``epoch`` (a new stage, not refreshed yet, refresh on)."""
        if not self.refresh or epoch == 0 or epoch >= self.num_epochs:
            return False
        if self.last_refresh_epoch is not None and epoch <= self.last_refresh_epoch:
            return False
        return self.pacing.stage(epoch, self.num_epochs) != self.pacing.stage(epoch - 1, self.num_epochs)

    def maybe_refresh(self, epoch: int, model, dataset, data_collator) -> bool:
        """Re-scores ``dataset`` with ``model`` when a refresh is due before ``epoch``; True when it did.

        Args:
            epoch (int): the epoch about to start.
            model (torch.nn.Module): the current (unwrapped) backbone; its train/eval mode is restored.
            dataset (datasets.Dataset): the training pairs.
            data_collator (Callable): builds model inputs from rows.
        """
        if not self.due(epoch):
            return False
        from .difficulty import DIFFICULTY_COLUMN, score_with_model

        start = time.perf_counter()
        was_training = model.training
        try:
            scored = score_with_model(model, dataset, data_collator, neighbors=self.num_neighbors, **self.score_kwargs)
        finally:
            model.train(was_training)
        self._set(np.asarray(scored[DIFFICULTY_COLUMN], dtype=np.float64), from_epoch=epoch)
        if self.num_neighbors:
            from .difficulty import NEIGHBORS_COLUMN

            self.neighbors = self.broadcast(np.asarray(scored[NEIGHBORS_COLUMN], dtype=np.int64))
        self.last_refresh_epoch = epoch
        seconds = time.perf_counter() - start
        self.refresh_seconds[epoch] = seconds
        self.scoring_seconds += seconds
        logger.info("Refreshed the difficulty with the current model before epoch %d in %.1f s.", epoch, seconds)
        return True

    # ------------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The JSON-serialisable state (the values themselves are saved apart, see :meth:`save`)."""
        return _json_safe(
            {
                "version": 2,
                "source": self.source,
                "last_refresh_epoch": self.last_refresh_epoch,
                "scoring_info": self.scoring_info,
                "scoring_seconds": self.scoring_seconds,
                "refresh_seconds": self.refresh_seconds,
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_refresh_epoch = state.get("last_refresh_epoch")
        self.scoring_info = state.get("scoring_info") or {}
        self.scoring_seconds = float(state.get("scoring_seconds", 0.0))
        self.refresh_seconds = {int(k): float(v) for k, v in (state.get("refresh_seconds") or {}).items()}

    def save(self, folder: str, extra: dict[str, Any] | None = None) -> None:
        """Writes ``curriculum_state.json`` (this state plus ``extra``) and ``curriculum_difficulty.npy``."""
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, STATE_FILE), "w") as f:
            json.dump({**self.state_dict(), **_json_safe(extra or {})}, f, indent=2, sort_keys=True)
        if self.values is not None:
            np.save(os.path.join(folder, DIFFICULTY_FILE), self.values)
        if self.neighbors is not None:
            np.save(os.path.join(folder, NEIGHBORS_FILE), self.neighbors)

    def load_checkpoint(self, folder: str) -> tuple[np.ndarray | None, dict[str, Any] | None]:
        """Restores this provider's state from a checkpoint; returns its values and the sampler state saved with them.

        A checkpoint without curriculum state (a plain-Trainer run) gives ``(None, None)``: the difficulty is then
        prepared from the training set again (a warning says so when it matters).
        """
        loaded = self.load(folder)
        if loaded is None:
            logger.warning("Checkpoint %s has no curriculum state; the difficulty is prepared again.", folder)
            return None, None
        state, values = loaded
        self.load_state_dict(state)
        neighbors_path = os.path.join(folder, NEIGHBORS_FILE)
        if os.path.isfile(neighbors_path):
            self.neighbors = np.load(neighbors_path)
        return values, state.get("sampler")

    @staticmethod
    def load(folder: str) -> tuple[dict[str, Any], np.ndarray | None] | None:
        """Reads what :meth:`save` wrote; None when ``folder`` has no curriculum state (e.g. a plain-Trainer run)."""
        path = os.path.join(folder, STATE_FILE)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            state = json.load(f)
        values_path = os.path.join(folder, DIFFICULTY_FILE)
        return state, (np.load(values_path) if os.path.isfile(values_path) else None)


class DifficultyCheckpointCallback(TrainerCallback):
    """Writes a provider's values and state into every checkpoint folder, right after the Trainer saved it.

    Args:
        provider (DifficultyProvider): the run's difficulty.
        extra (Callable[[], dict] | None): more JSON state to store beside it (the trainer's sampler state).
    """

    def __init__(self, provider: DifficultyProvider, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.provider = provider
        self.extra = extra

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return control
        extra = self.extra() if self.extra is not None else None
        if self.provider.values is None and not (extra and extra.get("sampler")):  # a plain-Trainer run
            return control
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if not os.path.isdir(folder):
            logger.warning("Checkpoint folder %s not found; the curriculum state was not saved.", folder)
            return control
        self.provider.save(folder, extra)
        return control


__all__ = [
    "DIFFICULTY_FILE",
    "SAMPLE_IDX",
    "STATE_FILE",
    "DifficultyCheckpointCallback",
    "DifficultyProvider",
    "with_sample_idx",
]
