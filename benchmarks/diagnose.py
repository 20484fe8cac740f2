"""Why a backbone trails the frozen-feature linear model: one change at a time, on validation only.

Every row trains one backbone of ``class_vs_baseline.py`` without curriculum (the baseline arm, seed 0, the same
re-split of the bundled ChEBI-20 pairs and the same frozen all-MiniLM-L6-v2) with ONE change against a reference
("today's" settings) and reports its best validation MRR (mean of both directions) and the epoch it was reached. The
last rows combine the changes that helped. No test metric is computed here.

- ``--backbone dual_encoder``: today = the earlier dual encoder (last-layer mean of 128 text tokens, linear text
  projection on raw features, the fingerprint added inside the molecule tower, batch 64, learning rate 1e-3 with
  linear decay, weight decay 1e-4, 12 epochs); the combined row is the benchmark's current dual encoder.
- ``--backbone orma``: today = the benchmark's earlier ORMA (last-layer mean sentence vector, global grain weight
  0.3, batch 128, learning rate 5e-4, 128 tokens), screened at 12 epochs; the combined row runs 20.

Run (about an hour each on 2 CPU cores; ``--rows`` picks rows by name)::

    python benchmarks/diagnose.py --backbone dual_encoder --jobs 2
    python benchmarks/diagnose.py --backbone orma --jobs 2

``--study curriculum`` runs arms of ``class_vs_baseline.py`` (any of its backbones) with curriculum settings changed,
for the seeds given by ``--seeds``; each row's "CPU to baseline best" compares it with the baseline of the same seed,
and ``diagnose_curriculum_<backbone>.png`` draws every seed's curve against its baseline's::

    python benchmarks/diagnose.py --study curriculum --rows baseline class class_paced_batch --seeds 0 1 2 --jobs 2
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

HERE = Path(__file__).resolve().parent


@functools.cache
def _benchmark():
    """The sibling ``class_vs_baseline.py`` (its data preparation and run), loaded from its file once per process."""
    spec = importlib.util.spec_from_file_location("class_vs_baseline", HERE / "class_vs_baseline.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


DUAL_TODAY_MODEL = {
    "text_pooling_layers": None,
    "text_input_norm": False,
    "fingerprint_fusion": "hidden",
}
DUAL_TODAY_TRAINING = {
    "per_device_train_batch_size": 64,
    "learning_rate": 1e-3,
    "lr_scheduler_type": "linear",
    "weight_decay": 1e-4,
    "num_train_epochs": 12,
}
PLATEAU = {"num_train_epochs": 100}  # with early stopping (patience) instead of a fixed budget

# name -> (what changes, model overrides, training overrides, token limit); applied on top of "today".
DUAL_ROWS: dict[str, tuple[str, dict[str, Any], dict[str, Any], int | None]] = {
    "today": ("today's dual encoder (12 epochs)", {}, {}, None),
    "plateau": ("train until validation plateaus (patience 8)", {}, PLATEAU, None),
    "batch_256": ("batch 256 (in-batch negatives)", {}, {"per_device_train_batch_size": 256}, None),
    "batch_1024": ("batch 1024 (in-batch negatives)", {}, {"per_device_train_batch_size": 1024}, None),
    "tokens_256": ("text token limit 256", {}, {}, 256),
    "tokens_512": ("text token limit 512", {}, {}, 512),
    "all_layers": ("text: the 6 MiniLM layers' means concatenated", {"text_pooling_layers": 6}, {}, None),
    "standardise": ("text features standardised (running statistics)", {"text_input_norm": True}, {}, None),
    "mlp_head": ("text head: MLP instead of linear", {"text_head": "mlp", "text_head_dropout": 0.1}, {}, None),
    "fp_output": ("fingerprint map straight into the shared space", {"fingerprint_fusion": "output"}, {}, None),
    "no_fp": ("no fingerprint branch", {"use_fingerprint": False}, {}, None),
    "gnn_256": ("GNN width 256", {"gnn_hidden_size": 256}, {}, None),
    "gnn_5": ("GNN depth 5", {"gnn_num_layers": 5}, {}, None),
    "dropout_0.3": ("GNN dropout 0.3", {"gnn_dropout": 0.3}, {}, None),
    "wd_0": ("weight decay 0", {}, {"weight_decay": 0.0}, None),
    "wd_0.05": ("weight decay 0.05", {}, {"weight_decay": 0.05}, None),
    "lr_3e-4": ("learning rate 3e-4", {}, {"learning_rate": 3e-4}, None),
    "constant": ("constant learning rate", {}, {"lr_scheduler_type": "constant_with_warmup"}, None),
}
NEW_MODEL = {"text_pooling_layers": 6, "text_input_norm": True, "fingerprint_fusion": "output"}
NEW_TRAINING = {
    **PLATEAU,
    "per_device_train_batch_size": 256,
    "learning_rate": 3e-4,
    "lr_scheduler_type": "constant_with_warmup",
    "weight_decay": 0.0,
}
DUAL_COMBINED: dict[str, tuple[str, dict[str, Any], dict[str, Any], int]] = {
    "new_default": (
        "all of: 6 layers, standardised, fp into the shared space, batch 256, lr 3e-4 constant, "
        "wd 0, until plateau, 256 tokens",
        NEW_MODEL,
        NEW_TRAINING,
        256,
    ),  # fmt: skip
    "new_default_1024": (
        "new default with batch 1024",
        NEW_MODEL,
        {**NEW_TRAINING, "per_device_train_batch_size": 1024},
        256,
    ),
    "new_default_mlp": (
        "new default with an MLP text head",
        {**NEW_MODEL, "text_head": "mlp", "text_head_dropout": 0.1},
        NEW_TRAINING,
        256,
    ),
}

# ORMA: "today" is the benchmark's earlier ORMA configuration, screened at 12 epochs (constant learning rate, so the
# first 12 epochs of a longer run are the same run).
ORMA_TODAY_MODEL = {"sentence_layers": 1, "text_input_norm": False, "global_weight": 0.3, "mid_weight": 0.2}
ORMA_TODAY_TRAINING = {"per_device_train_batch_size": 128, "learning_rate": 5e-4, "num_train_epochs": 12}
ORMA_ROWS: dict[str, tuple[str, dict[str, Any], dict[str, Any], int | None]] = {
    "today": ("today's ORMA (12 epochs)", {}, {}, None),
    "global_1": ("global grain weight 1.0 (mid 0.2, local 0.5)", {"global_weight": 1.0}, {}, None),
    "global_only": ("global grain only (mid and local weights 0)", {"mid_weight": 0.0, "local_weight": 0.0}, {}, None),
    "sentence_3": ("sentence vector: means of the 3 cached layers", {"sentence_layers": 3}, {}, None),
    "standardise": ("sentence features standardised", {"text_input_norm": True}, {}, None),
    "batch_256": ("batch 256 (in-batch negatives)", {}, {"per_device_train_batch_size": 256}, None),
    "lr_3e-4": ("learning rate 3e-4", {}, {"learning_rate": 3e-4}, None),
}
ORMA_NEW_MODEL = {"sentence_layers": 3, "text_input_norm": True, "global_weight": 1.0, "mid_weight": 0.2}
ORMA_COMBINED: dict[str, tuple[str, dict[str, Any], dict[str, Any], int | None]] = {
    "new_default": (
        "all of: sentence from 3 layers, standardised, global weight 1.0, until plateau (at most 30 epochs)",
        ORMA_NEW_MODEL,
        {**ORMA_TODAY_TRAINING, "num_train_epochs": 30},
        128,
    ),
    "new_default_global_3": (
        "new default with global grain weight 3.0 (16 epochs)",
        {**ORMA_NEW_MODEL, "global_weight": 3.0},
        {**ORMA_TODAY_TRAINING, "num_train_epochs": 16},
        128,
    ),
    "new_default_global_only": (
        "new default with the global grain only (16 epochs)",
        {**ORMA_NEW_MODEL, "mid_weight": 0.0, "local_weight": 0.0},
        {**ORMA_TODAY_TRAINING, "num_train_epochs": 16},
        128,
    ),
    "new_default_cosine": (
        "new default with cosine global logits (learnable scale from 1/0.07), until plateau (at most 30 epochs)",
        {**ORMA_NEW_MODEL, "global_similarity": "cosine"},
        {**ORMA_TODAY_TRAINING, "num_train_epochs": 30},
        128,
    ),
    "new_default_cosine_256": (
        "new default with cosine global logits and batch 256, until plateau (at most 30 epochs)",
        {**ORMA_NEW_MODEL, "global_similarity": "cosine"},
        {**ORMA_TODAY_TRAINING, "num_train_epochs": 30, "per_device_train_batch_size": 256},
        128,
    ),
}
TABLES = {
    "dual_encoder": (DUAL_TODAY_MODEL, DUAL_TODAY_TRAINING, 128, DUAL_ROWS, DUAL_COMBINED),
    "orma": (ORMA_TODAY_MODEL, ORMA_TODAY_TRAINING, 128, ORMA_ROWS, ORMA_COMBINED),
}

# The curriculum study (``--study curriculum``): the benchmark's current backbone and epochs, seeds 0.. ; each row an
# arm of class_vs_baseline.py with curriculum settings changed. "CPU to baseline best" is where a row's validation
# MRR first reaches the baseline row's best, as a share of the baseline's training CPU seconds (scoring included).
HALF_ROOT = {"pacing": "root", "pacing_saturation": 0.5}
# A warm-up scorer of 82 optimizer steps instead of 6 (a quarter of the pairs at batch 256 for one epoch): it ranks the
# training pairs at MRR 0.12 instead of 0.01 (`scoring_info` of the result files).
WARMUP_B32 = {"difficulty_warmup_batch_size": 32, "difficulty_warmup_epochs": 2.0}
CURRICULUM_ROWS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "baseline": ("baseline (no curriculum)", "baseline", {}),
    "class": ("CLASS defaults (4 stages, lr multiplier 0.5 -> 1)", "class", {}),
    "class_gamma_1": ("CLASS, no lr multiplier (gamma 1)", "class", {"intensity_gamma_min": 1.0}),
    "class_root_half": (
        "CLASS, root pacing reaching all data at half the epochs, gamma 1",
        "class",
        {**HALF_ROOT, "intensity_gamma_min": 1.0},
    ),
    "class_fingerprint": (
        "CLASS, difficulty from the fingerprint scorer (frozen text features + Morgan counts, out of fold)",
        "class",
        {"difficulty_source": "fingerprint"},
    ),
    "class_warmup_longer": (
        "CLASS, warm-up scorer on half of the pairs for 3 epochs",
        "class",
        {"difficulty_warmup_fraction": 0.5, "difficulty_warmup_epochs": 3.0},
    ),
    "class_warmup_longer_root_half": (
        "CLASS, warm-up scorer on half of the pairs for 3 epochs, root pacing reaching all data at half the epochs, "
        "gamma 1",
        "class",
        {"difficulty_warmup_fraction": 0.5, "difficulty_warmup_epochs": 3.0, **HALF_ROOT, "intensity_gamma_min": 1.0},
    ),
    "class_root_half_warmup_b32": (
        "CLASS, root pacing reaching all data at half the epochs, gamma 1, warm-up scorer at batch 32 for 2 epochs",
        "class",
        {**HALF_ROOT, "intensity_gamma_min": 1.0, **WARMUP_B32},
    ),
    "class_root_half_sharper": (
        "CLASS, root pacing reaching all data at half the epochs, logits sharpened x1 to x1.5 over the curriculum",
        "class",
        {**HALF_ROOT, "intensity_target": "temperature", "intensity_gamma_min": 1.0, "intensity_gamma_max": 1.5},
    ),
    "class_warmup_b32": (
        "CLASS, warm-up scorer at batch 32 for 2 epochs",
        "class",
        WARMUP_B32,
    ),
    "hard_root_half": (
        "hard pairs first (anti-curriculum), root pacing reaching all data at half the epochs, gamma 1",
        "class",
        {**HALF_ROOT, "intensity_gamma_min": 1.0, "curriculum": "hard_first"},
    ),
    "random_root_half": (
        "random subsets, root pacing reaching all data at half the epochs, gamma 1",
        "random_subset",
        {**HALF_ROOT, "intensity_gamma_min": 1.0},
    ),
    "class_root_half_cost": (
        "CLASS, root pacing by atoms (each pool holds its share of the molecules' atoms) reaching all data at half "
        "the epochs, gamma 1",
        "class",
        {**HALF_ROOT, "intensity_gamma_min": 1.0, "pacing_cost_column": "num_nodes"},
    ),
    "random_root_half_cost": (
        "random subsets, root pacing by atoms reaching all data at half the epochs, gamma 1",
        "random_subset",
        {**HALF_ROOT, "intensity_gamma_min": 1.0, "pacing_cost_column": "num_nodes"},
    ),
    "class_root_half_paced_batch": (
        "CLASS, root pacing reaching all data at half the epochs, gamma 1, batch size paced with the pool",
        "class",
        {**HALF_ROOT, "intensity_gamma_min": 1.0, "pace_batch_size": True},
    ),
    "random_root_half_paced_batch": (
        "random subsets, root pacing reaching all data at half the epochs, gamma 1, batch size paced with the pool",
        "random_subset",
        {**HALF_ROOT, "intensity_gamma_min": 1.0, "pace_batch_size": True},
    ),
    "class_paced_batch": (
        "CLASS, batch size paced with the pool (as many optimizer steps per epoch as a full one)",
        "class",
        {"pace_batch_size": True},
    ),
    "class_warmup_longer_paced_batch": (
        "CLASS, warm-up scorer on half of the pairs for 3 epochs, batch size paced with the pool",
        "class",
        {"difficulty_warmup_fraction": 0.5, "difficulty_warmup_epochs": 3.0, "pace_batch_size": True},
    ),
    "random_paced_batch": (
        "random subsets, batch size paced with the pool",
        "random_subset",
        {"pace_batch_size": True},
    ),
    # The easiest pairs are the larger molecules ("What the first pools hold" in the docs): stratified pools keep the
    # easy-first order within each quarter of molecule size, and the training set's mix of sizes in every pool.
    "class_strata": (
        "CLASS defaults, pools stratified by atoms (the easiest of each size quarter)",
        "class",
        {"curriculum_strata_column": "num_nodes", "curriculum_num_strata": 4},
    ),
    "random": ("random subsets, the pools of CLASS's defaults", "random_subset", {}),
    # Difficulty used beyond ordering: once pairs are learned, leave part of them out (InfoBatch, ICLR 2024). Half of
    # each pool's easier half by the pairs' recent training losses is left out of epochs 2 to 25 of 30 (ORMA: 2 to 16
    # of 20), the kept easier pairs weighted x2, the last eighth of the epochs on whole pools.
    "baseline_prune": (
        "baseline, learned pairs pruned (half of each epoch's easier half)",
        "baseline",
        {"prune_fraction": 0.5},
    ),
    "baseline_prune_0.3": (
        "baseline, learned pairs pruned (0.3 of each epoch's easier half)",
        "baseline",
        {"prune_fraction": 0.3},
    ),
    "random_root_half_prune_0.3": (
        "random subsets, root pacing reaching all data at half the epochs, gamma 1, learned pairs pruned (0.3 of the "
        "easier half)",
        "random_subset",
        {**HALF_ROOT, "intensity_gamma_min": 1.0, "prune_fraction": 0.3},
    ),
    "class_prune": ("CLASS defaults, learned pairs pruned", "class", {"prune_fraction": 0.5}),
    "class_root_half_prune": (
        "CLASS, root pacing reaching all data at half the epochs, gamma 1, learned pairs pruned",
        "class",
        {**HALF_ROOT, "intensity_gamma_min": 1.0, "prune_fraction": 0.5},
    ),
    "class_root_half_prune_0.3": (
        "CLASS, root pacing reaching all data at half the epochs, gamma 1, learned pairs pruned (0.3 of the easier "
        "half)",
        "class",
        {**HALF_ROOT, "intensity_gamma_min": 1.0, "prune_fraction": 0.3},
    ),
}


def _budget_rows(epochs: int) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Rows of a shorter budget, ``epochs``, with the learning rate decayed linearly to 0 over the run (the benchmark
    trains at a constant rate for a fixed number of epochs): does a curriculum gain more where the budget is short,
    as Wu, Dyer and Neyshabur ("When do curricula work?", ICLR 2021) found? Like every row, each is compared with the
    benchmark's baseline (its epochs, constant rate)."""
    budget = {"num_train_epochs": epochs, "lr_scheduler_type": "linear"}
    half = {**HALF_ROOT, "intensity_gamma_min": 1.0, **budget}
    what = f"{epochs} epochs, learning rate decayed linearly to 0"
    return {
        f"baseline_linear_{epochs}": (f"baseline, {what}", "baseline", budget),
        f"class_root_half_linear_{epochs}": (
            f"CLASS, root pacing reaching all data at half the epochs, gamma 1, {what}",
            "class",
            half,
        ),
        f"random_root_half_linear_{epochs}": (
            f"random subsets, root pacing reaching all data at half the epochs, gamma 1, {what}",
            "random_subset",
            half,
        ),
    }


