"""Model cards of CLASS checkpoints, generated from the training run (``huggingface_hub.ModelCard``).

:func:`build_model_card` renders ``class_hf/templates/model_card.md`` (linked from ``model_cards/template.md``) with
a ``ModelCardData`` header whose ``model-index`` holds the test metrics of both directions (text->molecule,
molecule->text) and both candidate pools (``split``, ``all``) as ``EvalResult`` entries;
:func:`model_card_from_trainer` collects everything else (hyperparameters, the CLASS settings, the curriculum's
sample passes and times) from a finished :class:`~class_hf.trainer.CurriculumTrainer`.
:func:`metrics_from_model_card` reads the metrics back. In the ``model-index`` each direction is a task
(``text-to-molecule-retrieval``, ``molecule-to-text-retrieval``) and the pool is the metric's ``config``
(``pool-split`` / ``pool-all``), so both pools of a direction share one results block and parse back apart.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .data.sources import is_hub_id
from .models.registry import BACKBONES

logger = logging.getLogger(__name__)

__all__ = [
    "BACKBONE_CITATIONS",
    "CLASS_CITATION",
    "build_model_card",
    "eval_results_from_metrics",
    "metrics_from_model_card",
    "model_card_from_trainer",
]

LIBRARY_NAME = "class-hf"
TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "model_card.md"
DEFAULT_TAGS = (
    "class-hf",
    "curriculum-learning",
    "contrastive-learning",
    "chemistry",
    "molecule-retrieval",
    "text-to-molecule",
)
DIRECTIONS = {
    "t2m": ("text-to-molecule-retrieval", "Text-to-molecule retrieval", "text→molecule"),
    "m2t": ("molecule-to-text-retrieval", "Molecule-to-text retrieval", "molecule→text"),
}
_METRIC_NAMES = {"mrr": "MRR", "mean_rank": "mean rank"}

CLASS_CITATION = """@article{wu2025class,
  title   = {{CLASS}: Enhancing Cross-Modal Text-Molecule Retrieval Performance and Training Efficiency},
  author  = {Wu, Hongyan and Zeng, Peijian and Zheng, Weixiong and Wang, Lianxi and Lin, Nankai and Jiang, Shengyi and
             Yang, Aimin},
  journal = {arXiv preprint arXiv:2502.11633},
  year    = {2025}
}"""

BACKBONE_CITATIONS: dict[str, tuple[str, str]] = {
    spec.model_type: (spec.display_name, spec.citation) for spec in BACKBONES.values()
}
"""``model_type`` -> (readable name, BibTeX) of the shipped backbones (:data:`class_hf.models.registry.BACKBONES`)."""

# TrainingArguments fields shown in the card's hyperparameter table (when set).
HYPERPARAMETER_FIELDS = (
    "learning_rate",
    "text_encoder_learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler_type",
    "optim",
    "max_grad_norm",
    "seed",
    "bf16",
    "fp16",
)
# CurriculumTrainingArguments fields of the CLASS method.
CLASS_FIELDS = (
    "curriculum",
    "pacing",
    "pacing_stages",
    "pacing_start_fraction",
    "pacing_fractions",
    "pacing_saturation",
    "pacing_root_degree",
    "pace_batch_size",
    "pacing_cost_column",
    "curriculum_strata_column",
    "curriculum_num_strata",
    "prune_fraction",
    "prune_anneal_fraction",
    "batch_composition",
    "difficulty_source",
    "difficulty_delta",
    "difficulty_refresh",
    "difficulty_warmup_fraction",
    "difficulty_warmup_epochs",
    "difficulty_warmup_batch_size",
    "intensity_beta",
    "intensity_target",
    "intensity_gamma_min",
    "intensity_gamma_max",
    "gather_across_ranks",
)


def _metric_key(metric: str) -> tuple[str, str]:
    """``("hits@1", "Hits@1")`` for a retrieval key suffix."""
    return metric, _METRIC_NAMES.get(metric, metric.replace("hits@", "Hits@"))


def eval_results_from_metrics(
    test_metrics: Mapping[str, Mapping[str, float]],
    *,
    dataset_id: str,
    dataset_name: str,
    split: str = "test",
    source_name: str | None = None,
    source_url: str | None = None,
) -> list[EvalResult]:
    """``EvalResult`` entries of the retrieval metrics, one per (direction, pool, metric).

    Args:
        test_metrics (Mapping): pool name (``split``, ``all``) -> the dict of
            :func:`~class_hf.evaluation.retrieval.retrieval_metrics` (keys ``t2m_mrr``, ``m2t_hits@1``, ...).
        dataset_id (str): the dataset's Hub id (or a plain name for local data), the ``dataset.type``.
        dataset_name (str): a readable dataset name.
        split (str): the evaluated split.
        source_name (str | None): who measured the results (shown on the Hub; needs ``source_url``).
        source_url (str | None): where the results come from.

    Returns:
        list[EvalResult]: the entries, in a stable order (direction, pool, metric).
    """
    results = []
    for direction, (task_type, task_name, arrow) in DIRECTIONS.items():
        for pool, metrics in test_metrics.items():
            for key, value in metrics.items():
                if not key.startswith(f"{direction}_"):
                    continue
                metric_type, pretty = _metric_key(key[len(direction) + 1 :])
                results.append(
                    EvalResult(
                        task_type=task_type,
                        task_name=task_name,
                        dataset_type=dataset_id,
                        dataset_name=dataset_name,
                        dataset_split=split,
                        metric_type=metric_type,
                        metric_name=f"{split} {arrow} {pretty} (pool: {pool})",
                        metric_config=f"pool-{pool}",
                        metric_value=float(value),
                        source_name=source_name if source_url else None,
                        source_url=source_url,
                    )
                )
    return results


def metrics_from_model_card(card: ModelCard | str | os.PathLike) -> dict[str, dict[str, float]]:
    """The retrieval metrics stored in a card's ``model-index``, as ``{pool: {"t2m_mrr": ..., ...}}``.

    Args:
        card (ModelCard | str | os.PathLike): a card, or a path / Hub id for ``ModelCard.load``.

    Returns:
        dict[str, dict[str, float]]: the inverse of :func:`eval_results_from_metrics` (entries of other tasks are
        skipped).
    """
    if not isinstance(card, ModelCard):
        card = ModelCard.load(card)
    tasks = {task_type: direction for direction, (task_type, _, _) in DIRECTIONS.items()}
    metrics: dict[str, dict[str, float]] = {}
    for result in card.data.eval_results or []:
        direction = tasks.get(result.task_type)
        if direction is None or not (result.metric_config or "").startswith("pool-"):
            continue
        pool = result.metric_config[len("pool-") :]
        metrics.setdefault(pool, {})[f"{direction}_{result.metric_type}"] = float(result.metric_value)
    return metrics


def _fmt(value: Any) -> str:
    if hasattr(value, "value"):  # enums
        value = value.value
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _cell(metrics: Mapping[str, float], key: str, percent: bool = True) -> str:
    """A metric for the results table: a percentage with two decimals (a plain number with ``percent=False``)."""
    value = metrics.get(key)
    if value is None:
        return "–"
    return f"{100 * value:.2f}" if percent else f"{value:.2f}"


def _result_rows(test_metrics: Mapping[str, Mapping[str, float]]) -> list[dict[str, str]]:
    rows = []
    for pool, metrics in test_metrics.items():
        for direction, (_, _, arrow) in DIRECTIONS.items():
            rows.append(
                {
                    "pool": pool,
                    "direction": arrow,
                    "hits1": _cell(metrics, f"{direction}_hits@1"),
                    "hits5": _cell(metrics, f"{direction}_hits@5"),
                    "hits10": _cell(metrics, f"{direction}_hits@10"),
                    "mrr": _cell(metrics, f"{direction}_mrr"),
                    "mean_rank": _cell(metrics, f"{direction}_mean_rank", percent=False),
                }
            )
    return rows


def savings_lines(
    summary: Mapping[str, Any] | None,
    scoring: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
) -> list[str]:
    """The "Cost and savings" bullet points of the card, from :meth:`CurriculumTrainer.curriculum_summary`.

    Args:
        summary (Mapping | None): the trainer's curriculum summary (sample passes, steps, seconds).
        scoring (Mapping | None): the difficulty scoring info (``source``, ``seconds``).
        baseline (Mapping | None): a measured baseline run of the same backbone without curriculum, with
            ``train_seconds`` (and optionally ``name``); without it no wall-clock saving is claimed.

    Returns:
        list[str]: Markdown lines.
    """
    if not summary:
        return ["No curriculum summary was recorded for this run."]
    lines = []
    full = summary.get("full_sample_passes")
    seen = summary.get("samples_seen")
    if full:
        lines.append(
            f"Sample passes: {seen:,} of the {full:,} that {summary.get('num_epochs')} full epochs over "
            f"{summary.get('num_samples'):,} pairs take ({1 - seen / full:.1%} fewer; planned "
            f"{summary.get('sample_pass_saving', 0.0):.1%} fewer)."
        )
    steps, planned = summary.get("optimizer_steps"), summary.get("planned_optimizer_steps")
    lines.append(f"Optimizer steps: {steps} (planned {planned}).")
    train = float(summary.get("train_seconds") or 0.0)
    scoring_seconds = float(summary.get("scoring_seconds") or 0.0)
    source = (scoring or {}).get("source")
    lines.append(
        f"Wall-clock: {train:.1f} s training, {scoring_seconds:.1f} s difficulty scoring"
        + (f" (`{source}`)" if source else "")
        + f", {float(summary.get('eval_seconds') or 0.0):.1f} s validation."
    )
    if baseline and baseline.get("train_seconds"):
        base = float(baseline["train_seconds"])
        name = baseline.get("name", "the same backbone without curriculum")
        lines.append(
            f"Against {name} ({base:.1f} s): {1 - (train + scoring_seconds) / base:.1%} less time, scoring included."
        )
    else:
        lines.append(
            "A wall-clock saving needs a baseline run of the same backbone without curriculum (`--curriculum none "
            "--intensity_beta 0 --intensity_target none`) on the same hardware; none was given for this card."
        )
    return lines


def _load_template(template_path: str | os.PathLike | None) -> str:
    path = Path(template_path) if template_path is not None else TEMPLATE_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"Model card template {path} not found. Pass `template_path` (a Jinja Markdown template)."
        )
    return path.read_text(encoding="utf-8")


def build_model_card(
    *,
    model_type: str,
    test_metrics: Mapping[str, Mapping[str, float]],
    model_id: str | None = None,
    base_model: str | None = None,
    dataset_id: str = "chebi-20",
    dataset_name: str = "ChEBI-20",
    split: str = "test",
    num_test_pairs: int | None = None,
    data_sizes: Mapping[str, int] | None = None,
    pool_molecules: str | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    class_settings: Mapping[str, Any] | None = None,
    curriculum_summary: Mapping[str, Any] | None = None,
    scoring_info: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    num_parameters: int | None = None,
    hardware: str | None = None,
    recipe_command: str | None = None,
    tags: Sequence[str] = (),
    license: str = "apache-2.0",
    template_path: str | os.PathLike | None = None,
    data_description: str | None = None,
    anchor_metrics: Mapping[str, Mapping[str, float]] | None = None,
    checkpoint_selection: str | None = None,
) -> ModelCard:
    """Renders the model card of a CLASS checkpoint.

    Args:
        model_type (str): the config's ``model_type`` (``class_orma``, ``class_aman``, ``class_dual_encoder``, or a
            user backbone's).
        test_metrics (Mapping): pool -> retrieval metrics of the test split (see :func:`eval_results_from_metrics`).
        model_id (str | None): the Hub id the checkpoint is published under (used in the usage snippet and as the
            ``model-index`` name); a placeholder when None.
        base_model (str | None): where the text encoder (or the whole model) was initialised from; written to the
            metadata only when it is a Hub id.
        dataset_id (str): the dataset's Hub id (or name); a Hub id also goes to ``datasets``.
        dataset_name (str): a readable dataset name.
        split (str): the evaluated split.
        num_test_pairs (int | None): size of the evaluated split.
        data_sizes (Mapping | None): rows per split of the training data.
        pool_molecules (str | None): the extra candidate-molecule table of the ``all`` pool, if any (Markdown: a
            path in backticks, or words).
        hyperparameters (Mapping | None): training hyperparameters shown in a table.
        class_settings (Mapping | None): the CLASS settings shown in a table.
        curriculum_summary (Mapping | None): sample passes, steps and seconds (see :func:`savings_lines`).
        scoring_info (Mapping | None): what the difficulty scoring reported.
        baseline (Mapping | None): a measured baseline run for the wall-clock saving.
        num_parameters (int | None): the model's parameter count.
        hardware (str | None): where it was trained (e.g. "1 x NVIDIA H100, bf16").
        recipe_command (str | None): the command that trained it.
        tags (Sequence[str]): tags added to :data:`DEFAULT_TAGS` and the backbone's name.
        license (str): the checkpoint's license.
        template_path (str | os.PathLike | None): a Jinja Markdown template (default: the packaged
            ``class_hf/templates/model_card.md``).
        data_description (str | None): where the pairs come from and how they were split, in a sentence.
        anchor_metrics (Mapping | None): pool -> test metrics of the linear anchor fitted on the same split (shown
            in their own table; not part of the ``model-index``).
        checkpoint_selection (str | None): which weights the checkpoint holds (e.g. the best validation epoch).

    Returns:
        ModelCard: the card; ``card.save(path)`` or ``card.push_to_hub(repo_id)``.
    """
    if not test_metrics:
        raise ValueError("`test_metrics` is empty: a card is only written for a checkpoint with measured results.")
    backbone_name, backbone_citation = BACKBONE_CITATIONS.get(
        model_type, (model_type, "% no citation is known for this backbone")
    )
    name = model_id or "ORG/NAME"
    backbone_tag = model_type.removeprefix("class_").replace("_", "-")
    all_tags = list(dict.fromkeys([*DEFAULT_TAGS, backbone_tag, *tags]))
    card_data = ModelCardData(
        language="en",
        license=license,
        library_name=LIBRARY_NAME,
        tags=all_tags,
        datasets=[dataset_id] if is_hub_id(dataset_id) else None,
        base_model=base_model if is_hub_id(base_model) else None,
        metrics=["mrr", "hits@1", "hits@10", "mean_rank"],
        pipeline_tag="feature-extraction",
        model_name=name,
        eval_results=eval_results_from_metrics(
            test_metrics, dataset_id=dataset_id, dataset_name=dataset_name, split=split
        ),
    )
    sizes = ", ".join(f"{n:,} {s}" for s, n in (data_sizes or {}).items()) or "n/a"
    card = ModelCard.from_template(
        card_data,
        template_str=_load_template(template_path),
        title=f"CLASS ({backbone_name}){'' if model_id is None else ': ' + model_id}",
        backbone_name=backbone_name,
        model_type=model_type,
        model_id=name,
        base_model=base_model,
        recipe_command=recipe_command,
        dataset_name=dataset_name,
        split=split,
        num_test_pairs=None if num_test_pairs is None else f"{num_test_pairs:,}",
        pool_molecules=pool_molecules,
        results=_result_rows(test_metrics),
        num_parameters="n/a" if num_parameters is None else f"{num_parameters:,}",
        data_sizes=sizes,
        hardware=hardware or "n/a",
        hyperparameters=[(k, _fmt(v)) for k, v in (hyperparameters or {}).items()],
        class_settings=[(k, _fmt(v)) for k, v in (class_settings or {}).items()],
        savings=savings_lines(curriculum_summary, scoring_info, baseline),
        class_citation=CLASS_CITATION,
        backbone_citation=backbone_citation,
        data_description=data_description,
        anchor_results=_result_rows(anchor_metrics) if anchor_metrics else None,
        checkpoint_selection=checkpoint_selection,
    )
    return card


def _fields(args: Any, names: Sequence[str]) -> dict[str, Any]:
    out = {}
    for name in names:
        value = getattr(args, name, None)
        if value is None or (name in ("bf16", "fp16") and not value) or (name == "max_steps" and value == -1):
            continue
        out[name] = value
    return out


def model_card_from_trainer(
    trainer: Any, *, test_metrics: Mapping[str, Mapping[str, float]], **kwargs: Any
) -> ModelCard:
    """:func:`build_model_card` with the model, hyperparameters, CLASS settings and savings read from ``trainer``.

    Args:
        trainer: a finished :class:`~class_hf.trainer.CurriculumTrainer` (or any ``Trainer``; the curriculum parts are
            then left out).
        test_metrics (Mapping): pool -> test retrieval metrics.
        **kwargs: the other arguments of :func:`build_model_card` (they override what is read from the trainer).

    Returns:
        ModelCard: the card.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    config = getattr(model, "config", None)
    args = trainer.args
    hyperparameters = _fields(args, HYPERPARAMETER_FIELDS)
    if getattr(model, "text_encoder_frozen", False):  # a rate of a frozen encoder would read as if it trained
        hyperparameters.pop("text_encoder_learning_rate", None)
        hyperparameters["text_encoder"] = "frozen"
    world = getattr(args, "world_size", 1)
    hyperparameters["num_processes"] = world
    accumulation = args.gradient_accumulation_steps
    hyperparameters["total_train_batch_size"] = args.per_device_train_batch_size * world * accumulation
    summary = trainer.curriculum_summary() if hasattr(trainer, "curriculum_summary") else None
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    device = getattr(args, "device", None)
    hardware = f"{world} x {getattr(device, 'type', 'cpu')}, {precision}"
    values: dict[str, Any] = {
        "model_type": getattr(config, "model_type", type(model).__name__),
        "base_model": getattr(config, "text_encoder_name_or_path", None),
        "hyperparameters": hyperparameters,
        "class_settings": _fields(args, CLASS_FIELDS) if hasattr(args, "curriculum") else {},
        "curriculum_summary": summary,
        "scoring_info": getattr(trainer, "scoring_info", None),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "hardware": hardware,
    }
    values.update(kwargs)
    return build_model_card(test_metrics=test_metrics, **values)
