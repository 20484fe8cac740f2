"""What a recipe run writes into ``output_dir`` and reports: test metrics, ``metrics.json``, the scored dataset,
plots, the model card, and the summary the recipes print.

A resumed run (``--resume_from_checkpoint``) writes the same artifacts as an uninterrupted one: the scored dataset is
written as soon as the training split carries its difficulty columns (when the trainer builds its dataloader, before
the first step), so the interrupted part has already written it when the resumed part, whose difficulty comes from the
checkpoint, finishes; the run's totals come from the trainer's ``curriculum_summary()`` and history, which the
checkpoint carries across the parts.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..data.sources import is_hub_id
from ..evaluation.evaluator import RetrievalEvaluator, metrics_by_pool
from ..models.registry import get_backbone
from ..trainer import CurriculumTrainer

if TYPE_CHECKING:
    from .run import RecipeRun

logger = logging.getLogger(__name__)

__all__ = [
    "SCORED_DATASET_DIR",
    "RecipeTrainer",
    "evaluate_test_pools",
    "test_pool_evaluator",
    "format_summary",
    "save_scored_dataset",
    "run_report",
    "write_metrics",
    "write_plots",
]

SCORED_DATASET_DIR = "scored_dataset"


# ------------------------------------------------------------------------------------------------------- test metrics
def test_pool_evaluator(
    data, split: str, collator, *, pool_molecules: str | None = None, batch_size: int = 64, chunk_size: int = 1024
) -> RetrievalEvaluator:
    """The :class:`~class_hf.evaluation.evaluator.RetrievalEvaluator` of ``data[split]`` in both candidate pools (see
    :func:`evaluate_test_pools`); one evaluator serves several models, featurizing the candidates once."""
    from ..data.chebi20 import load_chebi20_molecules

    extras = [part for name, part in data.items() if name != split]
    if pool_molecules:
        extras.append(load_chebi20_molecules(pool_molecules))
    if not extras:
        logger.warning("No other split and no `pool_molecules`: the 'all' pool equals the 'split' pool; not reported.")
    return RetrievalEvaluator(
        data[split],
        data_collator=collator,
        extra_molecules=extras or None,
        batch_size=batch_size,
        chunk_size=chunk_size,
    )


def evaluate_test_pools(
    model: torch.nn.Module,
    data,
    split: str,
    collator,
    *,
    pool_molecules: str | None = None,
    batch_size: int = 64,
    chunk_size: int = 1024,
    evaluator: RetrievalEvaluator | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Retrieval metrics of ``data[split]`` in both candidate pools, through
    :class:`~class_hf.evaluation.evaluator.RetrievalEvaluator`.

    ``split``: the split's own molecules / texts. ``all``: also those of every other split and the molecules of
    ``pool_molecules`` (a CID/SMILES table such as ChEBI-20's ``cid_split_smiles.tsv``), each CID once.

    Args:
        model (torch.nn.Module): the backbone.
        data (DatasetDict): the splits.
        split (str): the evaluated split.
        collator: the batch collator of the pairs.
        pool_molecules (str | None): further candidate molecules.
        batch_size (int): encoding batch size.
        chunk_size (int): queries scored at a time.
        evaluator (RetrievalEvaluator | None): an evaluator of :func:`test_pool_evaluator` to reuse (the arguments
            above but ``model`` are then unused).

    Returns:
        tuple[dict, dict]: ``{"split": metrics, "all": metrics}`` (``all`` only when there are further candidates)
        and the pool sizes (``num_queries``, ``all_num_candidate_molecules``, ``all_num_candidate_texts``).
    """
    if evaluator is None:
        evaluator = test_pool_evaluator(
            data, split, collator, pool_molecules=pool_molecules, batch_size=batch_size, chunk_size=chunk_size
        )
    metrics = evaluator(model)
    num_queries = evaluator.pool_sizes["num_queries"]
    sizes = {
        "num_queries": num_queries,
        "all_num_candidate_molecules": evaluator.pool_sizes.get("all_num_candidate_molecules", num_queries),
        "all_num_candidate_texts": evaluator.pool_sizes.get("all_num_candidate_texts", num_queries),
    }
    return metrics_by_pool(metrics), sizes


