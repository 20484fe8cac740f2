"""``CurriculumTrainer``: CLASS curriculum training for any text-molecule retrieval backbone.

:class:`CurriculumTrainer` is a ``transformers.Trainer`` that

- scores the training pairs before training when the difficulty column is missing (``difficulty_source``), and
  optionally re-scores them with the current model at every stage boundary (``difficulty_refresh``);
- trains epoch ``e`` on the ``ceil(lambda(e) N)`` samples the :class:`~class_hf.curriculum.sampler.CurriculumSampler`
  admits (easiest first by default), with a learning-rate schedule spanning exactly the optimizer steps this takes;
- weights every sample's loss by ``w_i = 1 + beta p d_i`` and applies the stage multiplier gamma (to the learning
  rate by default), see :mod:`class_hf.curriculum.intensity`;
- evaluates retrieval (Hits@k, MRR, mean rank, both directions) on the evaluation split, so that
  ``metric_for_best_model="eval_t2m_mrr"`` (or ``"eval_mrr"``, the mean of both directions) works;
- saves the curriculum state in every checkpoint and restores it with ``resume_from_checkpoint``;
- keeps a per-epoch record (samples seen, optimizer steps, train / eval / scoring seconds) in
  :attr:`CurriculumTrainer.curriculum_history`.

With ``curriculum="none"``, ``intensity_target="none"`` and ``intensity_beta=0`` it trains exactly as a plain
``transformers.Trainer`` (same sampler, same schedule, same loss): the baseline differs from CLASS by switches only.

How the epochs shrink inside the Trainer (checked against transformers 5.24): the training loop computes the batches
per epoch once, from ``len(train_dataloader)`` at the start, and derives the optimizer steps per epoch
(``ceil(batches / gradient_accumulation_steps)``), the total steps (the LR schedule's length), the resume position
(``global_step // steps_per_epoch``) and the end of each gradient-accumulation cycle from it. A curriculum epoch has
its own size, so the trainer

- plans every epoch's batches by asking the prepared dataloader for its length at that epoch (so the plan follows
  accelerate's sharding, ``even_batches`` and ``dataloader_drop_last`` exactly), and returns the planned total as
  ``max_steps`` from the public :meth:`set_initial_training_values`: the schedule ends exactly at the last step;
- passes each epoch's own batch and step counts to ``Trainer._run_epoch``, and the planned resume position from
  ``Trainer._init_training_state``. These two thin wrappers change keyword arguments only; they are the one place
  that depends on private Trainer methods (present since transformers 5.3's split of ``_inner_training_loop``) and
  fail with a clear error if their signatures change.

Everything else goes through public hooks: ``_get_train_sampler(train_dataset=None)`` and
``_set_signature_columns_if_needed`` (the columns the collator reads, as TRL does, instead of asking users to set
``remove_unused_columns=False``), ``compute_loss``, ``prediction_step``, ``evaluate``, ``evaluation_loop``,
``create_optimizer``, ``create_scheduler`` and ``log``.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint

from .curriculum.callback import CurriculumStateCallback, load_curriculum_state
from .curriculum.intensity import (
    AdaptiveIntensity,
    IntensityTarget,
    combine_loss,
    normalize_difficulty,
    scale_lambda_lr,
)
from .curriculum.pacing import Pacing, get_pacing
from .curriculum.sampler import CurriculumSampler, as_difficulty_array
from .training_args import CurriculumTrainingArguments

logger = logging.getLogger(__name__)

SAMPLE_IDX = "sample_idx"
"""Column (and batch key) holding each training row's position; the trainer adds it when missing."""

_NON_MODEL_KEYS = (SAMPLE_IDX, "difficulty")
_PRIVATE_HOOKS = {
    "_run_epoch": ("epoch", "steps_in_epoch", "num_update_steps_per_epoch"),
    "_init_training_state": ("resume_from_checkpoint",),
}