def _longer_rows(epochs: int) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Rows that give the curriculum about the baseline's CPU instead of its epochs: CLASS's defaults train on 62 % of
    the sample passes and cost about 0.75x of the baseline's CPU, so a third more epochs (40 for the 30-epoch
    backbones, 27 for ORMA's 20) cost about as much as the baseline. Does the curriculum end above the baseline at
    equal CPU? Constant learning rate, as the benchmark; random pools of the same sizes as the control."""
    longer = {"num_train_epochs": epochs}
    return {
        f"class_{epochs}": (f"CLASS defaults, {epochs} epochs (about the baseline's CPU)", "class", longer),
        f"random_{epochs}": (f"random subsets, {epochs} epochs (the same pools as CLASS)", "random_subset", longer),
    }


CURRICULUM_ROWS.update(_budget_rows(15))
CURRICULUM_ROWS.update(_budget_rows(20))
CURRICULUM_ROWS.update(_longer_rows(27))
CURRICULUM_ROWS.update(_longer_rows(40))
CURRICULUM_BACKBONES = ("dual_encoder", "aman", "orma")


@dataclass
class DiagnosisArguments:
    study: str = field(
        default="backbone",
        metadata={"help": "'backbone' (settings of the backbone) or 'curriculum' (curriculum settings, CLASS arms)."},
    )
    backbone: str = field(default="dual_encoder", metadata={"help": f"One of {list(TABLES)}."})
    rows: list[str] | None = field(default=None, metadata={"help": "Rows to run (default: all of the backbone's)."})
    seeds: list[int] = field(
        default_factory=lambda: [0], metadata={"help": "Seeds of every row of the curriculum study."}
    )
    rerun: bool = field(
        default=False,
        metadata={"help": "Run the requested rows and seeds again, replacing those the report already has."},
    )
    jobs: int = field(default=1, metadata={"help": "Rows in parallel (one CPU thread each)."})
    patience: int = field(default=8, metadata={"help": "Evaluations without a better validation MRR before stopping."})
    output_dir: str = field(default=str(HERE / "results"))
    cache_dir: str = field(default=str(HERE / ".cache" / "class_vs_baseline"))
    quick: bool = field(default=False, metadata={"help": "Tiny encoder and data (smoke test)."})
    resume: bool = field(
        default=True, metadata={"help": "Keep the rows of an existing report and run only the others."}
    )


def run_curriculum_row(name: str, diag: DiagnosisArguments, seed: int = 0) -> dict[str, Any]:
    bench_module = _benchmark()
    bench = bench_module.BenchmarkArguments(cache_dir=diag.cache_dir, quick=diag.quick, pool=None)
    what, arm, training = CURRICULUM_ROWS[name]
    result = bench_module.run_one(diag.backbone, arm, seed, bench, training_overrides=training, test=False)
    return {
        "row": name,
        "seed": seed,
        "change": what,
        "arm": arm,
        "training": training,
        "best_val_mrr": result["best_val_mrr"],
        "best_epoch": result["best_epoch"],
        "epochs_run": len(result["val_curve"]),
        "cpu_seconds": result["cpu_seconds"],
        "scoring_seconds": result["scoring_seconds"],
        "scoring_info": result["scoring_info"],
        "samples_seen": result["samples_seen"],
        "pool_sizes": [h["pool_size"] for h in result["history"]],
        "val_curve": result["val_curve"],
    }


def run_row(task: tuple[str, int], diag: DiagnosisArguments) -> dict[str, Any]:
    name, seed = task
    if diag.study == "curriculum":
        return run_curriculum_row(name, diag, seed)
    bench_module = _benchmark()
    bench = bench_module.BenchmarkArguments(cache_dir=diag.cache_dir, quick=diag.quick, pool=None)
    today_model, today_training, today_tokens, rows, combined = TABLES[diag.backbone]
    what, model, training, tokens = {**rows, **combined}[name]
    if name in rows:
        model, training, tokens = {**today_model, **model}, {**today_training, **training}, tokens or today_tokens
    if diag.quick:
        training = {**training, "num_train_epochs": 3, "per_device_train_batch_size": 16}
    patience = diag.patience if training["num_train_epochs"] > 12 else None
    result = bench_module.run_one(
        diag.backbone,
        "baseline",
        0,
        bench,
        model_overrides=model,
        training_overrides=training,
        max_length=tokens,
        patience=patience,
        test=False,
    )
    return {
        "row": name,
        "change": what,
        "model": model,
        "training": training,
        "max_length": tokens,
        "best_val_mrr": result["best_val_mrr"],
        "best_epoch": result["best_epoch"],
        "epochs_run": len(result["val_curve"]),
        "cpu_seconds": result["cpu_seconds"],
        "val_curve": result["val_curve"],
    }


def write_report(rows: list[dict[str, Any]], diag: DiagnosisArguments, wall_seconds: float) -> str:
    """Writes ``diagnose_<backbone>.{json,md}`` (after every row, so an interrupted run keeps what it measured)."""
    if diag.study == "curriculum":
        return write_curriculum_report(rows, diag, wall_seconds)
    today = next((r["best_val_mrr"] for r in rows if r["row"] == "today"), None)
    lines = [
        f"| change (one at a time against today's {diag.backbone}) | best val MRR | Δ vs today | best epoch | CPU s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        delta = "–" if today is None or r["row"] == "today" else f"{r['best_val_mrr'] - today:+.3f}"
        lines.append(
            f"| {r['change']} | {r['best_val_mrr']:.3f} | {delta} | {r['best_epoch']:.0f} | {r['cpu_seconds']:.0f} |"
        )
    return _write(lines, rows, diag, wall_seconds)


def write_curriculum_report(rows: list[dict[str, Any]], diag: DiagnosisArguments, wall_seconds: float) -> str:
    """Writes ``diagnose_curriculum_<backbone>.{json,md}``: per setting, the mean best validation MRR over its seeds,
    its CPU seconds (mean, range, and as a share of the same seed's baseline) and, per seed, the CPU to reach the same
    seed's baseline best and 98 % of it (shares of that baseline's training CPU; the baseline's own row shows when it
    got there itself); then, per setting and epoch, the mean validation MRR and CPU seconds of that epoch."""
    bases = {_seed(r): r for r in rows if r["row"] == "baseline"}
    lines = [
        "| curriculum setting | seeds | best val MRR | Δ vs baseline | best epoch | CPU s | CPU × baseline | "
        "sample passes × baseline | CPU to baseline best | CPU to 98 % of it |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = _setting_names(rows)
    for name in names:
        runs = sorted((r for r in rows if r["row"] == name), key=_seed)
        deltas, shares, passes, reaches, nears = [], [], [], [], []
        for r in runs:
            base = bases.get(_seed(r))
            if base is None:
                continue
            shares.append(r["cpu_seconds"] / base["cpu_seconds"])
            if "samples_seen" in r and "samples_seen" in base:  # recorded since pacing by cost
                passes.append(r["samples_seen"] / base["samples_seen"])
            if r is not base:
                deltas.append(r["best_val_mrr"] - base["best_val_mrr"])
                reaches.append(_reach(r, base, 1.0))
            nears.append(_reach(r, base, 0.98))
        seeds = ", ".join(str(_seed(r)) for r in runs)
        best = _benchmark()._fmt([r["best_val_mrr"] for r in runs])
        delta = "–" if not deltas else f"{sum(deltas) / len(deltas):+.3f}"
        epoch = sum(r["best_epoch"] for r in runs) / len(runs)
        cpus = [r["cpu_seconds"] for r in runs]
        cpu = f"{sum(cpus) / len(cpus):.0f}" + (f" ({min(cpus):.0f}–{max(cpus):.0f})" if len(cpus) > 1 else "")
        share = "–" if not shares else f"{sum(shares) / len(shares):.2f}×"
        passed = "–" if not passes else f"{sum(passes) / len(passes):.2f}×"
        lines.append(
            f"| {runs[0]['change']} | {seeds} | {best} | {delta} | {epoch:.0f} | {cpu} | {share} | {passed} | "
            f"{'; '.join(reaches) or '–'} | {'; '.join(nears) or '–'} |"
        )
    return _write([*lines, "", *_epoch_table(rows, names)], rows, diag, wall_seconds)


def _epoch_table(rows: list[dict[str, Any]], names: list[str]) -> list[str]:
    """Per setting and epoch: mean validation MRR / mean CPU seconds of that epoch alone (evaluation and, in the first
    epoch, scoring included), over the setting's seeds that ran it."""
    last = max(len(r["val_curve"]) for r in rows)
    epochs = [e for e in (1, 2, 3, 5, 8, 12, 16, 20, 25, 30) if e <= last]
    lines = [
        "Per epoch: validation MRR / CPU seconds of that epoch (means over the seeds).",
        "",
        "| curriculum setting | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
        "|---|" + "---|" * len(epochs),
    ]
    for name in names:
        cells = []
        for e in epochs:
            runs = [r["val_curve"] for r in rows if r["row"] == name and len(r["val_curve"]) >= e]
            if not runs:
                cells.append("–")
                continue
            mrr = sum(c[e - 1]["mrr"] for c in runs) / len(runs)
            cpu = sum(c[e - 1]["cpu_seconds"] - (c[e - 2]["cpu_seconds"] if e > 1 else 0.0) for c in runs) / len(runs)
            cells.append(f"{mrr:.3f} / {cpu:.1f}")
        lines.append(f"| {CURRICULUM_ROWS.get(name, (name,))[0]} | " + " | ".join(cells) + " |")
    return lines