def run_report(run: RecipeRun, model: torch.nn.Module) -> dict[str, Any]:
    """What every run reports: the setting and the test metrics in both pools (empty without a test split), and with
    ``--linear_anchor`` those of the linear anchor fitted on the same split (``linear_anchor``)."""
    data_args, training_args = run.data_args, run.training_args
    test, sizes, anchor = {}, {}, None
    if data_args.test_split in run.data:
        evaluator = test_pool_evaluator(
            run.data,
            data_args.test_split,
            run.collator,
            pool_molecules=data_args.pool_molecules,
            batch_size=training_args.per_device_eval_batch_size,
            chunk_size=training_args.eval_chunk_size,
        )
        logger.info("Test metrics of the model (%d pairs, both pools).", len(run.data[data_args.test_split]))
        test, sizes = evaluate_test_pools(model, run.data, data_args.test_split, run.collator, evaluator=evaluator)
        if run.model_args.linear_anchor:
            anchor = _linear_anchor_report(run, model, evaluator)
    else:
        logger.warning("The data has no %r split: no test metrics.", data_args.test_split)
    report = {
        "backbone": run.backbone,
        "model_type": getattr(model.config, "model_type", None),
        "model_name_or_path": run.model_args.model_name_or_path,
        "dataset": data_args.dataset_name_or_path,
        "data_sizes": {split: len(part) for split, part in run.data.items()},
        "test_split": data_args.test_split,
        "test": test,
        "test_pool_sizes": sizes,
        "num_processes": training_args.world_size,
        "mixed_precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "no",
        "command": run.command,
    }
    if anchor is not None:
        report["linear_anchor"] = anchor
    return report


def _linear_anchor_report(run: RecipeRun, model: torch.nn.Module, evaluator: RetrievalEvaluator) -> dict[str, Any]:
    """The linear anchor fitted on the run's training split (early-stopped on validation), ranked by ``evaluator``."""
    from .anchor import fit_linear_anchor

    data_args = run.data_args
    anchor, info = fit_linear_anchor(
        model,
        run.tokenizer,
        run.data[data_args.train_split],
        run.data.get(data_args.validation_split),
        seed=run.training_args.seed,
        max_length=getattr(run.collator, "max_length", run.model_args.max_length),
    )
    test, _ = evaluate_test_pools(anchor, run.data, data_args.test_split, run.collator, evaluator=evaluator)
    return {"test": test, "fit": info}


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def write_metrics(run: RecipeRun, results: dict[str, Any]) -> None:
    """Writes ``results`` (with the run's total seconds) to ``output_dir/metrics.json``."""
    results.setdefault("seconds", {})["total"] = time.perf_counter() - run.started
    output_dir = run.training_args.output_dir
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=_json_default)


def dataset_id(run: RecipeRun) -> str:
    """The dataset's Hub id for the model card: ``dataset_id``, else the source when it is a Hub id."""
    data_args = run.data_args
    if data_args.dataset_id:
        return data_args.dataset_id
    source = data_args.dataset_name_or_path or ""
    return source if is_hub_id(source) else "chebi-20"


# ------------------------------------------------------------------------------------------------------- trainer
class RecipeTrainer(CurriculumTrainer):
    """:class:`CurriculumTrainer` that writes the recipe's outputs: the scored dataset and the class-hf model card.

    - ``get_train_dataloader`` writes ``scored_dataset/`` (once, on the main process) as soon as the training split
      carries its difficulty columns, i.e. before the first step, so a run interrupted later has it already;
    - ``create_model_card`` (called by ``Trainer.push_to_hub`` before uploading ``output_dir``) writes the card of
      the run once the recipe has set :attr:`card_kwargs` (test metrics, dataset, command).
    """

    card_kwargs: dict[str, Any] | None = None
    run: RecipeRun | None = None
    scored_dataset_path: str | None = None

    def get_train_dataloader(self):
        dataloader = super().get_train_dataloader()
        if self.run is not None and self.scored_dataset_path is None and self.is_world_process_zero():
            self.scored_dataset_path = save_scored_dataset(self.run, self)
        return dataloader

    def create_model_card(self, **kwargs: Any) -> None:
        if self.card_kwargs is None:
            return super().create_model_card(**kwargs)
        if not self.is_world_process_zero():
            return None
        from ..model_card import model_card_from_trainer

        card = model_card_from_trainer(self, **self.card_kwargs)
        card.save(os.path.join(self.args.output_dir, "README.md"))
        return None


