"""Training arguments of :class:`~class_hf.trainer.CurriculumTrainer`: every CLASS knob, with help text.

:class:`CurriculumTrainingArguments` extends ``transformers.TrainingArguments``; it parses with ``HfArgumentParser``
from the command line (``--curriculum easy_first --pacing staged --pacing_stages 4``) and from YAML
(``parser.parse_yaml_file("config.yaml")``), and serialises with ``to_dict()`` / ``to_json_string()``.

Defaults reproduce CLASS as class-hf reconstructs it (see ``METHOD.md``): easy-first curriculum over 4 stages
(25 / 50 / 75 / 100 % of the data), difficulty from a short warm-up of the backbone, per-sample weights with
``beta = 1`` and a learning-rate stage multiplier from 0.5 to 1. ``curriculum="none"`` with
``intensity_target="none"`` and ``intensity_beta=0`` is the plain-Trainer baseline.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .curriculum.intensity import IntensityTarget, check_intensity_values
from .curriculum.pacing import PacingKind
from .curriculum.pruning import check_pruning_values
from .curriculum.sampler import BatchComposition, CurriculumOrder

logger = logging.getLogger(__name__)

_DIFFICULTY_SOURCES = (
    "precomputed",
    "precomputed:<path-or-hub-id>",
    "warmup",
    "fingerprint",
    "model:<path-or-hub-id>",
)


def _check_difficulty_source(source: str) -> None:
    if source in ("precomputed", "warmup", "fingerprint"):
        return
    for prefix in ("model:", "precomputed:"):
        if source.startswith(prefix):
            if not source[len(prefix) :]:
                raise ValueError(f"`difficulty_source={source!r}` needs a path or Hub id after {prefix!r}.")
            return
    raise ValueError(f"Unknown `difficulty_source` {source!r}; choose one of {list(_DIFFICULTY_SOURCES)}.")


def _accelerator_available() -> bool:
    """Whether torch sees an accelerator (CUDA, MPS, XPU, ...) that pinned memory could serve."""
    import torch

    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


@dataclass
class CurriculumTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the CLASS curriculum, difficulty and intensity settings.

    Only the new fields are documented here; see ``transformers.TrainingArguments`` for the others. Choices accept
    the enum member or its string value.

    > Curriculum (sample scheduler)

    Args:
        curriculum (CurriculumOrder | str): ``easy_first`` (CLASS), ``hard_first`` (anti-curriculum),
            ``random_subset`` (same pool sizes, random samples, re-drawn every epoch) or ``none`` (all data every
            epoch: the baseline; the Trainer's own sampler is used).
        pacing (PacingKind | str | Callable): ``staged``, ``linear``, ``root`` or ``geometric``; a callable
            ``(epoch, num_epochs) -> fraction`` may be set in Python.
        pacing_stages (int): number of stages K of ``staged`` pacing.
        pacing_start_fraction (float): fraction of the data in the first epoch/stage.
        pacing_fractions (list[float] | None): explicit stage fractions for ``staged`` (the last must be 1.0).
        pacing_saturation (float): share of the epochs after which continuous pacing uses all data.
        pacing_root_degree (float): degree ``p`` of ``root`` pacing.
        redraw_random_subset (bool): with ``curriculum="random_subset"``, draw a fresh random subset every epoch
            (default); False takes nested prefixes of one fixed random permutation, as ``easy_first``'s pools nest.
        pace_batch_size (bool): scale every curriculum epoch's per-device batch size with its pool fraction
            (``max(2, ceil(lambda(e) B))``), so that a small early pool still makes about as many optimizer steps as
            a full epoch, and the in-batch negatives grow with the curriculum. Sample passes, and so the compute
            saved, are unchanged.
        pacing_cost_column (str | None): pace by cost instead of by count: a training-set column holding a positive
            cost per pair (``num_nodes``, the molecule's atoms, which drive a graph encoder's compute); each pool then
            holds ``lambda(e)`` of the total cost. Easy pairs are not average pairs (on ChEBI-20 they are larger
            molecules), so pools paced by count cost more than their share. Not with ``difficulty_refresh``, whose
            new order would change the pools' sizes after the schedule is set.
        curriculum_strata_column (str | None): keep every pool's mix of a training-set column: pairs are ranked by
            difficulty within each stratum of the column, so a pool of ``lambda N`` pairs holds about ``lambda`` of
            every stratum (the easiest of each under ``easy_first``). Numeric columns (``num_nodes``) are cut into
            ``curriculum_num_strata`` quantile bins; other values are categories. Separates the order of difficulty
            from what difficulty correlates with (on ChEBI-20, the easiest pairs are the larger molecules).
        curriculum_num_strata (int): quantile bins of a numeric ``curriculum_strata_column``.
        prune_fraction (float): leave learned pairs out of each epoch (InfoBatch): of the easier half of its pool,
            by each pair's training loss when last seen (at least one whole epoch old), this share is left out at
            random and the rest of that half is weighted about ``1 / (1 - prune_fraction)``. In ``[0, 1)``; 0: off.
            Works with every ``curriculum``, ``none`` included (all pairs every epoch, then pruned); needs the
            backbone's ``per_sample_loss``. See :mod:`class_hf.curriculum.pruning`.
        prune_anneal_fraction (float): share of the last epochs trained on whole pools again (with
            ``prune_fraction``).

        batch_composition (BatchComposition | str): ``random`` (consecutive pairs of the epoch's order) or
            ``confusion``: every batch filled to ``confusion_share`` with pairs the difficulty scorer confuses with
            each other (their hardest negatives; :func:`~class_hf.curriculum.sampler.compose_confusion_batches`).
        confusion_neighbors (int): confusing neighbours kept per pair (``confusion``).
        confusion_share (float): share of each batch filled by confusing neighbourhoods (``confusion``).

    > Difficulty

    Args:
        difficulty_source (str): ``precomputed``, ``precomputed:<path-or-hub-id>``, ``warmup``, ``fingerprint`` or
            ``model:<path-or-hub-id>``; used when the training set lacks ``difficulty_column``.
        difficulty_column (str): the column holding the difficulty (``difficulty``).
        difficulty_delta (float): margin ``delta`` of the confusion test.
        difficulty_refresh (bool): re-score the training set with the current model at every stage boundary.
        difficulty_warmup_fraction (float): share of the pairs the ``warmup`` scorer trains on.
        difficulty_warmup_epochs (float): epochs of the ``warmup`` scorer.
        difficulty_warmup_learning_rate (float | None): learning rate of the ``warmup`` scorer (``learning_rate``
            when None).
        difficulty_warmup_batch_size (int | None): training batch size of the ``warmup`` scorer
            (``per_device_train_batch_size`` when None).
        difficulty_batch_size (int | None): encoding batch size when scoring (``per_device_eval_batch_size`` when
            None).

    > Adaptive intensity

    Args:
        intensity_beta (float): strength of the per-sample weights ``w_i = 1 + beta * p * d_i`` (0 turns them off).
        intensity_target (IntensityTarget | str): where the stage multiplier gamma applies: ``lr`` (default),
            ``loss``, ``temperature``, ``margin`` or ``none``.
        intensity_gamma_min (float): gamma at the first stage.
        intensity_gamma_max (float): gamma at the last stage.

    > Model and evaluation

    Args:
        gather_across_ranks (bool): use every rank's samples as in-batch negatives (the backbone must support it).
        text_encoder_learning_rate (float | None): learning rate of the text encoder's parameters (the model's
            ``param_groups()``, or parameters named ``text_encoder.*``); when None, the model config's
            ``text_encoder_learning_rate`` (ORMA/AMAN: 3e-5), else ``learning_rate``. Any other group a backbone's
            ``param_groups()`` names (e.g. AMAN's ``discriminator``) takes ``<group>_learning_rate`` from the model
            config the same way.
        text_chunk_size (int | None): gradient caching for a fine-tuned text encoder: it encodes at most this many
            texts at a time and recomputes their activations in the backward pass, so the contrastive loss sees the
            whole batch (and ``gather_across_ranks`` every rank's) as negatives at the memory of one chunk; gradients
            equal the whole batch's (:meth:`~class_hf.models.base.RetrievalPreTrainedModel.enable_gradient_cache`).
        cache_text_features (bool): compute the frozen text encoder's features once per description (a
            ``text_features`` column, :func:`~class_hf.data.text_features.add_text_features`) and train, evaluate and
            score difficulty on them; needs a backbone whose text encoder is frozen.
        eval_retrieval (bool): compute Hits@k / MRR / mean rank on the evaluation split in ``evaluate``.
        eval_loss (bool): also compute the evaluation loss (a forward pass of the backbone's loss over the evaluation
            set, in batches); False leaves it out when only the retrieval metrics matter (for ORMA on a CPU the loss
            pass is most of an evaluation's cost).
        eval_chunk_size (int): rows per chunk of the similarity matrix in retrieval evaluation and scoring.

    > Outputs

    Args:
        overwrite_output_dir (bool): let a recipe write into an ``output_dir`` that holds an earlier run (its
            ``checkpoint-*`` folders are removed first); without it the recipes refuse, unless the run resumes
            (``resume_from_checkpoint``). The ``Trainer`` itself does not read it.
    """

    # > Curriculum (sample scheduler)
    curriculum: CurriculumOrder | str = field(
        default=CurriculumOrder.EASY_FIRST,
        metadata={
            "help": "Which samples each epoch trains on: 'easy_first' (CLASS), 'hard_first' (anti-curriculum), "
            "'random_subset' (same pool sizes, random samples re-drawn every epoch) or 'none' (all data: baseline)."
        },
    )
    pacing: PacingKind | str = field(
        default=PacingKind.STAGED,
        metadata={"help": "Fraction of the data per epoch: 'staged', 'linear', 'root' or 'geometric'."},
    )
    pacing_stages: int = field(default=4, metadata={"help": "Number of stages of 'staged' pacing."})
    pacing_start_fraction: float = field(
        default=0.25, metadata={"help": "Fraction of the data in the first epoch (or stage), in (0, 1]."}
    )
    pacing_fractions: list[float] | None = field(
        default=None,
        metadata={"help": "Explicit stage fractions of 'staged' pacing, non-decreasing, the last one 1.0."},
    )
    pacing_saturation: float = field(
        default=1.0,
        metadata={"help": "Share of the epochs after which 'linear'/'root'/'geometric' pacing uses all data."},
    )
    pacing_root_degree: float = field(default=2.0, metadata={"help": "Degree p of 'root' pacing (>= 1)."})
    redraw_random_subset: bool = field(
        default=True,
        metadata={
            "help": "With curriculum='random_subset': draw a fresh random subset every epoch (True), or take nested "
            "prefixes of one fixed random permutation, as easy_first's pools nest (False)."
        },
    )

    pace_batch_size: bool = field(
        default=False,
        metadata={
            "help": "Scale each curriculum epoch's batch size with its pool fraction (at least 2), so that early "
            "epochs make about as many optimizer steps as a full one; the in-batch negatives grow with the pool."
        },
    )

    pacing_cost_column: str | None = field(
        default=None,
        metadata={
            "help": "Pace by cost instead of by count: a column with a positive cost per pair (e.g. 'num_nodes', the "
            "molecule's atoms); each epoch's pool then holds its pacing fraction of the total cost."
        },
    )

    curriculum_strata_column: str | None = field(
        default=None,
        metadata={
            "help": "Keep every pool's mix of this training-set column (e.g. 'num_nodes'): pairs are ranked by "
            "difficulty within each stratum, so each pool holds the same share of every stratum."
        },
    )

    curriculum_num_strata: int = field(
        default=4,
        metadata={"help": "Quantile bins of a numeric `curriculum_strata_column`."},
    )
    prune_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Share of the easier half of each epoch's pool (by the pairs' recent training losses) left out "
            "of that epoch, the rest of that half up-weighted (InfoBatch); in [0, 1), 0: off."
        },
    )
    prune_anneal_fraction: float = field(
        default=0.125,
        metadata={"help": "Share of the last epochs trained on whole pools again (with `prune_fraction`)."},
    )

    batch_composition: BatchComposition | str = field(
        default=BatchComposition.RANDOM,
        metadata={
            "help": "How each epoch's order is cut into batches: 'random' (consecutively) or 'confusion' (batches "
            "partly filled with pairs the difficulty scorer confuses with each other: hard negatives)."
        },
    )
    confusion_neighbors: int = field(
        default=16, metadata={"help": "Confusing neighbours kept per pair (batch_composition='confusion')."}
    )
    confusion_share: float = field(
        default=0.5, metadata={"help": "Share of each batch filled by confusing neighbourhoods, in [0, 1]."}
    )

    # > Difficulty
    difficulty_source: str = field(
        default="warmup",
        metadata={
            "help": "Where the difficulty comes from when the training set lacks `difficulty_column`: 'precomputed' "
            "(the column must exist), 'precomputed:<path-or-hub-id>', 'warmup' (the backbone after a short warm-up), "
            "'fingerprint' (frozen text features + Morgan fingerprints) or 'model:<path-or-hub-id>'."
        },
    )
    difficulty_column: str = field(default="difficulty", metadata={"help": "Column holding the difficulty."})
    difficulty_delta: float = field(default=0.0, metadata={"help": "Margin delta of the confusion test."})
    difficulty_refresh: bool = field(
        default=False, metadata={"help": "Re-score the training set with the current model at every stage boundary."}
    )
    difficulty_warmup_fraction: float = field(
        default=0.25, metadata={"help": "Share of the pairs the 'warmup' scorer trains on, in (0, 1]."}
    )
    difficulty_warmup_epochs: float = field(default=1.0, metadata={"help": "Epochs of the 'warmup' scorer."})
    difficulty_warmup_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the 'warmup' scorer (default: `learning_rate`)."}
    )
    difficulty_warmup_batch_size: int | None = field(
        default=None,
        metadata={"help": "Training batch size of the 'warmup' scorer (default: `per_device_train_batch_size`)."},
    )
    difficulty_batch_size: int | None = field(
        default=None, metadata={"help": "Encoding batch size when scoring (default: `per_device_eval_batch_size`)."}
    )

    # > Adaptive intensity
    intensity_beta: float = field(
        default=1.0,
        metadata={
            "help": "Strength beta of the per-sample weights w_i = 1 + beta * progress * difficulty_i (0: off)."
        },
    )
    intensity_target: IntensityTarget | str = field(
        default=IntensityTarget.LR,
        metadata={
            "help": "Where the stage multiplier gamma applies: 'lr' (learning-rate multiplier), 'loss', "
            "'temperature', 'margin' (passed to backbones with `supports_intensity`) or 'none'."
        },
    )
    intensity_gamma_min: float = field(default=0.5, metadata={"help": "Stage multiplier gamma at the first stage."})
    intensity_gamma_max: float = field(default=1.0, metadata={"help": "Stage multiplier gamma at the last stage."})

    # > Model and evaluation
    gather_across_ranks: bool = field(
        default=False,
        metadata={"help": "Use every rank's samples as in-batch negatives (the backbone must support it)."},
    )
    text_encoder_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the text encoder (the model's `param_groups()` or parameters named "
            "`text_encoder.*`); default: the model config's `text_encoder_learning_rate` (ORMA/AMAN: 3e-5), else "
            "`learning_rate`."
        },
    )
    text_chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "Gradient caching for a fine-tuned text encoder: encode at most this many texts at a time (their "
            "activations recomputed in the backward pass), so a large batch of in-batch negatives fits in memory. "
            "Gradients are those of the whole batch. None: the whole batch at once."
        },
    )
    cache_text_features: bool = field(
        default=False,
        metadata={
            "help": "Compute the frozen text encoder's features once per description (a `text_features` column) and "
            "train, evaluate and score on them: the text side then costs nothing. Needs a frozen text encoder."
        },
    )
    eval_retrieval: bool = field(
        default=True, metadata={"help": "Compute Hits@k, MRR and mean rank on the evaluation split in `evaluate`."}
    )
    eval_loss: bool = field(
        default=True,
        metadata={
            "help": "Also compute the evaluation loss in `evaluate` (a forward pass with the loss over the evaluation "
            "set); False leaves it out when only the retrieval metrics matter."
        },
    )
    eval_chunk_size: int = field(
        default=1024, metadata={"help": "Rows per chunk of the similarity matrix (evaluation and scoring)."}
    )

    # > Outputs
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Let a recipe write into an output_dir that holds an earlier run (its checkpoint-* folders are "
            "removed first); without it the recipes refuse unless the run resumes (--resume_from_checkpoint)."
        },
    )

    def __post_init__(self) -> None:
        self.curriculum = _to_enum(CurriculumOrder, self.curriculum, "curriculum")
        if not callable(self.pacing):
            self.pacing = _to_enum(PacingKind, self.pacing, "pacing")
        self.intensity_target = _to_enum(IntensityTarget, self.intensity_target, "intensity_target")
        self.batch_composition = _to_enum(BatchComposition, self.batch_composition, "batch_composition")
        self._check_pacing()
        self._check_difficulty()
        self._check_intensity_and_model()
        if self.uses_batch_stream:
            self._check_curriculum()
        super().__post_init__()
        # After the Trainer's own checks: `load_best_model_at_end` without a metric defaults it to the loss.
        if not self.eval_loss and self.metric_for_best_model in ("loss", "eval_loss"):
            raise ValueError(
                f"`metric_for_best_model={self.metric_for_best_model!r}` needs the evaluation loss, but "
                "`eval_loss=False`: set `eval_loss=True` or choose a retrieval metric such as 'eval_mrr'."
            )
        if self.dataloader_pin_memory and (self.use_cpu or not _accelerator_available()):
            # Pinned memory serves an accelerator only; torch would warn at every data loader (every evaluation).
            self.dataloader_pin_memory = False
        if self.uses_batch_stream and self.accelerator_config.split_batches:
            raise ValueError(
                "`accelerator_config.split_batches=True` cannot be combined with a curriculum: the curriculum cuts "
                "every process's batches itself. Keep the default `split_batches=False`."
            )

    def _check_pacing(self) -> None:
        if not isinstance(self.pacing_stages, int) or self.pacing_stages < 1:
            raise ValueError(f"`pacing_stages` must be a positive integer, got {self.pacing_stages!r}.")
        for name in ("pacing_start_fraction", "pacing_saturation", "difficulty_warmup_fraction"):
            value = getattr(self, name)
            if not 0 < value <= 1:  # also False for NaN
                raise ValueError(f"`{name}` must lie in (0, 1], got {value}.")
        if self.pacing_fractions is not None:
            fractions = list(self.pacing_fractions)
            if not fractions or any(not 0 < f <= 1 for f in fractions) or fractions[-1] != 1.0:
                raise ValueError(f"`pacing_fractions` must be fractions in (0, 1] ending with 1.0, got {fractions}.")
            if any(b < a for a, b in zip(fractions, fractions[1:], strict=False)):
                raise ValueError(f"`pacing_fractions` must be non-decreasing, got {fractions}.")
        if not self.pacing_root_degree >= 1:  # NaN fails too
            raise ValueError(f"`pacing_root_degree` must be >= 1, got {self.pacing_root_degree}.")
        if self.pacing_cost_column == "":
            raise ValueError("`pacing_cost_column` must name a column of the training set (or be None).")
        if self.pacing_cost_column is not None and self.difficulty_refresh:
            raise ValueError(
                "`pacing_cost_column` cannot be combined with `difficulty_refresh`: pools paced by cost change size "
                "when the difficulty order changes, after the learning-rate schedule is planned. Drop one of them."
            )
        if self.curriculum_strata_column == "":
            raise ValueError("`curriculum_strata_column` must name a column of the training set (or be None).")
        if not isinstance(self.curriculum_num_strata, int) or self.curriculum_num_strata < 1:
            raise ValueError(
                f"`curriculum_num_strata` must be a positive integer, got {self.curriculum_num_strata!r}."
            )
        check_pruning_values(self.prune_fraction, self.prune_anneal_fraction)
        if self.confusion_neighbors < 1 or not 0 <= self.confusion_share <= 1:  # NaN share fails too
            raise ValueError(
                f"`confusion_neighbors` must be >= 1 and `confusion_share` in [0, 1], got {self.confusion_neighbors} "
                f"and {self.confusion_share}."
            )

    def _check_difficulty(self) -> None:
        _check_difficulty_source(self.difficulty_source)
        if not self.difficulty_column:
            raise ValueError("`difficulty_column` must name a column.")
        if not (math.isfinite(self.difficulty_delta) and self.difficulty_delta >= 0):
            raise ValueError(f"`difficulty_delta` must be a finite number >= 0, got {self.difficulty_delta}.")
        if not (math.isfinite(self.difficulty_warmup_epochs) and self.difficulty_warmup_epochs > 0):
            raise ValueError(
                f"`difficulty_warmup_epochs` must be a finite positive number, got {self.difficulty_warmup_epochs}."
            )
        for name in ("difficulty_batch_size", "difficulty_warmup_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"`{name}` must be positive, got {value}.")

    def _check_intensity_and_model(self) -> None:
        check_intensity_values(self.intensity_beta, self.intensity_gamma_min, self.intensity_gamma_max)
        if self.eval_chunk_size < 1:
            raise ValueError(f"`eval_chunk_size` must be positive, got {self.eval_chunk_size}.")
        if not self.eval_loss and not self.eval_retrieval:
            raise ValueError("`eval_loss=False` with `eval_retrieval=False` leaves nothing to evaluate; keep one.")
        rate = self.text_encoder_learning_rate
        if rate is not None and not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"`text_encoder_learning_rate` must be a finite number >= 0, got {rate}.")

    def _check_curriculum(self) -> None:
        if float(self.num_train_epochs) != int(self.num_train_epochs) or self.num_train_epochs < 1:
            raise ValueError(
                f"`num_train_epochs` must be a whole number >= 1 with a curriculum (the pacing is planned per "
                f"epoch), got {self.num_train_epochs}. Set `curriculum='none'` for fractional epochs."
            )
        stages = len(self.pacing_fractions) if self.pacing_fractions is not None else self.pacing_stages
        if self.pacing == PacingKind.STAGED and stages > self.num_train_epochs:
            logger.warning(
                "%d pacing stages over `num_train_epochs=%d`: only %d of them get an epoch, ending on all data. Lower "
                "`pacing_stages` or raise `num_train_epochs` to train every stage.",
                stages,
                int(self.num_train_epochs),
                int(self.num_train_epochs),
            )
        if self.train_sampling_strategy not in (None, "random"):
            raise ValueError(
                f"`train_sampling_strategy={self.train_sampling_strategy!r}` cannot be combined with "
                f"`curriculum={self.curriculum.value!r}`: the curriculum sampler decides the order. Use "
                "`curriculum='none'` to keep the Trainer's sampling strategy."
            )

    @property
    def curriculum_enabled(self) -> bool:
        """Whether each epoch trains on a curriculum pool (anything but ``curriculum='none'``)."""
        return self.curriculum != CurriculumOrder.NONE

    @property
    def uses_batch_stream(self) -> bool:
        """Whether class-hf cuts the batches (a curriculum, a batch composition or pruning) instead of the Trainer's
        sampler."""
        return self.curriculum_enabled or self.batch_composition != BatchComposition.RANDOM or self.prune_fraction > 0

    def to_dict(self) -> dict:
        """Like ``TrainingArguments.to_dict``, with a callable ``pacing`` replaced by its name (JSON-safe)."""
        d = super().to_dict()
        if callable(self.pacing):
            d["pacing"] = f"custom:{getattr(self.pacing, '__name__', type(self.pacing).__name__)}"
        return d


def _to_enum(enum_cls, value, name: str):
    try:
        return enum_cls(value.value if hasattr(value, "value") else value)
    except ValueError:
        raise ValueError(
            f"`{name}`={value!r} is not valid; choose one of {[member.value for member in enum_cls]}."
        ) from None
