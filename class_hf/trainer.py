"""``CurriculumTrainer``: CLASS curriculum training for any text-molecule retrieval backbone.

:class:`CurriculumTrainer` is a ``transformers.Trainer`` that wires the pieces of :mod:`class_hf.curriculum` into the
Trainer through its public hooks:

- ``train``: the difficulty is prepared before the Trainer's loop
  (:class:`~class_hf.curriculum.provider.DifficultyProvider`: a checkpoint's values, the dataset's column or a
  scoring pass), and a checkpoint's curriculum state is restored;
- ``get_train_dataloader``: every curriculum epoch's batches back to back as one deterministic stream
  (:class:`~class_hf.curriculum.sampler.CurriculumBatchSampler` over a
  :class:`~class_hf.curriculum.plan.CurriculumPlan`), which covers each epoch's pool exactly once across processes;
- ``set_initial_training_values``: ``max_steps`` is the plan's number of optimizer steps, so the Trainer makes one pass
  and the learning-rate schedule ends exactly at the last step; resuming rides on the Trainer's own batch skipping;
- :class:`~class_hf.curriculum.callback.CurriculumCallback`: maps the global step to the curriculum epoch for
  evaluations, checkpoints, logs and the history;
- ``compute_loss``: the per-sample weights and stage multiplier of
  :class:`~class_hf.curriculum.intensity.AdaptiveIntensity`;
- ``create_optimizer`` / ``create_scheduler``: one learning rate per parameter group of the backbone, and the stage
  multiplier on the learning rate;
- ``evaluation_loop``: the eval loss plus retrieval metrics from a
  :class:`~class_hf.evaluation.evaluator.RetrievalEvaluator`;
- ``_set_signature_columns_if_needed``: keeps the columns the collator reads (as TRL does).

No other private Trainer method is overridden. With ``curriculum="none"``, ``intensity_target="none"`` and
``intensity_beta=0`` the Trainer's own data loader and schedule are used unchanged: the run is a plain
``transformers.Trainer`` run, bit for bit.
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
from transformers.trainer_utils import get_last_checkpoint

from .curriculum.callback import CurriculumCallback
from .curriculum.intensity import AdaptiveIntensity, IntensityTarget, scale_lambda_lr, weigh_loss
from .curriculum.pacing import Pacing, get_pacing
from .curriculum.plan import CurriculumPlan, balanced_batch_sizes
from .curriculum.provider import SAMPLE_IDX, DifficultyCheckpointCallback, DifficultyProvider
from .curriculum.sampler import CurriculumBatchSampler, CurriculumSampler
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
        difficulty_provider (DifficultyProvider): the run's difficulty (values, scoring information, refreshes).
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
            from .data.collator import MoleculeTextCollator

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
        if args.curriculum_enabled and args.accelerator_config.split_batches:
            raise ValueError(
                "`accelerator_config.split_batches=True` cannot be combined with a curriculum: the curriculum cuts "
                "every process's batches itself. Keep the default `split_batches=False`."
            )
        self.evaluator = evaluator
        self.pacing: Pacing = get_pacing(pacing) if pacing is not None else self._build_pacing()
        self.intensity = AdaptiveIntensity(
            beta=args.intensity_beta,
            gamma_min=args.intensity_gamma_min,
            gamma_max=args.intensity_gamma_max,
            target=args.intensity_target,
        )
        self.difficulty_provider = DifficultyProvider(
            source=args.difficulty_source,
            column=args.difficulty_column,
            pacing=self.pacing,
            num_epochs=self.num_epochs,
            refresh=args.difficulty_refresh and args.curriculum_enabled,
            score_kwargs={
                "delta": args.difficulty_delta,
                "chunk_size": args.eval_chunk_size,
                "batch_size": args.difficulty_batch_size or args.per_device_eval_batch_size,
                "show_progress": not args.disable_tqdm,
            },
            source_kwargs={
                "seed": self._data_seed,
                "warmup_fraction": args.difficulty_warmup_fraction,
                "warmup_epochs": args.difficulty_warmup_epochs,
                "warmup_learning_rate": args.difficulty_warmup_learning_rate or args.learning_rate,
            },
            broadcast=self._broadcast,
        )
        self.add_callback(DifficultyCheckpointCallback(self.difficulty_provider, self._sampler_state))
        if self.model is not None:
            self._configure_backbone(self.model)
        self.plan: CurriculumPlan | None = None
        self._curriculum_sampler: CurriculumSampler | None = None
        self._restored_sampler_state: dict[str, Any] | None = None
        self._metrics: dict[str, list[float]] = defaultdict(list)

    # ------------------------------------------------------------------------------------------------- set-up
    def _build_pacing(self) -> Pacing:
        args = self.args
        return get_pacing(
            args.pacing if callable(args.pacing) else args.pacing.value,
            num_stages=args.pacing_stages,
            start_fraction=args.pacing_start_fraction,
            fractions=args.pacing_fractions,
            saturation=args.pacing_saturation,
            root_degree=args.pacing_root_degree,
        )

    def _configure_backbone(self, model: nn.Module) -> None:
        if self.intensity.target in (IntensityTarget.TEMPERATURE, IntensityTarget.MARGIN) and not getattr(
            model, "supports_intensity", False
        ):
            raise ValueError(
                f"`intensity_target={self.intensity.target.value!r}` passes the stage multiplier to the backbone, but "
                f"{type(model).__name__} does not declare `supports_intensity = True`. Use `intensity_target='lr'` "
                "(or 'loss'/'none'), or add an `intensity` argument to the backbone's forward."
            )
        if self.args.gather_across_ranks:
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

    @property
    def num_epochs(self) -> int:
        """Curriculum epochs the pacing is spread over (``ceil(num_train_epochs)``)."""
        return max(1, math.ceil(self.args.num_train_epochs))

    @property
    def _data_seed(self) -> int:
        return self.args.data_seed if self.args.data_seed is not None else self.args.seed

    @property
    def _needs_difficulty(self) -> bool:
        return self.args.curriculum_enabled or self.args.intensity_beta > 0

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

    def _broadcast(self, values: np.ndarray) -> np.ndarray:
        """Process 0's values on every process."""
        if self.accelerator.num_processes <= 1:
            return values
        from accelerate.utils import broadcast_object_list

        box = [values]
        broadcast_object_list(box, from_process=0)
        return np.asarray(box[0])

    def _sampler_state(self) -> dict[str, Any]:
        return {"sampler": self._curriculum_sampler.state_dict() if self._curriculum_sampler is not None else None}

    # ------------------------------------------------------------------------------------------------ data
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
        """Called by the batch stream before drawing epoch ``epoch``: refreshes the difficulty when it is due."""
        provider, model = self.difficulty_provider, self.accelerator.unwrap_model(self.model)
        if provider.maybe_refresh(epoch, model, self.train_dataset, self.data_collator):
            self._curriculum_sampler.set_difficulty(provider.values)
            self.curriculum_callback.add_scoring_seconds(epoch, provider.refresh_seconds[epoch])

    def get_train_dataloader(self) -> DataLoader:
        """The Trainer's data loader without a curriculum; with one, the stream of every curriculum epoch's batches."""
        args = self.args
        if self._needs_difficulty and self.difficulty_provider.values is None:
            self._prepare_difficulty()
        if not args.curriculum_enabled:
            dataloader = super().get_train_dataloader()
            self._set_plan(self._trainer_epochs_plan(dataloader), drive_epochs=False)
            return dataloader
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        sampler = CurriculumSampler(
            self.difficulty_provider.values,
            self.pacing,
            num_epochs=self.num_epochs,
            seed=self._data_seed,
            order=args.curriculum,
            redraw_random_subset=args.redraw_random_subset,
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
        )
        self._set_signature_columns_if_needed()
        dataset = self.train_dataset
        dataset = dataset.select_columns([c for c in dataset.column_names if c in self._signature_columns])
        loader = DataLoader(
            dataset,
            batch_sampler=CurriculumBatchSampler(sampler, plan, before_epoch=self._before_epoch),
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory and args.device.type != "cpu",
            persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
            prefetch_factor=args.dataloader_prefetch_factor,
        )
        self._set_plan(plan, drive_epochs=True)
        logger.info("Curriculum plan (%s, %s): %s.", args.curriculum.value, self.pacing, plan.describe())
        return self.accelerator.prepare(loader)

    def get_eval_dataloader(self, eval_dataset=None) -> DataLoader:
        """The Trainer's, except on several processes with ``even_batches=False``: every process then gets the same
        number of batches (sizes differing by at most one), so that the evaluation's collectives cannot wait forever.
        """
        if self.accelerator.num_processes == 1 or self.args.accelerator_config.even_batches:
            return super().get_eval_dataloader(eval_dataset)
        if isinstance(eval_dataset, str) or eval_dataset is None:
            eval_dataset = self.eval_dataset[eval_dataset] if isinstance(eval_dataset, str) else self.eval_dataset
        self._set_signature_columns_if_needed()
        dataset = eval_dataset.select_columns([c for c in eval_dataset.column_names if c in self._signature_columns])
        sizes = balanced_batch_sizes(len(dataset), self.args.eval_batch_size, self.accelerator.num_processes)
        starts = np.cumsum([0, *sizes])
        batches = [list(range(a, b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=self.data_collator, num_workers=0)
        return self.accelerator.prepare(loader)

    def _trainer_epochs_plan(self, dataloader) -> CurriculumPlan:
        """The Trainer's own epochs as a plan (no curriculum): every sample every epoch."""
        args, batches = self.args, len(dataloader)
        world = self.accelerator.num_processes
        num_samples = len(self.train_dataset)
        padded = world > 1 and (args.dataloader_drop_last or args.accelerator_config.even_batches)
        per_epoch = batches * world * self._train_batch_size if padded else num_samples
        return CurriculumPlan(
            num_samples=num_samples,
            batch_size=self._train_batch_size,
            world_size=world,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            drop_last=args.dataloader_drop_last,
            fractions=[1.0] * self.num_epochs,
            pool_sizes=[num_samples] * self.num_epochs,
            stages=[self.pacing.stage(e, self.num_epochs) for e in range(self.num_epochs)],
            progress=[self.pacing.progress(e, self.num_epochs) for e in range(self.num_epochs)],
            updates=[max(1, math.ceil(batches / args.gradient_accumulation_steps))] * self.num_epochs,
            epoch_samples=[per_epoch] * self.num_epochs,
        )

    def _set_plan(self, plan: CurriculumPlan, drive_epochs: bool) -> None:
        self.plan = plan
        gammas = [self.intensity.gamma(p) for p in plan.progress]
        self.curriculum_callback.setup(plan, gammas, drive_epochs)

    def set_initial_training_values(self, args, dataloader):
        """With a curriculum, the Trainer's values for ``max_steps`` = the plan's optimizer steps (one pass)."""
        if not self.args.curriculum_enabled or self.plan is None:
            return super().set_initial_training_values(args, dataloader)
        total = self.plan.total_updates
        max_steps = min(args.max_steps, total) if args.max_steps > 0 else total
        return super().set_initial_training_values(_ArgsWithMaxSteps(args, max_steps), dataloader)

    # ------------------------------------------------------------------------------------------------ training
    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """Prepares the difficulty (restoring a checkpoint's curriculum state), then trains as ``Trainer.train``.

        Args:
            resume_from_checkpoint (str | bool | None): a checkpoint folder, or True for the last one in
                ``output_dir``; its curriculum state restores the difficulty, the sampler and the history.
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
        self.difficulty_provider.reset()
        self._restored_sampler_state = None
        restored = None
        if resume_from_checkpoint is not None:
            loaded = DifficultyProvider.load(os.fspath(resume_from_checkpoint))
            if loaded is not None:
                state, restored = loaded
                self.difficulty_provider.load_state_dict(state)
                self._restored_sampler_state = state.get("sampler")
            elif self._needs_difficulty:
                logger.warning(
                    "Checkpoint %s has no curriculum state; the difficulty is taken from the training set again.",
                    resume_from_checkpoint,
                )
        self._prepare_difficulty(restored)
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint,
            trial=trial,
            ignore_keys_for_eval=ignore_keys_for_eval,
            **kwargs,
        )

    @property
    def current_epoch(self) -> int:
        """The curriculum epoch of the optimizer step in progress (from ``state.global_step`` and the plan)."""
        return self.plan.epoch_of_step(self.state.global_step) if self.plan is not None else 0

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
        epoch = self.current_epoch
        progress = self.plan.progress[epoch] if self.plan is not None else 0.0
        extra = {}
        if (intensity := self.intensity.backbone_intensity(progress)) is not None:
            extra["intensity"] = intensity
        outputs = model(**inputs, **extra)
        d_hat = None
        if self.intensity.beta > 0 and progress > 0:
            if sample_idx is not None and self.difficulty_provider.values is not None:
                d_hat = self.difficulty_provider.normalized(epoch)[sample_idx.detach().long().cpu()]
            elif batch_difficulty is not None:
                d_hat = batch_difficulty.detach().clamp(0.0, 1.0)
            else:
                raise ValueError(
                    f"`intensity_beta={self.args.intensity_beta}` weights samples by difficulty, but the batch has "
                    f"neither `{SAMPLE_IDX}` nor `difficulty`. Use a collator that passes them through "
                    "(MoleculeTextCollator does) or set `intensity_beta=0`."
                )
        name = type(self.accelerator.unwrap_model(model)).__name__
        loss, logs = weigh_loss(outputs, d_hat, progress, self.intensity, name=name)
        for key, value in logs.items():
            self._metrics[key].append(value)
        return (loss, outputs) if return_outputs else loss

    # ------------------------------------------------------------------------------------------ optimization
    def get_decay_parameter_names(self, model) -> list[str]:
        """The Trainer's rule; for a backbone with ``param_groups()`` also open_clip's: only 2+-dim tensors decay."""
        names = super().get_decay_parameter_names(model)
        if callable(getattr(model, "param_groups", None)):
            shapes = {n: p.ndim for n, p in model.named_parameters()}
            names = [n for n in names if shapes.get(n, 0) >= 2]
        return names

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """The Trainer's optimizer, with one learning rate per parameter group the backbone names.

        Every group ``g`` of ``model.param_groups()`` (``text_encoder``, AMAN's ``discriminator``, ...) trains at
        ``args.<g>_learning_rate`` when the arguments set it, else at ``model.config.<g>_learning_rate`` when the
        config sets it (ORMA/AMAN: text encoder 3e-5), else at ``learning_rate``. A model without ``param_groups()``
        has the group ``text_encoder`` (parameters named ``text_encoder.*``). The schedule scales every group alike.
        """
        created = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if created:
            unwrapped = self.accelerator.unwrap_model(self.model if model is None else model)
            rates = self._group_learning_rates(unwrapped)
            if rates:
                _split_param_groups(optimizer, unwrapped, rates)
        return optimizer

    def _group_learning_rates(self, model: nn.Module) -> dict[str, float]:
        args = self.args
        named = _named_groups(model)
        if args.text_encoder_learning_rate is not None and not named.get("text_encoder"):
            raise ValueError(
                f"`text_encoder_learning_rate` is set but {type(model).__name__} has no text-encoder parameters "
                "(none in `param_groups()['text_encoder']` nor named `text_encoder.*`). Unset it or rename the module."
            )
        config = getattr(model, "config", None)
        rates: dict[str, float] = {}
        for group in (g for g in named if g != "other" and named[g]):
            key = f"{group}_learning_rate"
            sources = (("training arguments", getattr(args, key, None)), ("model config", getattr(config, key, None)))
            for where, value in sources:
                if value is not None:
                    rates[group] = float(value)
                    logger.info("Parameter group %r: learning rate %g (`%s` of the %s).", group, value, key, where)
                    break
        return rates

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
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the curriculum state and the loss components (means since the last log) to training logs."""
        if "loss" in logs and self.plan is not None:
            logs.update(self._reduced_metrics())
            plan, step = self.plan, self.state.global_step
            epoch = plan.epoch_of_step(max(step - 1, 0))
            logs["curriculum/epoch"] = epoch
            logs["curriculum/stage"] = plan.stages[epoch]
            logs["curriculum/fraction"] = plan.fractions[epoch]
            logs["curriculum/progress"] = plan.progress[epoch]
            logs["curriculum/samples_seen"] = self._samples_seen(step)
            logs["intensity/gamma"] = self.intensity.gamma(plan.progress[epoch])
            if self.difficulty_provider.scoring_seconds:
                logs["curriculum/scoring_seconds"] = self.difficulty_provider.scoring_seconds
        elif "train_runtime" in logs and self.plan is not None:
            logs["curriculum/samples_seen"] = self._samples_seen(self.state.global_step)
            logs["curriculum/scoring_seconds"] = self.difficulty_provider.scoring_seconds
        super().log(logs, start_time)

    def _samples_seen(self, global_step: int) -> int:
        plan = self.plan
        epoch = plan.epoch_of_step(max(global_step - 1, 0))
        done = min(global_step, plan.total_updates) - plan.first_step(epoch)
        before = sum(plan.samples(e) for e in range(epoch))
        return before + (plan.samples(epoch) if done >= plan.updates[epoch] else plan.samples_in_steps(epoch, done))

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
    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """The Trainer's evaluation loop (the eval loss), plus the retrieval metrics of the evaluated dataset.

        Every process encodes the whole dataset (no collective), so every process reports the same metrics.
        """
        output = super().evaluation_loop(
            dataloader,
            description,
            prediction_loss_only=True,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
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
        plan, history = self.plan, self.curriculum_history
        summary = {
            "curriculum": self.args.curriculum.value,
            "pacing": self.pacing.describe(),
            "num_samples": plan.num_samples if plan else None,
            "num_epochs": self.num_epochs,
            "planned_sample_passes": plan.sample_passes if plan else None,
            "full_sample_passes": plan.full_sample_passes if plan else None,
            "planned_optimizer_steps": plan.total_updates if plan else None,
            "samples_seen": sum(r["samples_seen"] for r in history),
            "optimizer_steps": sum(r["optimizer_steps"] for r in history),
            "train_seconds": sum(r["train_seconds"] for r in history),
            "eval_seconds": sum(r["eval_seconds"] for r in history),
            "scoring_seconds": self.difficulty_provider.scoring_seconds,
        }
        if plan:
            summary["sample_pass_saving"] = 1.0 - plan.sample_passes / max(1, plan.full_sample_passes)
        return summary


def _named_groups(model: nn.Module) -> dict[str, list[str]]:
    """The backbone's ``param_groups()``, or ``text_encoder`` = the parameters named ``text_encoder.*``."""
    if callable(getattr(model, "param_groups", None)):
        return model.param_groups()
    return {"text_encoder": [n for n, _ in model.named_parameters() if n.startswith("text_encoder.")]}


def _split_param_groups(optimizer: torch.optim.Optimizer, model: nn.Module, rates: dict[str, float]) -> None:
    """Splits every optimizer parameter group by the model's named groups and sets each named group's rate."""
    named = _named_groups(model)
    params = dict(model.named_parameters())
    owner = {id(params[name]): group for group, names in named.items() if group in rates for name in names}
    groups = []
    for group in optimizer.param_groups:
        buckets: dict[str | None, list[nn.Parameter]] = defaultdict(list)
        for param in group["params"]:
            buckets[owner.get(id(param))].append(param)
        for name, members in buckets.items():
            groups.append({**group, "params": members, **({"lr": rates[name]} if name is not None else {})})
    optimizer.param_groups = groups


__all__ = ["CurriculumTrainer"]