# ------------------------------------------------------------------------------------------------------- scored data
def save_scored_dataset(run: RecipeRun, trainer: CurriculumTrainer) -> str | None:
    """Writes the training split with its difficulty columns (and the other splits) to ``scored_dataset/``.

    Returns:
        str | None: the folder, or None when the run has no difficulty columns to write (or does not save them).
    """
    from datasets import DatasetDict

    from ..curriculum.difficulty import DIFFICULTY_COLUMN, difficulty_summary
    from ..curriculum.provider import SAMPLE_IDX
    from ..data.graphs import FINGERPRINT_COLUMNS, GRAPH_COLUMNS
    from ..data.text_features import TEXT_FEATURES_COLUMN
    from ..hub import save_scored_dataset as save_with_card
    from ..hub import scored_dataset_card

    data_args = run.data_args
    train = trainer.train_dataset
    if not data_args.save_scored_dataset or train is None or DIFFICULTY_COLUMN not in train.column_names:
        return None
    drop = {SAMPLE_IDX, *GRAPH_COLUMNS, *FINGERPRINT_COLUMNS, TEXT_FEATURES_COLUMN}

    def lean(part):
        return part.remove_columns([c for c in part.column_names if c in drop])

    splits = {name: lean(part) for name, part in run.data.items() if name != data_args.train_split}
    scored = DatasetDict({data_args.train_split: lean(train), **splits})
    info = {**(trainer.scoring_info or {"source": "precomputed column"}), **difficulty_summary(train)}
    model = trainer.accelerator.unwrap_model(trainer.model)
    scorer = None
    if info.get("source") == "warmup":
        scorer = f"a warm-up copy of the {getattr(model.config, 'model_type', type(model).__name__)} being trained"
    card = scored_dataset_card(
        info, split=data_args.train_split, command=run.command, source=data_args.dataset_name_or_path, scorer=scorer
    )
    return save_with_card(scored, os.path.join(trainer.args.output_dir, SCORED_DATASET_DIR), card)


def _earlier_scored_dataset(run: RecipeRun, trainer: CurriculumTrainer) -> str | None:
    """The ``scored_dataset/`` the interrupted part of a resumed run wrote, when it holds this run's training pairs."""
    from datasets import load_from_disk

    from ..data.sources import is_saved_dataset

    path = os.path.join(trainer.args.output_dir, SCORED_DATASET_DIR)
    if not run.training_args.resume_from_checkpoint or not is_saved_dataset(path):
        return None
    train_split = run.data_args.train_split
    earlier = load_from_disk(path)
    train = run.data[train_split]
    same = train_split in earlier and len(earlier[train_split]) == len(train)
    if same and "cid" in train.column_names:
        same = earlier[train_split]["cid"] == train["cid"]
    if not same:
        logger.warning("%s does not hold this run's training pairs; no scored dataset is reported.", path)
        return None
    return path


def scored_dataset_of(run: RecipeRun, trainer: RecipeTrainer) -> str | None:
    """The run's ``scored_dataset/`` folder: written by this process, or by the interrupted part of a resumed run."""
    path = trainer.scored_dataset_path or save_scored_dataset(run, trainer) or _earlier_scored_dataset(run, trainer)
    if path is None and run.data_args.save_scored_dataset:
        logger.info("The run used no difficulty column; no scored dataset is written.")
    return path


# ------------------------------------------------------------------------------------------------------- plots
MAX_MARKED_STAGES = 10  # more stage switches than this (continuous pacing) are not drawn


def stage_boundaries(trainer: CurriculumTrainer) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """Where the curriculum's stages begin: ``(by epoch, by optimizer step)``, each ``[(x, "stage k (f %)"), ...]``.

    By epoch, stage ``k`` beginning with (0-based) epoch ``e`` is marked at ``x = e``: after the ``e``-th validation.
    Empty without a curriculum, or with more than :data:`MAX_MARKED_STAGES` switches (continuous pacing).
    """
    plan = trainer.plan
    if plan is None or not trainer.args.curriculum_enabled:
        return [], []
    starts = [e for e in range(1, len(plan.stages)) if plan.stages[e] != plan.stages[e - 1]]
    if len(starts) > MAX_MARKED_STAGES:
        return [], []
    labels = [f"stage {plan.stages[e] + 1} ({plan.fractions[e]:.0%})" for e in starts]
    by_epoch = [(float(e), label) for e, label in zip(starts, labels, strict=True)]
    by_step = [(float(plan.first_step(e)), label) for e, label in zip(starts, labels, strict=True)]
    return by_epoch, by_step


