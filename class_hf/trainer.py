"""``CurriculumTrainer``: CLASS curriculum training for any text-molecule retrieval backbone.

A ``transformers.Trainer`` that wires :mod:`class_hf.curriculum` in through public hooks only:

- ``train`` prepares the difficulty (:class:`~class_hf.curriculum.provider.DifficultyProvider`) and restores a
  checkpoint's curriculum state;
- ``get_train_dataloader`` returns every curriculum epoch's batches as one deterministic stream
  (a :class:`~class_hf.curriculum.sampler.CurriculumBatchSampler` over a ``CurriculumPlan``);
  ``set_initial_training_values`` sets ``max_steps`` to the plan's optimizer steps: the Trainer makes one pass, the
  schedule ends at the last step, resuming rides on the Trainer's own batch skipping;
- :class:`~class_hf.curriculum.callback.CurriculumCallback` maps the global step to the curriculum epoch;
- ``compute_loss`` applies :class:`~class_hf.curriculum.intensity.AdaptiveIntensity` (and, with ``prune_fraction``,
  records every pair's loss for :class:`~class_hf.curriculum.pruning.LearnedPairPruning`); ``create_optimizer`` /
  ``create_scheduler`` set per-group learning rates and the stage multiplier; ``evaluation_loop`` adds retrieval
  metrics; ``_set_signature_columns_if_needed`` keeps the collator's columns (as TRL does).

With ``curriculum="none"``, ``intensity_target="none"``, ``intensity_beta=0`` it is a plain ``Trainer``, bit for bit.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.trainer_utils import EvalLoopOutput, get_last_checkpoint
from typing_extensions import override

from .curriculum.callback import CurriculumCallback
from .curriculum.intensity import AdaptiveIntensity, IntensityTarget, scale_lambda_lr, weigh_loss
from .curriculum.pacing import Pacing, get_pacing
from .curriculum.plan import CurriculumPlan, balanced_batches
from .curriculum.provider import SAMPLE_IDX, DifficultyCheckpointCallback, DifficultyProvider, with_sample_idx
from .curriculum.pruning import LearnedPairPruning, PruningCheckpointCallback
from .curriculum.sampler import CurriculumBatchSampler, CurriculumSampler, as_cost_array, strata_labels
from .data.collator import MoleculeTextCollator
from .data.text_features import cache_text_features
from .log_output import use_readable_logs
from .models.losses import configure_negatives
from .optimization import apply_group_learning_rates, group_learning_rates, open_clip_decay_names
from .training_args import CurriculumTrainingArguments

logger = logging.getLogger(__name__)


class _ArgsWithMaxSteps:
    """``TrainingArguments`` seen through a different ``max_steps`` (read-only; the user's arguments stay as given)."""

    def __init__(self, args: CurriculumTrainingArguments, max_steps: int) -> None:
        self._args = args
        self.max_steps = max_steps

    def __getattr__(self, name: str) -> Any:
        return getattr(self._args, name)


class CurriculumTrainer(Trainer):
    """A ``transformers.Trainer`` implementing CLASS (curriculum sampling, adaptive intensity, retrieval evaluation).

    The model follows the backbone contract (:class:`~class_hf.models.base.RetrievalBackbone`): ``forward(**batch)``
    returns ``loss`` and ``per_sample_loss`` (``[B]``); ``encode_text``, ``encode_molecule`` and ``score`` serve
    evaluation and difficulty scoring. Batches may carry ``sample_idx`` and ``difficulty``; they are used here and
    never passed to the model. Without ``data_collator``, a ``MoleculeTextCollator`` is built from
    ``processing_class``.

    Args:
        model (nn.Module | None): the backbone.
        args (CurriculumTrainingArguments | None): the arguments (defaults when None).
        data_collator (Callable | None): rows -> batch; its ``columns`` attribute names the dataset columns kept.
        train_dataset (datasets.Dataset | None): the training pairs (a ``difficulty`` column is used if present).
        eval_dataset (datasets.Dataset | dict | None): evaluation pairs; every evaluation reports its retrieval
            metrics (``eval_t2m_mrr``, ..., ``eval_mrr``).
        processing_class: the text tokenizer.
        pacing (Pacing | Callable | None): a pacing object or a function ``(epoch, num_epochs) -> fraction`` that
            replaces ``args.pacing`` (passing it here keeps the arguments picklable for checkpoints).
        evaluator (Callable | None): an extra evaluator run at every evaluation, ``evaluator(model) -> dict`` (e.g. a
            ``RetrievalEvaluator`` over the ``all`` pool); its metrics get the evaluation's prefix.
        callbacks (list | None): as ``transformers.Trainer``.
        **kwargs: the remaining ``transformers.Trainer`` arguments (``model_init``, ``optimizers``,
            ``optimizer_cls_and_kwargs``, ...).

    Attributes:
        difficulty_provider (DifficultyProvider): the run's difficulty (values, refreshes, scoring information).
        plan (CurriculumPlan | None): the run's plan, once training started.
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
        evaluator: Callable[[nn.Module], dict[str, float]] | None = None,
        callbacks: list | None = None,
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
            data_collator = MoleculeTextCollator(processing_class)
        # First among the user's callbacks, so that they already see `state.epoch` in curriculum epochs.
        callbacks = [CurriculumCallback(), *(callbacks or [])]
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            **kwargs,
        )
        use_readable_logs(self)  # one line of numbers per log instead of a dict of strings
        # The loss is a per-batch mean computed here: the Trainer must not pass `num_items_in_batch` to the model nor
        # scale the loss by the number of processes, and it divides by the gradient-accumulation steps. Evaluation
        # reports the contrastive loss although the batches hold no labels.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        self.can_return_loss = True
        if self.compute_metrics is not None:
            logger.warning(
                "`compute_metrics` is not used by CurriculumTrainer: evaluation reports the contrastive loss and the "
                "retrieval metrics (Hits@k, MRR, mean rank); pass `evaluator=` for more."
            )
        self.evaluator = evaluator
        self.pacing: Pacing = get_pacing(pacing) if pacing is not None else Pacing.from_training_args(args)
        self.intensity = AdaptiveIntensity.from_training_args(args)
        self.difficulty_provider = DifficultyProvider.from_training_args(args, self.pacing, self.num_epochs)
        self.add_callback(DifficultyCheckpointCallback(self.difficulty_provider, self._sampler_state))
        self.add_callback(PruningCheckpointCallback(lambda: self.pruning))
        if self.model is not None:
            self.intensity.check_backbone(self.model)
            configure_negatives(self.model, args.gather_across_ranks, args.text_chunk_size)
        self.plan: CurriculumPlan | None = None
        self._curriculum_sampler: CurriculumSampler | None = None
        self._restored_sampler_state: dict[str, Any] | None = None
        self._resumed_from: str | None = None
        self.pruning: LearnedPairPruning | None = None
        self._metrics: dict[str, list[float]] = defaultdict(list)

    # ------------------------------------------------------------------------------------------------- set-up
    @property
    def num_epochs(self) -> int:
        """Curriculum epochs the pacing is spread over (``ceil(num_train_epochs)``)."""
        return max(1, math.ceil(self.args.num_train_epochs))

    @property
    def _needs_difficulty(self) -> bool:
        """Whether the run reads difficulty values (pruning alone reads the training losses instead)."""
        args = self.args
        return args.curriculum_enabled or args.batch_composition != "random" or args.intensity_beta > 0

    @property
    def curriculum_callback(self) -> CurriculumCallback:
        """The run's :class:`CurriculumCallback` (looked up: the Trainer may rebuild it when restoring callbacks)."""
        return next(cb for cb in self.callback_handler.callbacks if isinstance(cb, CurriculumCallback))

    @property
    def curriculum_history(self) -> list[dict[str, Any]]:
        """One record per curriculum epoch (see :class:`CurriculumCallback`)."""
        return self.curriculum_callback.history

    @property
    def difficulty(self) -> np.ndarray | None:
        """The difficulty values the run trains with (after any refresh)."""
        return self.difficulty_provider.values

    @property
    def scoring_info(self) -> dict[str, Any]:
        """What the difficulty scoring before training reported (source, seconds, ...)."""
        return self.difficulty_provider.scoring_info

    def _sampler_state(self) -> dict[str, Any]:
        return {"sampler": self._curriculum_sampler.state_dict() if self._curriculum_sampler is not None else None}

    # ------------------------------------------------------------------------------------------------ data
    @override
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

    def _prepare_difficulty(self, restored: np.ndarray | None = None) -> None:
        if self.train_dataset is None or not self._needs_difficulty:
            return
        self.train_dataset = self.difficulty_provider.prepare(
            self.train_dataset,
            model=self.accelerator.unwrap_model(self.model),
            data_collator=self.data_collator,
            tokenizer=self.processing_class,
            restored=restored,
        )

    def _before_epoch(self, epoch: int) -> None:
        """Called by the batch stream before drawing epoch ``epoch``: checks that the losses its pruning reads are
        complete, and refreshes the difficulty when it is due."""
        if self.pruning is not None and self.pruning.prunes(epoch):
            self._check_losses_recorded(epoch)
        provider, model = self.difficulty_provider, self.accelerator.unwrap_model(self.model)
        if provider.values is None:  # pruning without a curriculum: nothing to refresh
            return
        if provider.maybe_refresh(epoch, model, self.train_dataset, self.data_collator):
            self._curriculum_sampler.set_difficulty(provider.values)
            self.curriculum_callback.add_scoring_seconds(epoch, provider.refresh_seconds[epoch])

    def _check_losses_recorded(self, epoch: int) -> None:
        """Raises when the losses epoch ``epoch`` is pruned with (those of
        :meth:`~class_hf.curriculum.pruning.LearnedPairPruning.source_epoch`) are incomplete."""
        source = self.pruning.source_epoch(epoch)
        recorded, expected = self.pruning.recorded(source), self.plan.samples(source)
        if recorded < expected:
            raise RuntimeError(
                f"Pruning epoch {epoch} needs the training losses of all {expected} pairs of epoch {source}, but only "
                f"{recorded} were recorded when the data loader drew it: the loader prefetches more batches than "
                f"epoch {source + 1} holds. Lower `dataloader_num_workers` or `dataloader_prefetch_factor`, or raise "
                "`pacing_start_fraction`."
            )

    @override
    def get_train_dataloader(self) -> DataLoader:
        """The Trainer's data loader without a curriculum; with one, the stream of every curriculum epoch's batches."""
        args = self.args
        if self._needs_difficulty and self.difficulty_provider.values is None:
            self._prepare_difficulty()
        if not args.uses_batch_stream:
            dataloader = super().get_train_dataloader()
            world = self.accelerator.num_processes
            plan = CurriculumPlan.for_trainer_epochs(
                len(self.train_dataset),
                self.pacing,
                self.num_epochs,
                batches_per_process=len(dataloader),
                batch_size=self._train_batch_size,
                world_size=world,
                gradient_accumulation_steps=args.gradient_accumulation_steps,
                drop_last=args.dataloader_drop_last,
                padded=world > 1 and (args.dataloader_drop_last or args.accelerator_config.even_batches),
            )
            self._set_plan(plan, drive_epochs=False)
            return dataloader
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        difficulty = self.difficulty_provider.values
        if difficulty is None:  # pruning without a curriculum: every pair every epoch, no difficulty to rank by
            import datasets

            if not isinstance(self.train_dataset, datasets.Dataset):
                raise TypeError(
                    "`prune_fraction` needs a `datasets.Dataset` train_dataset, got "
                    f"{type(self.train_dataset).__name__}. Convert it with `datasets.Dataset.from_list(...)`, or set "
                    "`prune_fraction=0`."
                )
            self.train_dataset = with_sample_idx(self.train_dataset)
            difficulty = np.zeros(len(self.train_dataset))
        self.pruning = self._build_pruning(len(difficulty))
        sampler = CurriculumSampler(
            difficulty,
            self.pacing,
            num_epochs=self.num_epochs,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            order=args.curriculum,
            redraw_random_subset=args.redraw_random_subset,
            costs=self._pacing_costs(),
            strata=self._curriculum_strata(),
            pruning=self.pruning,
        )
        if self._restored_sampler_state is not None:
            sampler.load_state_dict(self._restored_sampler_state)
        self._curriculum_sampler = sampler
        plan = CurriculumPlan.build(
            sampler.num_samples,
            self.pacing,
            self.num_epochs,
            batch_size=self._train_batch_size,
            world_size=self.accelerator.num_processes,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            drop_last=args.dataloader_drop_last,
            full_data=not args.curriculum_enabled,
            pace_batch_size=args.pace_batch_size,
            pool_sizes=(
                None
                if sampler.costs is None and sampler.pruning is None
                else [sampler.pool_size(e) for e in range(self.num_epochs)]
            ),
        )
        self._set_plan(plan, drive_epochs=True)
        logger.info("Curriculum plan (%s, %s): %s.", args.curriculum.value, self.pacing, plan.describe())
        if self.pruning is not None:
            logger.info("Pruning learned pairs: %s.", self.pruning.describe())
        compose = self.difficulty_provider.compose_batches if args.batch_composition == "confusion" else None
        stream = CurriculumBatchSampler(sampler, plan, before_epoch=self._before_epoch, compose=compose)
        return self._loader(self.train_dataset, stream)

    def _build_pruning(self, num_samples: int) -> LearnedPairPruning | None:
        """The run's pruning (``prune_fraction`` > 0), with the losses of the checkpoint being resumed."""
        args = self.args
        if args.prune_fraction <= 0:
            return None
        pruning = LearnedPairPruning(
            num_samples,
            self.num_epochs,
            args.prune_fraction,
            args.prune_anneal_fraction,
            seed=args.data_seed if args.data_seed is not None else args.seed,
        )
        if self._resumed_from is not None:
            pruning.load(self._resumed_from)
        return pruning

    def _pacing_costs(self) -> np.ndarray | None:
        """The training set's ``pacing_cost_column`` (None without one, or without a curriculum)."""
        values = self._curriculum_column("pacing_cost_column")
        if values is None:
            return None
        return as_cost_array(values, len(self.train_dataset), self._column_label("pacing_cost_column"))

    def _curriculum_strata(self) -> np.ndarray | None:
        """Stratum codes of the training set's ``curriculum_strata_column`` (None without one, or a curriculum)."""
        values = self._curriculum_column("curriculum_strata_column")
        if values is None:
            return None
        return strata_labels(values, self.args.curriculum_num_strata, self._column_label("curriculum_strata_column"))

    def _column_label(self, argument: str) -> str:
        return f"training column {getattr(self.args, argument)!r}"

    def _curriculum_column(self, argument: str) -> Any | None:
        """The training-set column that the argument ``argument`` names (None when unset or without a curriculum).

        Raises:
            ValueError: naming the argument and the training set's columns when the column is not there.
        """
        column = getattr(self.args, argument)
        if column is None or not self.args.curriculum_enabled:
            return None
        names = getattr(self.train_dataset, "column_names", None)
        if names is None or column not in names:
            raise ValueError(
                f"`{argument}={column!r}` is not a column of the training set (its columns: {names}); "
                "graph features name each molecule's atoms `num_nodes`."
            )
        return self.train_dataset[column]

    def _loader(self, dataset, batch_sampler) -> DataLoader:
        """A prepared data loader of ``dataset``'s collator columns over ``batch_sampler``."""
        args = self.args
        self._set_signature_columns_if_needed()
        dataset = dataset.select_columns([c for c in dataset.column_names if c in self._signature_columns])
        loader = DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory and args.device.type != "cpu",
            persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
            prefetch_factor=args.dataloader_prefetch_factor,
        )
        return self.accelerator.prepare(loader)

    @override
    def get_eval_dataloader(self, eval_dataset=None) -> DataLoader:
        """The Trainer's, except on several processes with ``even_batches=False``: every process then gets the same
        number of batches (sizes differing by at most one), so that the evaluation's collectives cannot wait forever.
        """
        if self.accelerator.num_processes == 1 or self.args.accelerator_config.even_batches:
            return super().get_eval_dataloader(eval_dataset)
        if isinstance(eval_dataset, str) or eval_dataset is None:
            eval_dataset = self.eval_dataset[eval_dataset] if isinstance(eval_dataset, str) else self.eval_dataset
        world = self.accelerator.num_processes
        return self._loader(eval_dataset, balanced_batches(len(eval_dataset), self.args.eval_batch_size, world))

    def _set_plan(self, plan: CurriculumPlan, drive_epochs: bool) -> None:
        self.plan = plan
        self.curriculum_callback.setup(plan, [self.intensity.gamma(p) for p in plan.progress], drive_epochs)

    @override
    def set_initial_training_values(self, args, dataloader):
        """With a curriculum, the Trainer's values for ``max_steps`` = the plan's optimizer steps (one pass)."""
        if not self.args.uses_batch_stream or self.plan is None:
            return super().set_initial_training_values(args, dataloader)
        total = self.plan.total_updates
        if args.max_steps > total:
            raise ValueError(
                f"`max_steps={args.max_steps}` is more than the {total} optimizer steps of the curriculum planned "
                f"over `num_train_epochs={int(args.num_train_epochs)}`: a curriculum is planned in epochs, so raise "
                "`num_train_epochs` to train longer (a smaller `max_steps` stops the plan early)."
            )
        max_steps = args.max_steps if args.max_steps > 0 else total
        return super().set_initial_training_values(_ArgsWithMaxSteps(args, max_steps), dataloader)

    # ------------------------------------------------------------------------------------------------ training
    @override
    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """As ``Trainer.train``, after preparing the difficulty; a checkpoint given by ``resume_from_checkpoint`` (or
        True: the last one in ``output_dir``) restores the difficulty, the sampler and the history too."""
        if resume_from_checkpoint is False:
            resume_from_checkpoint = None
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No valid checkpoint found in output directory ({self.args.output_dir})")
        self.difficulty_provider.reset()
        restored, self._restored_sampler_state = None, None
        self._resumed_from = None
        if resume_from_checkpoint is not None:
            checkpoint = os.fspath(resume_from_checkpoint)
            self._resumed_from = checkpoint
            restored, self._restored_sampler_state = self.difficulty_provider.load_checkpoint(checkpoint)
        if self.args.cache_text_features:
            self.train_dataset, self.eval_dataset = cache_text_features(
                self.accelerator.unwrap_model(self.model), self.processing_class, self.data_collator,
                self.train_dataset, self.eval_dataset, batch_size=self.args.per_device_eval_batch_size,
            )  # fmt: skip
        self._prepare_difficulty(restored)
        return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval, **kwargs)

    @property
    def current_epoch(self) -> int:
        """The curriculum epoch of the optimizer step in progress (from ``state.global_step`` and the plan)."""
        return self.plan.epoch_of_step(self.state.global_step) if self.plan is not None else 0

    @override
    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """The backbone's loss with the curriculum's per-sample weights and stage multiplier.

        In training: ``gamma_loss * (sum_i w_i l_i / sum_i w_i + aux)`` (see
        :func:`~class_hf.curriculum.intensity.weigh_loss`), with ``w_i = 1 + beta p d_i`` from the difficulty the
        current epoch was drawn with; the backbone receives ``intensity=gamma`` with ``intensity_target``
        ``temperature``/``margin``. In evaluation the backbone's own loss is returned unchanged.

        The batch's ``sample_idx`` and ``difficulty`` are removed before the forward; ``num_items_in_batch`` is unused
        (the loss is a per-batch mean).
        """
        sample_idx = inputs.pop(SAMPLE_IDX, None)
        batch_difficulty = inputs.pop("difficulty", None)
        if not model.training:
            outputs = model(**inputs)
            loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs[0]
            return (loss, outputs) if return_outputs else loss
        epoch = self.current_epoch
        progress = self.plan.progress[epoch] if self.plan is not None else 0.0
        extra = {}
        if (intensity := self.intensity.backbone_intensity(progress)) is not None:
            extra["intensity"] = intensity
        outputs = model(**inputs, **extra)
        d_hat = None
        if self.intensity.beta > 0 and progress > 0:
            d_hat = self.difficulty_provider.batch_normalized(epoch, sample_idx, batch_difficulty)
        name = type(self.accelerator.unwrap_model(model)).__name__
        pruned_weights = None
        if self.pruning is not None:
            pruned_weights = self._record_losses(epoch, sample_idx, outputs, name)
        loss, logs = weigh_loss(outputs, d_hat, progress, self.intensity, name=name, sample_weights=pruned_weights)
        for key, value in logs.items():
            self._metrics[key].append(value)
        return (loss, outputs) if return_outputs else loss

    def _record_losses(self, epoch: int, sample_idx: torch.Tensor | None, outputs: Any, name: str):
        """Records the batch's per-pair losses (from every process) for the pruning of later epochs; returns the
        batch's pruning weights (None when the epoch prunes nothing)."""
        per_sample = outputs.get("per_sample_loss") if isinstance(outputs, Mapping) else None
        if per_sample is None or sample_idx is None:
            raise ValueError(
                f"`prune_fraction={self.args.prune_fraction}` needs each pair's training loss: {name} must return "
                f"`per_sample_loss` and the batches must carry `{SAMPLE_IDX}` (MoleculeTextCollator passes it)."
            )
        if epoch <= self.pruning.last_recorded_epoch:  # later losses prune nothing
            idx, losses = sample_idx.detach().to(per_sample.device), per_sample.detach()
            if self.accelerator.num_processes > 1:
                idx = self.accelerator.gather(self.accelerator.pad_across_processes(idx, pad_index=-1))
                losses = self.accelerator.gather(self.accelerator.pad_across_processes(losses, pad_index=0))
                losses, idx = losses[idx >= 0], idx[idx >= 0]
            self.pruning.record(epoch, idx, losses)
        return self.pruning.batch_weights(epoch, sample_idx)

    # ------------------------------------------------------------------------------------------ optimization
    @override
    def get_decay_parameter_names(self, model) -> list[str]:
        """The Trainer's rule; for a backbone with ``param_groups()`` also open_clip's: only 2+-dim tensors decay."""
        names = super().get_decay_parameter_names(model)
        return open_clip_decay_names(model, names) if callable(getattr(model, "param_groups", None)) else names

    @override
    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """The Trainer's optimizer, with one learning rate per parameter group the backbone names
        (:mod:`class_hf.optimization`: ``<group>_learning_rate`` of the arguments, else of the model config)."""
        created = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if created:
            unwrapped = self.accelerator.unwrap_model(self.model if model is None else model)
            if rates := group_learning_rates(unwrapped, self.args):
                apply_group_learning_rates(optimizer, unwrapped, rates)
        return optimizer

    @override
    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """The Trainer's schedule over ``num_training_steps``, times gamma when ``intensity_target='lr'``.

        The multiplier of optimizer step ``s`` is ``gamma`` of the epoch that step belongs to in the plan (a pure
        function of the step, so a resumed run recomputes the same learning rates).
        """
        created = self.lr_scheduler is None
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        gammas = (self.intensity.gamma_min, self.intensity.gamma_max)
        if created and self.intensity.target == IntensityTarget.LR and gammas != (1.0, 1.0):
            self.lr_scheduler = scale_lambda_lr(scheduler, self._lr_factor)
        return self.lr_scheduler

    def _lr_factor(self, step: int) -> float:
        epoch = self.plan.epoch_of_step(step) if self.plan is not None else 0
        return self.intensity.lr_factor(self.pacing.progress(epoch, self.num_epochs))

    # ------------------------------------------------------------------------------------------------ logging
    @override
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the curriculum state and the loss components (means since the last log) to training logs."""
        if "loss" in logs and self.plan is not None:
            logs.update(self._reduced_metrics())
            plan, step = self.plan, self.state.global_step
            logs.update(plan.log_values(step))
            logs["intensity/gamma"] = self.intensity.gamma(logs["curriculum/progress"])
            if self.difficulty_provider.scoring_seconds:
                logs["curriculum/scoring_seconds"] = self.difficulty_provider.scoring_seconds
        elif "train_runtime" in logs and self.plan is not None:
            logs["curriculum/samples_seen"] = self.plan.samples_until(self.state.global_step)
            logs["curriculum/scoring_seconds"] = self.difficulty_provider.scoring_seconds
        super().log(logs, start_time)

    def _reduced_metrics(self) -> dict[str, float]:
        keys = sorted(self._metrics)
        if not keys:
            return {}
        values = [float(np.mean(self._metrics[k])) for k in keys]
        means = torch.tensor(values, dtype=torch.float64, device=self.args.device)
        if self.accelerator.num_processes > 1:
            means = self.accelerator.reduce(means, reduction="mean")
        self._metrics.clear()
        return dict(zip(keys, means.tolist(), strict=True))

    # ------------------------------------------------------------------------------------------------ evaluation
    @override
    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """The Trainer's evaluation loop (the eval loss; left out with ``eval_loss=False``), plus the retrieval metrics
        of the evaluated dataset.

        Every process encodes the whole dataset (no collective), so every process reports the same metrics.
        """
        if self.args.eval_loss:
            output = super().evaluation_loop(
                dataloader,
                description,
                prediction_loss_only=True,
                ignore_keys=ignore_keys,
                metric_key_prefix=metric_key_prefix,
            )
        else:
            output = EvalLoopOutput(predictions=None, label_ids=None, metrics={}, num_samples=len(dataloader.dataset))
        model = self.accelerator.unwrap_model(self.model)
        metrics: dict[str, float] = {}
        if self.args.eval_retrieval:
            from .evaluation.evaluator import RetrievalEvaluator

            evaluator = RetrievalEvaluator(
                dataloader.dataset,
                data_collator=self.data_collator,
                batch_size=self.args.per_device_eval_batch_size,
                chunk_size=self.args.eval_chunk_size,
            )
            metrics.update(evaluator(model))
        if self.evaluator is not None:
            metrics.update(self.evaluator(model))
        for key, value in metrics.items():
            output.metrics[f"{metric_key_prefix}_{key}"] = value
        return output

    # ------------------------------------------------------------------------------------------------ summary
    def curriculum_summary(self) -> dict[str, Any]:
        """Totals of the run for benchmarks: planned vs actual sample passes and steps, and the time split."""
        return {
            "curriculum": self.args.curriculum.value,
            "pacing": self.pacing.describe(),
            "num_epochs": self.num_epochs,
            **self.curriculum_callback.summary(),
            "scoring_seconds": self.difficulty_provider.scoring_seconds,
        }


__all__ = ["CurriculumTrainer"]