def _setting_names(rows: list[dict[str, Any]]) -> list[str]:
    """The settings of ``rows``, in the order of ``CURRICULUM_ROWS`` (unknown ones last)."""
    order = list(CURRICULUM_ROWS)
    return sorted(dict.fromkeys(r["row"] for r in rows), key=lambda n: order.index(n) if n in order else len(order))


def plot_curriculum(rows: list[dict[str, Any]], diag: DiagnosisArguments, target: float = 0.65) -> Path | None:
    """Writes ``diagnose_curriculum_<backbone>.png``: one panel per curriculum setting, each seed's best validation MRR
    so far against its CPU seconds, both relative to the same seed's baseline (its best MRR and its training CPU);
    the baseline's seeds in grey. A curve that crosses 1.0 left of the dashed ``target`` line reaches the baseline's
    best within that share of its CPU. None when the report has no baseline."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bases = {_seed(r): r for r in rows if r["row"] == "baseline"}
    names = [name for name in _setting_names(rows) if name != "baseline"]
    if not bases or not names:
        return None

    def relative(row: dict[str, Any]) -> tuple[list[float], list[float]]:
        base, best, xs, ys = bases[_seed(row)], 0.0, [], []
        for point in row["val_curve"]:
            best = max(best, point["mrr"])
            xs.append(point["cpu_seconds"] / base["cpu_seconds"])
            ys.append(best / base["best_val_mrr"])
        return xs, ys

    columns = min(3, len(names))
    height = -(-len(names) // columns)
    width = max(4.8 * columns, 8.0)
    fig = Figure(figsize=(width, 3.6 * height + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(height, columns, squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names, strict=False):
        for base in bases.values():
            ax.plot(*relative(base), color="grey", alpha=0.6, linewidth=1)
        runs = [r for r in rows if r["row"] == name and _seed(r) in bases]
        for r in runs:
            ax.plot(*relative(r), color=_colour(r), linewidth=1.2)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axvline(target, color="black", linestyle="--", linewidth=0.8)
        ax.set_ylim(0.9, 1.015)
        ax.grid(True, alpha=0.3)
        title = f"{CURRICULUM_ROWS.get(name, (name,))[0]} ({len(runs)} seed{'s' if len(runs) != 1 else ''})"
        ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=8)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    fig.supxlabel("training CPU seconds / the same seed's baseline's (scoring included)", fontsize=9)
    fig.supylabel("best validation MRR so far / the baseline's best", fontsize=9)
    legend = (
        "blue: CLASS (easy first), orange: random subsets, red: hard first, black: the baseline with other settings, "
        f"grey: the baseline; dashed: {target}× the baseline's CPU"
    )
    # about 13 characters of the title's font fit an inch: a narrow figure wraps the legend instead of cutting it
    lines = [f"{diag.backbone}: curriculum settings against the baseline", *textwrap.wrap(legend, int(width * 13))]
    fig.suptitle("\n".join(lines), fontsize=10)
    path = Path(diag.output_dir) / f"{report_name(diag)}.png"
    fig.savefig(path, format="png", dpi=110)
    return path


def _colour(row: dict[str, Any]) -> str:
    if row["arm"] == "random_subset":
        return "C1"
    if row["arm"] == "baseline":
        return "black"
    return "C3" if row["training"].get("curriculum") == "hard_first" else "C0"


def _reach(row: dict[str, Any], base: dict[str, Any], share: float) -> str:
    """Where ``row`` first reaches ``share`` of ``base``'s best validation MRR, in CPU as a share of ``base``'s."""
    seconds = _benchmark().time_to_reach(row["val_curve"], share * base["best_val_mrr"])
    return "not reached" if seconds is None else f"{seconds / base['cpu_seconds']:.2f}×"


def _seed(row: dict[str, Any]) -> int:
    return row.get("seed", 0)


def _write(lines: list[str], rows: list[dict[str, Any]], diag: DiagnosisArguments, wall_seconds: float) -> str:
    table = "\n".join(lines) + "\n"
    output = Path(diag.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    payload = {"rows": rows, "wall_seconds": wall_seconds}
    (output / f"{report_name(diag)}.json").write_text(json.dumps(payload, indent=1))
    (output / f"{report_name(diag)}.md").write_text(table)
    return table


def report_name(diag: DiagnosisArguments) -> str:
    study = "curriculum_" if diag.study == "curriculum" else ""
    return f"diagnose_{study}{diag.backbone}" + ("_quick" if diag.quick else "")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    (diag,) = HfArgumentParser(DiagnosisArguments).parse_args_into_dataclasses(args=argv)
    if diag.study not in ("backbone", "curriculum"):
        raise SystemExit(f"--study must be 'backbone' or 'curriculum', got {diag.study!r}.")
    backbones = list(TABLES) if diag.study == "backbone" else list(CURRICULUM_BACKBONES)
    if diag.backbone not in backbones:
        raise SystemExit(f"--backbone must be one of {backbones} for the {diag.study} study, got {diag.backbone!r}.")
    if diag.study == "backbone" and diag.seeds != [0]:
        raise SystemExit("--seeds applies to the curriculum study only (the backbone study runs seed 0).")
    *_, table_rows, combined = TABLES[diag.backbone] if diag.study == "backbone" else ({}, CURRICULUM_ROWS, {})
    if diag.rows is None:
        diag.rows = [*table_rows, *combined]
    unknown = sorted(set(diag.rows) - {*table_rows, *combined})
    if unknown:
        raise SystemExit(f"Unknown rows for {diag.backbone}: {unknown}; choose from {[*table_rows, *combined]}.")
    rows: list[dict[str, Any]] = []
    report = Path(diag.output_dir) / f"{report_name(diag)}.json"
    tasks = [(name, seed) for seed in diag.seeds for name in diag.rows]
    start = time.perf_counter()
    if diag.resume and report.exists():  # keep every row of the report; run only the requested ones it lacks
        earlier = json.loads(report.read_text())
        rows = earlier["rows"]
        start -= earlier.get("wall_seconds", 0.0)  # the report's wall time adds up over the invocations
        if diag.rerun:
            rows = [r for r in rows if (r["row"], _seed(r)) not in set(tasks)]
    todo = [task for task in tasks if task not in {(r["row"], _seed(r)) for r in rows}]
    if diag.jobs > 1:
        with ProcessPoolExecutor(max_workers=diag.jobs) as pool:
            for row in pool.map(run_row, todo, [diag] * len(todo)):
                rows.append(row)
                write_report(rows, diag, time.perf_counter() - start)
    else:
        for task in todo:
            rows.append(run_row(task, diag))
            write_report(rows, diag, time.perf_counter() - start)
    print(write_report(rows, diag, time.perf_counter() - start))
    if diag.study == "curriculum" and (path := plot_curriculum(rows, diag)) is not None:
        print(f"Wrote {path}.")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