def write_plots(run: RecipeRun, trainer: CurriculumTrainer) -> list[str]:
    """The PNG plots of the run: training-sample ratio per epoch (the baseline's line marked as planned), and the loss
    and validation MRR curves with the curriculum's stage switches marked."""
    from ..evaluation.plots import plot_curves, plot_sample_ratio

    out = Path(trainer.args.output_dir)
    name = get_backbone(run.backbone).display_name
    written = []
    history = trainer.curriculum_history
    by_epoch, by_step = stage_boundaries(trainer)
    if history:
        fractions = [float(r["fraction"]) for r in history]
        arms = {f"CLASS ({name})": fractions} if trainer.args.curriculum_enabled else {f"{name} (all data)": fractions}
        planned = []
        if trainer.args.curriculum_enabled:
            planned.append("without CLASS: all pairs")
            arms[planned[-1]] = [1.0] * len(fractions)
        written.append(
            plot_sample_ratio(arms, out / "sample_ratio.png", title="Training samples used per epoch", planned=planned)
        )
    logs = trainer.state.log_history
    loss = [(h["step"], h["loss"]) for h in logs if "loss" in h and "step" in h]
    if loss:
        written.append(
            plot_curves(
                {"training loss": loss},
                out / "loss.png",
                "optimizer step",
                "loss",
                "Training loss",
                boundaries=by_step,
            )  # fmt: skip
        )
    curves = {
        label: [(h["epoch"], h[key]) for h in logs if key in h and "epoch" in h]
        for label, key in (("text→molecule", "eval_t2m_mrr"), ("molecule→text", "eval_m2t_mrr"))
    }
    curves = {label: points for label, points in curves.items() if points}
    if curves:
        written.append(
            plot_curves(
                curves,
                out / "validation_mrr.png",
                "epoch",
                "MRR",
                "Validation MRR (pool: split)",
                boundaries=by_epoch,
                integer_x=True,
            )  # fmt: skip
        )
    return [str(p) for p in written]


# ------------------------------------------------------------------------------------------------------- summary
def format_summary(results: Mapping[str, Any]) -> str:
    """A few lines for the recipes to print: the setting, then a table of the test MRR and Hits@1 of both directions
    in both pools (with ``--linear_anchor``, the anchor's row under the model's), then the cost."""
    processes = results["num_processes"]
    lines = [
        f"{results['backbone']}: {processes} process{'es' if processes != 1 else ''}, "
        f"mixed precision: {results['mixed_precision']}"
    ]
    rows = [(results["backbone"], results.get("test") or {})]
    if results.get("linear_anchor"):
        rows.append(("linear anchor", results["linear_anchor"]["test"]))
    sizes = results.get("test_pool_sizes") or {}
    if rows[0][1]:
        candidates = {"split": sizes.get("num_queries"), "all": sizes.get("all_num_candidate_molecules")}
        lines.append(
            f"test metrics ({sizes.get('num_queries', '?')} pairs; candidates per query: "
            + ", ".join(f"{pool} pool {n:,}" for pool, n in candidates.items() if n and pool in rows[0][1])
            + ")"
        )
        width = max(len(name) for name, _ in rows)
        lines.append(f"{'pool':<6} {'model':<{width}}  text→molecule MRR  Hits@1   molecule→text MRR  Hits@1")
        for pool in rows[0][1]:
            for name, by_pool in rows:
                m = by_pool.get(pool)
                if m:
                    lines.append(
                        f"{pool:<6} {name:<{width}}  {m['t2m_mrr']:>17.4f}  {m['t2m_hits@1']:.4f}   "
                        f"{m['m2t_mrr']:>17.4f}  {m['m2t_hits@1']:.4f}"
                    )
    curriculum = results.get("curriculum") or {}
    if curriculum.get("full_sample_passes"):
        lines.append(
            f"sample passes {curriculum['samples_seen']} of {curriculum['full_sample_passes']}; "
            f"{results['seconds']['total']:.1f} s in all"
        )
    return "\n".join(lines)