@dataclass
class CurriculumPlan:
    """The planned size of every epoch of a run, as the Trainer will count it.

    Attributes:
        num_samples (int): training set size ``N``.
        fractions (list[float]): pacing fraction of every epoch (1.0 without curriculum).
        pool_sizes (list[int]): samples admitted per epoch, ``ceil(lambda(e) N)``.
        stages (list[int]): pacing stage of every epoch.
        progress (list[float]): curriculum progress ``p`` of every epoch.
        batches (list[int]): batches per rank and epoch (the dataloader's length at that epoch).
        updates (list[int]): optimizer steps per epoch, ``ceil(batches / gradient_accumulation_steps)``.
    """

    num_samples: int
    fractions: list[float]
    pool_sizes: list[int]
    stages: list[int]
    progress: list[float]
    batches: list[int]
    updates: list[int]

    @property
    def num_epochs(self) -> int:
        return len(self.updates)

    @property
    def total_updates(self) -> int:
        """Planned optimizer steps of the whole run (the LR schedule's length)."""
        return sum(self.updates)

    @property
    def sample_passes(self) -> int:
        """Planned sample passes, ``sum_e ceil(lambda(e) N)``."""
        return sum(self.pool_sizes)

    def epoch_of_step(self, step: int) -> int:
        """The epoch in which optimizer step ``step`` (0-based) happens; the last epoch past the end."""
        done = 0
        for epoch, updates in enumerate(self.updates):
            done += updates
            if step < done:
                return epoch
        return self.num_epochs - 1

    def epochs_for(self, steps: int) -> int:
        """How many epochs (the last one possibly partial) ``steps`` optimizer steps reach into."""
        return min(self.num_epochs, self.epoch_of_step(max(steps - 1, 0)) + 1)

    def resume_position(self, global_step: int, gradient_accumulation_steps: int, skip_data: bool) -> tuple[int, int]:
        """``(epochs_trained, batches_to_skip)`` of a run resumed at ``global_step``."""
        done = 0
        for epoch, updates in enumerate(self.updates):
            if global_step < done + updates:
                skip = (global_step - done) * gradient_accumulation_steps if skip_data else 0
                return epoch, skip
            done += updates
        return self.num_epochs, 0


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class CurriculumTrainer(Trainer):
    """A ``transformers.Trainer`` implementing CLASS (curriculum sampling, adaptive intensity, retrieval eval).

    The model must follow the backbone contract (``CONTRIBUTING.md``): ``forward(input_ids, attention_mask, graph,
    **kwargs)`` returning ``loss`` and ``per_sample_loss`` (``[B]``), and ``encode_text``, ``encode_molecule`` and
    ``score`` for evaluation and difficulty scoring. Batches may carry ``sample_idx`` and ``difficulty``; they are
    used here and never passed to the model. Without ``data_collator``, a ``MoleculeTextCollator`` is built from
    ``processing_class``.

    Args:
        model (nn.Module | None): the backbone.
        args (CurriculumTrainingArguments | None): the arguments (defaults when None).
        data_collator (Callable | None): rows -> batch; its ``columns`` attribute names the dataset columns kept.
        train_dataset (datasets.Dataset | None): the training pairs (a ``difficulty`` column is used if present).
        eval_dataset (datasets.Dataset | dict | None): evaluation pairs.
        processing_class: the text tokenizer.
        pacing (Pacing | Callable | None): a pacing object or a function ``(epoch, num_epochs) -> fraction`` that
            replaces ``args.pacing`` (passing it here keeps the arguments picklable for checkpoints).
        **kwargs: the remaining ``transformers.Trainer`` arguments (``model_init``, ``callbacks``, ``optimizers``,
            ``optimizer_cls_and_kwargs``, ...).

    Attributes:
        curriculum_history (list[dict]): one record per epoch: ``epoch``, ``stage``, ``fraction``, ``pool_size``,
            ``progress``, ``gamma``, ``samples_seen`` (all ranks), ``optimizer_steps``, ``planned_optimizer_steps``,
            ``train_seconds``, ``eval_seconds``, ``scoring_seconds``, ``epoch_seconds``, ``global_step``.
        scoring_info (dict): what the initial difficulty scoring reported (source, seconds, ...).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: CurriculumTrainingArguments | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        pacing: Pacing | Callable[[int, int], float] | None = None,
        **kwargs,
    ) -> None:
        if args is None:
            args = CurriculumTrainingArguments(output_dir="trainer_output")
        elif not isinstance(args, CurriculumTrainingArguments):
            raise TypeError(
                f"`args` must be a CurriculumTrainingArguments, got {type(args).__name__}. Build it with "
                "`CurriculumTrainingArguments(...)` (it takes every TrainingArguments field as well)."
            )
        if data_collator is None and processing_class is not None:
            from .data.collator import MoleculeTextCollator

            data_collator = MoleculeTextCollator(processing_class)
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        # The loss is a per-batch mean computed here: the Trainer must not pass `num_items_in_batch` to the model nor
        # scale the loss by the number of processes, and it divides by the gradient-accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        if self.compute_metrics is not None:
            logger.warning(
                "`compute_metrics` is not used by CurriculumTrainer: evaluation reports the contrastive loss and the "
                "retrieval metrics (Hits@k, MRR, mean rank) itself."
            )
        self.pacing: Pacing = get_pacing(pacing) if pacing is not None else self._build_pacing()
        self.intensity = AdaptiveIntensity(
            beta=args.intensity_beta,
            gamma_min=args.intensity_gamma_min,
            gamma_max=args.intensity_gamma_max,
            target=args.intensity_target,
        )
        if self.model is not None:
            self._configure_backbone(self.model)
        self._check_private_hooks()
        self.add_callback(CurriculumStateCallback(self))

        self.difficulty: np.ndarray | None = None
        self._d_hat: torch.Tensor | None = None
        self._curriculum_sampler: CurriculumSampler | None = None
        self._plan: CurriculumPlan | None = None
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._reset_run_state()

    # ------------------------------------------------------------------------------------------------- setup
    def _build_pacing(self) -> Pacing:
        args = self.args
        pacing = args.pacing if callable(args.pacing) else args.pacing.value
        return get_pacing(
            pacing,
            num_stages=args.pacing_stages,
            start_fraction=args.pacing_start_fraction,
            fractions=args.pacing_fractions,
            saturation=args.pacing_saturation,
            root_degree=args.pacing_root_degree,
        )

    def _configure_backbone(self, model: nn.Module) -> None:
        args = self.args
        if self.intensity.target in (IntensityTarget.TEMPERATURE, IntensityTarget.MARGIN) and not getattr(
            model, "supports_intensity", False
        ):
            raise ValueError(
                f"`intensity_target={self.intensity.target.value!r}` passes the stage multiplier to the backbone, but "
                f"{type(model).__name__} does not declare `supports_intensity = True`. Use `intensity_target='lr'` "
                "(or 'loss'/'none'), or add an `intensity` argument to the backbone's forward."
            )
        if args.gather_across_ranks:
            config = getattr(model, "config", None)
            if config is not None and hasattr(config, "gather_across_ranks"):
                config.gather_across_ranks = True
            elif hasattr(model, "gather_across_ranks"):
                model.gather_across_ranks = True
            else:
                raise ValueError(
                    f"`gather_across_ranks=True`, but {type(model).__name__} has no `gather_across_ranks` setting "
                    "(in its config or as an attribute). Set `gather_across_ranks=False` or use a backbone that "
                    "gathers in-batch negatives across ranks."
                )

    def _check_private_hooks(self) -> None:
        if not self.args.curriculum_enabled:
            return
        for name, required in _PRIVATE_HOOKS.items():
            method = getattr(Trainer, name, None)
            params = set(inspect.signature(method).parameters) if method is not None else set()
            missing = [p for p in required if p not in params]
            if method is None or missing:
                import transformers

                raise RuntimeError(
                    f"CurriculumTrainer needs `Trainer.{name}` with the arguments {list(required)} to size each "
                    f"curriculum epoch, but transformers {transformers.__version__} "
                    f"{'lacks it' if method is None else f'lacks {missing}'}. class-hf is tested with transformers "
                    "5.24; install a compatible version or set `curriculum='none'`."
                )

    def _reset_run_state(self) -> None:
        self.curriculum_history: list[dict[str, Any]] = []
        self.scoring_info: dict[str, Any] = {}
        self._scoring_seconds = 0.0
        self._eval_seconds = 0.0
        self._samples_seen = 0  # completed epochs, all ranks
        self._epoch: int | None = None
        self._record: dict[str, Any] | None = None
        self._carry: dict[str, Any] | None = None
        self._last_refresh_epoch: int | None = None
        self._restored_sampler_state: dict[str, Any] | None = None
        self._metrics.clear()

    @property
    def num_epochs(self) -> int:
        """Whole epochs the pacing is spread over (``ceil(num_train_epochs)``)."""
        return max(1, math.ceil(self.args.num_train_epochs))

    @property
    def _needs_difficulty(self) -> bool:
        return self.args.curriculum_enabled or self.args.intensity_beta > 0

    # --------------------------------------------------------------------------------------------- difficulty
    def _unwrapped_model(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def _broadcast(self, values: np.ndarray) -> np.ndarray:
        """Rank 0's values on every rank (scoring may differ in the last bits between ranks)."""
        if self.accelerator.num_processes <= 1:
            return values
        from accelerate.utils import broadcast_object_list

        box = [values]
        broadcast_object_list(box, from_process=0)
        return np.asarray(box[0])

    def _set_difficulty(self, difficulty: np.ndarray) -> None:
        self.difficulty = np.asarray(difficulty, dtype=np.float64)
        self._d_hat = torch.from_numpy(normalize_difficulty(self.difficulty))
        if self._curriculum_sampler is not None:
            self._curriculum_sampler.set_difficulty(self.difficulty)

    def _score_kwargs(self) -> dict[str, Any]:
        args = self.args
        return {
            "delta": args.difficulty_delta,
            "chunk_size": args.eval_chunk_size,
            "batch_size": args.difficulty_batch_size or args.per_device_eval_batch_size,
            "show_progress": not args.disable_tqdm,
        }

    def _prepare_curriculum(self, restored_difficulty: np.ndarray | None = None) -> None:
        """Makes sure the training set has difficulty values and a ``sample_idx`` column (scoring if needed)."""
        import datasets

        dataset = self.train_dataset
        if dataset is None or not self._needs_difficulty:
            return
        if not isinstance(dataset, datasets.Dataset):
            raise TypeError(
                f"The curriculum and the per-sample weights need a `datasets.Dataset` train_dataset, got "
                f"{type(dataset).__name__}. Convert it with `datasets.Dataset.from_list(...)`, or set "
                "`curriculum='none'` and `intensity_beta=0`."
            )
        args = self.args
        column = args.difficulty_column
        if restored_difficulty is not None:
            if len(restored_difficulty) != len(dataset):
                raise ValueError(
                    f"The checkpoint's curriculum difficulty has {len(restored_difficulty)} values but the training "
                    f"set has {len(dataset)} rows; resume with the same training set."
                )
            difficulty = restored_difficulty
        elif column in dataset.column_names:
            difficulty = as_difficulty_array(dataset[column], name=f"column `{column}`")
            if len(difficulty) != len(dataset):
                raise ValueError(
                    f"Column `{column}` has {len(difficulty)} values for {len(dataset)} rows; score the same dataset."
                )
        elif args.difficulty_source == "precomputed":
            raise ValueError(
                f"`difficulty_source='precomputed'` but the training set has no `{column}` column (it has "
                f"{dataset.column_names}). Score it first (`class-hf score` or `compute_difficulty`), name the right "
                "column with `difficulty_column`, or choose another `difficulty_source`."
            )
        else:
            from .curriculum.difficulty import DIFFICULTY_COLUMN, compute_difficulty

            dataset, info = compute_difficulty(
                dataset,
                args.difficulty_source,
                model=self._unwrapped_model(),
                data_collator=self.data_collator,
                tokenizer=self.processing_class,
                seed=args.data_seed if args.data_seed is not None else args.seed,
                warmup_fraction=args.difficulty_warmup_fraction,
                warmup_epochs=args.difficulty_warmup_epochs,
                warmup_learning_rate=args.difficulty_warmup_learning_rate or args.learning_rate,
                **self._score_kwargs(),
            )
            self.scoring_info = _json_safe(info)
            self._scoring_seconds += float(info.get("seconds", 0.0))
            difficulty = np.asarray(dataset[DIFFICULTY_COLUMN], dtype=np.float64)
        difficulty = self._broadcast(np.asarray(difficulty, dtype=np.float64))
        self.train_dataset = self._with_sample_idx(dataset)
        self._set_difficulty(difficulty)

    @staticmethod
    def _with_sample_idx(dataset):
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

    def _maybe_refresh_difficulty(self, epoch: int) -> float:
        """Re-scores the training set with the current model at a stage boundary; returns the seconds spent."""
        args = self.args
        if not (args.difficulty_refresh and self._curriculum_sampler is not None) or epoch == 0:
            return 0.0
        if self._last_refresh_epoch == epoch:
            return 0.0
        if self.pacing.stage(epoch, self.num_epochs) == self.pacing.stage(epoch - 1, self.num_epochs):
            return 0.0
        from .curriculum.difficulty import DIFFICULTY_COLUMN, score_with_model

        start = time.perf_counter()
        scored = score_with_model(
            self._unwrapped_model(), self.train_dataset, self.data_collator, **self._score_kwargs()
        )
        difficulty = self._broadcast(np.asarray(scored[DIFFICULTY_COLUMN], dtype=np.float64))
        self._set_difficulty(difficulty)
        self._last_refresh_epoch = epoch
        seconds = time.perf_counter() - start
        self._scoring_seconds += seconds
        logger.info("Refreshed the difficulty with the current model at epoch %d in %.1f s.", epoch, seconds)
        return seconds

    # ------------------------------------------------------------------------------------------------ sampling
    def _set_signature_columns_if_needed(self) -> None:
        """Keeps the columns the collator reads (its ``columns``) plus ``sample_idx`` and the difficulty column.

        A collator without ``columns`` keeps every column of the datasets.
        """
        if self._signature_columns is not None:
            return
        columns = getattr(self.data_collator, "columns", None)
        if columns is None:
            import datasets

            keep: set[str] = set()
            evals = self.eval_dataset.values() if isinstance(self.eval_dataset, dict) else [self.eval_dataset]
            for dataset in (self.train_dataset, *evals):
                if isinstance(dataset, datasets.Dataset):
                    keep.update(dataset.column_names)
            logger.info("The data collator declares no `columns`; keeping every dataset column.")
            self._signature_columns = sorted(keep)
        else:
            self._signature_columns = list(dict.fromkeys([*columns, SAMPLE_IDX, self.args.difficulty_column]))

    def _get_train_sampler(self, train_dataset=None) -> torch.utils.data.Sampler | None:
        """The :class:`CurriculumSampler` (or, with ``curriculum='none'``, the Trainer's own sampler)."""
        if not self.args.curriculum_enabled:
            self._curriculum_sampler = None
            return super()._get_train_sampler(train_dataset)
        if self.difficulty is None:
            self._prepare_curriculum()
        args = self.args
        sampler = CurriculumSampler(
            self.difficulty,
            self.pacing,
            num_epochs=self.num_epochs,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            order=args.curriculum,
        )
        if self._restored_sampler_state is not None:
            sampler.load_state_dict(self._restored_sampler_state)
        self._curriculum_sampler = sampler
        return sampler

    # ------------------------------------------------------------------------------------------- step planning
    def _make_plan(self, dataloader, batches_default: int) -> CurriculumPlan:
        epochs = self.num_epochs
        accumulation = self.args.gradient_accumulation_steps
        sampler = self._curriculum_sampler
        if sampler is not None:
            current = sampler.epoch
            batches = []
            for epoch in range(epochs):
                sampler.set_epoch(epoch)
                batches.append(len(dataloader))
            sampler.set_epoch(current)
            pools = [sampler.pool_size(e) for e in range(epochs)]
            fractions = [sampler.fraction(e) for e in range(epochs)]
            num_samples = sampler.num_samples
        else:
            num_samples = len(self.train_dataset) if hasattr(self.train_dataset, "__len__") else 0
            batches = [batches_default] * epochs
            pools = [num_samples] * epochs
            fractions = [1.0] * epochs
        empty = [e for e, b in enumerate(batches) if b == 0]
        if empty:
            raise ValueError(
                f"Epoch {empty[0]} of the curriculum has a pool of {pools[empty[0]]} samples, which gives no batch "
                f"(per_device_train_batch_size={self.args.per_device_train_batch_size}, world size "
                f"{self.args.world_size}, dataloader_drop_last={self.args.dataloader_drop_last}). Raise "
                "`pacing_start_fraction`, lower the batch size or turn off `dataloader_drop_last`."
            )
        return CurriculumPlan(
            num_samples=num_samples,
            fractions=fractions,
            pool_sizes=pools,
            stages=[self.pacing.stage(e, epochs) for e in range(epochs)],
            progress=[self.pacing.progress(e, epochs) for e in range(epochs)],
            batches=batches,
            updates=[max(1, math.ceil(b / accumulation)) for b in batches],
        )

    def set_initial_training_values(self, args, dataloader):
        """Plans every curriculum epoch and returns the planned total as ``max_steps`` (the LR schedule's length).

        Without curriculum the Trainer's own values are returned unchanged (the plan then only serves the stage
        multiplier and the history).
        """
        values = super().set_initial_training_values(args, dataloader)
        (num_train_epochs, updates, num_examples, num_train_samples, batch_size, steps_in_epoch, max_steps) = values
        self._plan = self._make_plan(dataloader, steps_in_epoch or 0)
        if self._curriculum_sampler is None:
            return values
        plan = self._plan
        max_steps = min(args.max_steps, plan.total_updates) if args.max_steps > 0 else plan.total_updates
        num_train_epochs = plan.epochs_for(max_steps)
        logger.info(
            "Curriculum plan (%s, %s): pools %s, batches per rank %s, optimizer steps %s (total %d), %d of %d "
            "sample passes.",
            args.curriculum.value,
            self.pacing,
            plan.pool_sizes,
            plan.batches,
            plan.updates,
            plan.total_updates,
            plan.sample_passes,
            plan.num_samples * plan.num_epochs,
        )
        return (
            num_train_epochs,
            max(plan.updates),
            num_examples,
            sum(plan.pool_sizes[:num_train_epochs]),
            batch_size,
            max(plan.batches),
            max_steps,
        )

    def _bind(self, name: str, args, kwargs) -> inspect.BoundArguments:
        method = getattr(super(), name)
        return inspect.signature(method).bind(*args, **kwargs)

    def _init_training_state(self, *args, **kwargs):
        """Trainer's state set-up, with the resume position taken from the curriculum plan (epochs differ in size)."""
        bound = self._bind("_init_training_state", args, kwargs)
        epochs_trained, steps_trained = super()._init_training_state(*bound.args, **bound.kwargs)
        if (
            self._curriculum_sampler is not None
            and self._plan is not None
            and bound.arguments.get("resume_from_checkpoint") is not None
        ):
            epochs_trained, steps_trained = self._plan.resume_position(
                self.state.global_step, self.args.gradient_accumulation_steps, not self.args.ignore_data_skip
            )
            logger.info(
                "Resuming the curriculum at epoch %d after %d optimizer steps (%d batches of it to skip).",
                epochs_trained,
                self.state.global_step,
                steps_trained,
            )
        return epochs_trained, steps_trained

    def _run_epoch(self, *args, **kwargs):
        """One epoch of the Trainer's loop, with this epoch's own number of batches and optimizer steps."""
        bound = self._bind("_run_epoch", args, kwargs)
        epoch = int(bound.arguments["epoch"])
        self._epoch = epoch
        scoring = self._maybe_refresh_difficulty(epoch)
        if self._curriculum_sampler is not None and self._plan is not None:
            # Reaches the sampler also through accelerate's SkipBatchSampler/BatchSamplerShard wrappers.
            self._curriculum_sampler.set_epoch(epoch)
            bound.arguments["steps_in_epoch"] = self._plan.batches[epoch]
            bound.arguments["num_update_steps_per_epoch"] = self._plan.updates[epoch]
        self._open_record(epoch, scoring)
        super()._run_epoch(*bound.args, **bound.kwargs)
        self._close_record()

    # ------------------------------------------------------------------------------------------------ history
    def _open_record(self, epoch: int, scoring_seconds: float) -> None:
        carry = self._carry if self._carry is not None and self._carry.get("epoch") == epoch else {}
        self._carry = None
        self._record = {
            "epoch": epoch,
            "start": time.perf_counter(),
            "eval_at_start": self._eval_seconds,
            "step_at_start": self.state.global_step,
            "samples_local": 0,
            "carried_samples": int(carry.get("samples_seen", 0)),
            "carried_steps": int(carry.get("optimizer_steps", 0)),
            "carried_train": float(carry.get("train_seconds", 0.0)),
            "carried_eval": float(carry.get("eval_seconds", 0.0)),
            "carried_scoring": float(carry.get("scoring_seconds", 0.0)),
            "scoring": scoring_seconds,
        }

    def _record_values(self, samples_seen: int) -> dict[str, Any]:
        record = self._record
        epoch = record["epoch"]
        plan = self._plan
        elapsed = time.perf_counter() - record["start"]
        eval_seconds = self._eval_seconds - record["eval_at_start"]
        progress = self.pacing.progress(epoch, self.num_epochs)
        return {
            "epoch": epoch,
            "stage": self.pacing.stage(epoch, self.num_epochs),
            "fraction": plan.fractions[epoch] if plan else 1.0,
            "pool_size": plan.pool_sizes[epoch] if plan else None,
            "progress": progress,
            "gamma": self.intensity.gamma(progress),
            "samples_seen": record["carried_samples"] + samples_seen,
            "optimizer_steps": record["carried_steps"] + self.state.global_step - record["step_at_start"],
            "planned_optimizer_steps": plan.updates[epoch] if plan else None,
            "train_seconds": record["carried_train"] + max(0.0, elapsed - eval_seconds - record["scoring"]),
            "eval_seconds": record["carried_eval"] + eval_seconds,
            "scoring_seconds": record["carried_scoring"] + record["scoring"],
            "epoch_seconds": record["carried_train"] + record["carried_eval"] + record["carried_scoring"] + elapsed,
            "global_step": self.state.global_step,
        }

    def _close_record(self) -> None:
        local = torch.tensor(self._record["samples_local"], device=self.args.device)
        samples = (
            int(self.accelerator.reduce(local, reduction="sum").item())
            if self.accelerator.num_processes > 1
            else int(local)
        )
        values = self._record_values(samples)
        values["complete"] = True
        self.curriculum_history.append(values)
        self._samples_seen += values["samples_seen"]
        self._record = None

    def curriculum_state(self) -> dict[str, Any]:
        """The JSON-serialisable curriculum state saved in checkpoints (see :mod:`class_hf.curriculum.callback`)."""
        history = list(self.curriculum_history)
        if self._record is not None:
            # A save inside `_run_epoch` (at its end or mid-epoch): the record so far. Every rank runs the same
            # batches, so the sample count is the local one times the world size.
            partial = self._record_values(self._record["samples_local"] * self.accelerator.num_processes)
            planned = partial["planned_optimizer_steps"]
            partial["complete"] = planned is not None and partial["optimizer_steps"] >= planned
            history.append(partial)
        return _json_safe(
            {
                "version": 1,
                "sampler": self._curriculum_sampler.state_dict() if self._curriculum_sampler is not None else None,
                "last_refresh_epoch": self._last_refresh_epoch,
                "history": history,
                "scoring_info": self.scoring_info,
                "scoring_seconds": self._scoring_seconds,
                "plan": asdict(self._plan) if self._plan is not None else None,
            }
        )

    def _restore(self, state: dict[str, Any]) -> None:
        history = state.get("history") or []
        self.curriculum_history = [dict(r) for r in history if r.get("complete", True)]
        partial = [r for r in history if not r.get("complete", True)]
        self._carry = dict(partial[-1]) if partial else None
        self._samples_seen = sum(int(r.get("samples_seen", 0)) for r in self.curriculum_history)
        self._last_refresh_epoch = state.get("last_refresh_epoch")
        self._restored_sampler_state = state.get("sampler")
        self.scoring_info = state.get("scoring_info") or {}
        self._scoring_seconds = float(state.get("scoring_seconds", 0.0))

    def curriculum_summary(self) -> dict[str, Any]:
        """Totals of the run for benchmarks: planned vs actual sample passes and steps, and the time split."""
        plan = self._plan
        history = self.curriculum_history
        summary = {
            "curriculum": self.args.curriculum.value,
            "pacing": self.pacing.describe(),
            "num_samples": plan.num_samples if plan else None,
            "num_epochs": self.num_epochs,
            "planned_sample_passes": plan.sample_passes if plan else None,
            "full_sample_passes": plan.num_samples * plan.num_epochs if plan else None,
            "planned_optimizer_steps": plan.total_updates if plan else None,
            "samples_seen": sum(r["samples_seen"] for r in history),
            "optimizer_steps": sum(r["optimizer_steps"] for r in history),
            "train_seconds": sum(r["train_seconds"] for r in history),
            "eval_seconds": sum(r["eval_seconds"] for r in history),
            "scoring_seconds": self._scoring_seconds,
        }
        if plan:
            summary["sample_pass_saving"] = 1.0 - plan.sample_passes / max(1, plan.num_samples * plan.num_epochs)
        return summary

    # ------------------------------------------------------------------------------------------------ training
    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """Scores the training set if needed, restores the curriculum state of a checkpoint, then trains.

        Args:
            resume_from_checkpoint (str | bool | None): a checkpoint folder, or True for the last one in
                ``output_dir``; its ``curriculum_state.json`` restores the sampler, the difficulty and the history.
            trial: hyperparameter-search trial (as ``Trainer.train``).
            ignore_keys_for_eval (list[str] | None): as ``Trainer.train``.
            **kwargs: passed on to ``Trainer.train``.

        Returns:
            transformers.trainer_utils.TrainOutput: as ``Trainer.train``.
        """
        if resume_from_checkpoint is False:
            resume_from_checkpoint = None
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No valid checkpoint found in output directory ({self.args.output_dir})")
        self._reset_run_state()
        restored_difficulty = None
        if resume_from_checkpoint is not None:
            loaded = load_curriculum_state(os.fspath(resume_from_checkpoint))
            if loaded is not None:
                state, restored_difficulty = loaded
                self._restore(state)
            elif self._needs_difficulty:
                logger.warning(
                    "Checkpoint %s has no curriculum state (%s); the difficulty is taken from the training set again.",
                    resume_from_checkpoint,
                    "curriculum_state.json",
                )
        self.difficulty = None
        self._prepare_curriculum(restored_difficulty)
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint,
            trial=trial,
            ignore_keys_for_eval=ignore_keys_for_eval,
            **kwargs,
        )

    def _progress(self) -> float:
        epoch = self._epoch if self._epoch is not None else 0
        return self.pacing.progress(min(epoch, self.num_epochs - 1), self.num_epochs)

    def _batch_d_hat(self, sample_idx, batch_difficulty, like: torch.Tensor) -> torch.Tensor:
        if sample_idx is not None and self._d_hat is not None:
            return self._d_hat[sample_idx.detach().long().cpu()].to(device=like.device, dtype=like.dtype)
        if batch_difficulty is not None:
            return batch_difficulty.detach().to(device=like.device, dtype=like.dtype).clamp(0.0, 1.0)
        raise ValueError(
            f"`intensity_beta={self.args.intensity_beta}` weights samples by difficulty, but the batch has neither "
            f"`{SAMPLE_IDX}` nor `difficulty`. Use a collator that passes them through (MoleculeTextCollator does) "
            "or set `intensity_beta=0`."
        )

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """The backbone's loss with the curriculum's per-sample weights and stage multiplier.

        In training: ``loss = gamma_loss * (sum_i w_i l_i / sum_i w_i + aux)`` where ``l_i`` is the backbone's
        ``per_sample_loss``, ``w_i = 1 + beta p d_i`` and ``aux = loss - mean_i l_i`` the backbone's batch-level terms
        (see :func:`~class_hf.curriculum.intensity.combine_loss`); ``gamma_loss`` is gamma with
        ``intensity_target='loss'`` and 1 otherwise. With ``intensity_target`` ``temperature``/``margin`` the backbone
        receives ``intensity=gamma``. In evaluation the backbone's own loss is returned unchanged.

        Args:
            model (nn.Module): the (possibly wrapped) backbone.
            inputs (dict): the batch; ``sample_idx`` and ``difficulty`` are removed before the forward.
            return_outputs (bool): also return the backbone's outputs.
            num_items_in_batch: unused (the loss is a per-batch mean).

        Returns:
            torch.Tensor | tuple[torch.Tensor, Any]: the loss (and the outputs).
        """
        sample_idx = inputs.pop(SAMPLE_IDX, None)
        batch_difficulty = inputs.pop("difficulty", None)
        if not model.training:
            outputs = model(**inputs)
            loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs[0]
            return (loss, outputs) if return_outputs else loss

        progress = self._progress()
        extra = {}
        backbone_intensity = self.intensity.backbone_intensity(progress)
        if backbone_intensity is not None:
            extra["intensity"] = backbone_intensity
        outputs = model(**inputs, **extra)
        if isinstance(outputs, Mapping):
            loss, per_sample = outputs["loss"], outputs.get("per_sample_loss")
            components = outputs.get("loss_components") or {}
        else:
            loss, per_sample, components = outputs[0], None, {}

        weight = 1.0
        if self.intensity.beta > 0 and progress > 0:
            if per_sample is None:
                raise ValueError(
                    f"`intensity_beta={self.intensity.beta}` needs the backbone's `per_sample_loss` (one per pair), "
                    f"but {type(self.accelerator.unwrap_model(model)).__name__} returns none. Return it, or set "
                    "`intensity_beta=0`."
                )
            weights = self.intensity.weights(self._batch_d_hat(sample_idx, batch_difficulty, per_sample), progress)
            loss, parts = combine_loss(loss, per_sample, weights)
            weight = float(weights.mean())
            for name, value in parts.items():
                self._metrics[f"loss/{name}"].append(float(value))
        factor = self.intensity.loss_factor(progress)
        if factor != 1.0:
            loss = loss * factor
        self._metrics["intensity/mean_weight"].append(weight)
        for name, value in components.items():
            self._metrics[f"loss/{name}"].append(float(value))

        if self._record is not None:
            if sample_idx is not None:
                count = int(sample_idx.numel())
            elif per_sample is not None:
                count = int(per_sample.shape[0])
            else:
                count = int(inputs["input_ids"].shape[0]) if "input_ids" in inputs else 0
            self._record["samples_local"] += count
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """The Trainer's optimizer, with one learning rate per parameter group of the backbone.

        When the model has ``param_groups()`` (every class-hf backbone) or ``text_encoder_learning_rate`` is set, the
        parameters are grouped by :func:`~class_hf.models.base.optimizer_param_groups`:

        - every group ``g`` that ``param_groups()`` names (``text_encoder``, AMAN's ``discriminator``, ...) trains at
          ``args.<g>_learning_rate`` when the arguments set it, else at ``model.config.<g>_learning_rate`` when the
          config sets it (ORMA: text encoder 3e-5; AMAN: text encoder 3e-5, discriminator 1e-4), else at
          ``learning_rate``, as does ``other``. A model without ``param_groups()`` has ``text_encoder`` (parameters
          named ``text_encoder.*``) and ``other``;
        - ``weight_decay`` applies to the parameters ``get_decay_parameter_names`` keeps that have two or more
          dimensions: as in open_clip, biases, norm weights and scalars such as ``logit_scale`` / ``temp`` never decay.

        The learning-rate schedule (and the intensity's stage multiplier) scales every group alike. A model without
        ``param_groups()`` and without ``text_encoder_learning_rate`` gets ``Trainer.create_optimizer`` unchanged, as
        do optimizers that build their own parameter groups (GaLore, LOMO, layer-wise, optimizer factories; a warning
        says which group rates are then not applied).
        """
        from transformers.trainer_optimizer import is_optimizer_factory

        from .models.base import optimizer_param_groups

        args = self.args
        if self.optimizer is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        unwrapped = self.accelerator.unwrap_model(opt_model)
        has_groups = callable(getattr(unwrapped, "param_groups", None))
        if not has_groups and args.text_encoder_learning_rate is None:
            return super().create_optimizer(model)
        if has_groups:
            named = unwrapped.param_groups()
        else:
            named = {"text_encoder": [n for n, _ in unwrapped.named_parameters() if n.startswith("text_encoder.")]}
        if args.text_encoder_learning_rate is not None and not named.get("text_encoder"):
            raise ValueError(
                f"`text_encoder_learning_rate` is set but {type(unwrapped).__name__} has no text-encoder parameters "
                "(none in `param_groups()['text_encoder']` nor named `text_encoder.*`). Unset it or rename the module."
            )
        config = getattr(unwrapped, "config", None)
        rates: dict[str, float] = {}
        for group in (g for g in named if g != "other"):
            key = f"{group}_learning_rate"
            sources = (("training arguments", getattr(args, key, None)), ("model config", getattr(config, key, None)))
            source, value = next(((where, v) for where, v in sources if v is not None), (None, None))
            if value is not None:
                rates[group] = float(value)
                logger.info("Parameter group %r: learning rate %g (`%s` of the %s).", group, value, key, source)
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(args, opt_model)
        if is_optimizer_factory(optimizer_cls) or {"params", "model", "optimizer_dict"} & set(optimizer_kwargs):
            logger.warning(
                "`optim=%s` builds its own parameter groups: the per-group learning rates %s are not applied.",
                args.optim,
                rates,
            )
            return super().create_optimizer(model)
        groups = optimizer_param_groups(
            unwrapped,
            args.learning_rate,
            args.weight_decay,
            rates,
            decay_names=self.get_decay_parameter_names(unwrapped),
        )
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """The Trainer's schedule over ``num_training_steps``, times gamma when ``intensity_target='lr'``.

        The multiplier of optimizer step ``s`` is ``gamma(p(e))`` for the epoch ``e`` that step belongs to in the
        curriculum plan (a pure function of the step, so a resumed run recomputes the same learning rates).
        """
        created = self.lr_scheduler is None
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        gammas = (self.intensity.gamma_min, self.intensity.gamma_max)
        if created and self.intensity.target == IntensityTarget.LR and gammas != (1.0, 1.0):
            self.lr_scheduler = scale_lambda_lr(scheduler, self._lr_factor)
        return self.lr_scheduler

    def _lr_factor(self, step: int) -> float:
        plan = self._plan
        epoch = plan.epoch_of_step(step) if plan is not None else 0
        return self.intensity.lr_factor(self.pacing.progress(epoch, self.num_epochs))

    # ------------------------------------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the curriculum state and the loss components (means since the last log) to training logs."""
        if "loss" in logs and self._epoch is not None:
            metrics = self._reduced_metrics()
            logs.update(metrics)
            epoch = min(self._epoch, self.num_epochs - 1)
            progress = self._progress()
            logs["curriculum/stage"] = self.pacing.stage(epoch, self.num_epochs)
            logs["curriculum/fraction"] = self._plan.fractions[epoch] if self._plan else 1.0
            logs["curriculum/progress"] = progress
            logs["intensity/gamma"] = self.intensity.gamma(progress)
            if self._scoring_seconds:
                logs["curriculum/scoring_seconds"] = self._scoring_seconds
        elif "train_runtime" in logs:
            logs["curriculum/samples_seen"] = self._samples_seen
            logs["curriculum/scoring_seconds"] = self._scoring_seconds
        super().log(logs, start_time)

    def _reduced_metrics(self) -> dict[str, float]:
        keys = sorted(self._metrics)
        means = [float(np.mean(self._metrics[k])) if self._metrics[k] else 0.0 for k in keys]
        current = self._record["samples_local"] if self._record is not None else 0
        values = torch.tensor([*means, float(current)], dtype=torch.float64, device=self.args.device)
        if self.accelerator.num_processes > 1:
            summed = self.accelerator.reduce(values, reduction="sum")
            values = torch.cat([summed[:-1] / self.accelerator.num_processes, summed[-1:]])
        self._metrics.clear()
        out = dict(zip(keys, values[:-1].tolist()))
        out["curriculum/samples_seen"] = self._samples_seen + int(values[-1].item())
        return out

    # --------------------------------------------------------------------------------------------- evaluation
    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Returns the backbone's contrastive loss on the batch (no logits: retrieval is evaluated on embeddings)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return (loss.detach(), None, None)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """The eval loss plus retrieval metrics (``{prefix}_t2m_mrr``, ``{prefix}_m2t_hits@1``, ..., ``{prefix}_mrr``).

        Args:
            eval_dataset (Dataset | dict | str | None): as ``Trainer.evaluate`` (a dict evaluates each dataset with
                the prefix ``eval_<name>``).
            ignore_keys (list[str] | None): as ``Trainer.evaluate``.
            metric_key_prefix (str): prefix of the metric keys.

        Returns:
            dict[str, float]: the metrics.
        """
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(dataset, str):
            dataset = self.eval_dataset[dataset]
        if isinstance(dataset, dict):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        start = time.perf_counter()
        self._retrieval_dataset = dataset
        try:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        finally:
            self._retrieval_dataset = None
            self._eval_seconds += time.perf_counter() - start

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """The Trainer's evaluation loop (eval loss), plus the retrieval metrics of the evaluated dataset."""
        output = super().evaluation_loop(
            dataloader,
            description,
            prediction_loss_only=prediction_loss_only,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        dataset = getattr(self, "_retrieval_dataset", None)
        if self.args.eval_retrieval and dataset is not None:
            for key, value in self.retrieval_metrics(dataset).items():
                output.metrics[f"{metric_key_prefix}_{key}"] = value
        return output

    def retrieval_metrics(self, dataset) -> dict[str, float]:
        """Hits@1/5/10, MRR and mean rank in both directions on ``dataset`` (the split as pool), plus mean ``mrr``.

        Every rank encodes the whole split (no collective), so every rank gets the same metrics.
        """
        from .evaluation.encoding import embed_pairs
        from .evaluation.retrieval import retrieval_metrics

        model = self._unwrapped_model()
        text_embeds, mol_embeds = embed_pairs(
            model, dataset, self.data_collator, batch_size=self.args.per_device_eval_batch_size, show_progress=False
        )
        metrics = retrieval_metrics(
            text_embeds, mol_embeds, scorer=getattr(model, "score", None), chunk_size=self.args.eval_chunk_size
        )
        metrics["mrr"] = (metrics["t2m_mrr"] + metrics["m2t_mrr"]) / 2
        return metrics
