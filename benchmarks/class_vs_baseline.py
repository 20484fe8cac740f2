"""CLASS vs the same backbone without it, on real ChEBI-20 pairs, side by side.

For every backbone and seed, on the same data and machine, in one run:

- ``baseline``: the backbone under ``CurriculumTrainer`` with the curriculum off (``curriculum="none"``,
  ``intensity_beta=0``, ``intensity_target="none"``: plain random sampling, as a plain ``Trainer``);
- ``class``: the default CLASS settings of ``CurriculumTrainingArguments`` (easy-first, 4 stages 25/50/75/100 %,
  difficulty from a warm-up of the backbone, ``beta = 1``, learning-rate multiplier 0.5 -> 1);
- ``random_subset``: the same as ``class`` but each epoch's pool is a random subset of the same size;

and, once per seed, the frozen-encoder linear anchor (frozen mean-pooled text + Morgan count fingerprints, linear
projections, InfoNCE, early stopping on validation MRR: :class:`~class_hf.curriculum.FingerprintScorer`).

The text tower is frozen and its outputs are computed once for all arms (``benchmarks/cached_text.py``); the molecule
side (GNN) and the projections are trained from scratch. Validation is evaluated after every epoch; test metrics are
those of the best validation epoch (both pools: ``split`` and ``all``) and of the last epoch (``split``).

Run (about an hour on the 2-core machine)::

    .venv/bin/python benchmarks/class_vs_baseline.py --data /work/shared/data/chebi20/original \\
        --pool /work/shared/data/chebi20/derived/cid_split_smiles.tsv

Smoke test: ``--quick --data tests/fixtures/chebi20/orma_sample.csv --text-encoder <tiny model folder>``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from transformers import AutoConfig, AutoModel, AutoTokenizer, TrainerCallback, set_seed  # noqa: E402

from benchmarks.bench_data import BenchData, minilm_path, prepare  # noqa: E402
from benchmarks.cached_text import CachedTextEncoder, FeatureIndexTokenizer, install_cached_text_encoder  # noqa: E402

logger = logging.getLogger("class_vs_baseline")

ARMS: dict[str, dict[str, Any]] = {
    "baseline": {"curriculum": "none", "intensity_beta": 0.0, "intensity_target": "none"},
    "class": {},
    "random_subset": {"curriculum": "random_subset"},
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, load average and package versions."""
    import datasets
    import torch_geometric
    import transformers

    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import rdkit

        rdkit_version = rdkit.__version__
    except ImportError:  # pragma: no cover
        rdkit_version = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "load_average": list(os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "datasets": datasets.__version__,
            "torch_geometric": torch_geometric.__version__,
            "rdkit": rdkit_version,
        },
    }


# ------------------------------------------------------------------------------------------------ backbones
def build_model(backbone: str, data: BenchData, size: dict[str, Any]) -> torch.nn.Module:
    """The backbone with its text tower replaced by the cached frozen encoder (identical in every arm)."""
    from class_hf.models.registry import get_backbone

    spec = get_backbone(backbone)  # an unknown name is an error that lists the known ones
    text_config = copy.deepcopy(data.text_config)
    states = data.text_states
    if backbone == "dual_encoder":
        config = {
            "gnn_type": "gine",
            "gnn_hidden_size": size["hidden"],
            "gnn_num_layers": size["layers"],
            "use_fingerprint": size["fingerprint"],
            "projection_dim": 256,
            "freeze_text_encoder": True,
        }
    elif backbone == "aman":
        config = {
            "text_encoder_name_or_path": None,
            "text_pooling": "mean",
            "graph_hidden_size": size["hidden"],
            "graph_num_layers": size["layers"],
            "graph_ffn_size": 2 * size["hidden"],
            "projection_dim": 256,
        }
    else:  # orma
        if data.token_states is None:
            raise ValueError("ORMA needs the cached token states; prepare the data with token states.")
        config = {
            "text_encoder_name_or_path": None,
            "pooling": "mean",
            "emb_dim": size["hidden"],
            "num_gnn_layers": size["layers"],
            "ot_iterations": size.get("ot_iterations", 20),
        }
        states = data.token_states
    model = spec.build(text_config=text_config, **config)
    return install_cached_text_encoder(model, CachedTextEncoder(states, data.text_config))


def make_collator(backbone: str, data: BenchData):
    from class_hf.data.collator import MoleculeTextCollator

    lengths = data.lengths if backbone == "orma" else None
    return MoleculeTextCollator(FeatureIndexTokenizer(data.texts, lengths), max_length=1_000_000)


# ------------------------------------------------------------------------------------------------ evaluation
def test_metrics(model, dataset, collator, pool_extra, batch_size: int, with_all: bool) -> dict[str, Any]:
    """Hits@1/5/10, MRR, mean rank both directions on ``dataset`` (pool ``split``) and, with ``with_all``, ``all``."""
    from class_hf.evaluation.evaluator import RetrievalEvaluator, metrics_by_pool

    start = time.perf_counter()
    extra = pool_extra if with_all and pool_extra is not None else None  # molecules only: no descriptions
    evaluator = RetrievalEvaluator(dataset, data_collator=collator, extra_molecules=extra, batch_size=batch_size)
    out: dict[str, Any] = dict(metrics_by_pool(evaluator(model)))
    if extra is not None:
        out["all_pool_size"] = evaluator.pool_sizes["all_num_candidate_molecules"]
    out["seconds"] = time.perf_counter() - start
    return out


class EpochRecorder(TrainerCallback):
    """Records validation MRR after every evaluation, CPU seconds per epoch, and keeps the best state in memory."""

    def __init__(self) -> None:
        self.evals: list[dict[str, float]] = []
        self.best_mrr = -math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch: int | None = None
        self.cpu: list[float] = []
        self._cpu_start = 0.0
        self.cpu_at_train_begin: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        # CurriculumTrainer scores the difficulty inside train() before the Trainer's loop starts.
        self.cpu_at_train_begin = _cpu_seconds()

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._cpu_start = _cpu_seconds()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.cpu.append(_cpu_seconds() - self._cpu_start)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        metrics = metrics or {}
        record = {
            "epoch": round(float(state.epoch or 0)),
            "t2m_mrr": float(metrics.get("eval_t2m_mrr", float("nan"))),
            "m2t_mrr": float(metrics.get("eval_m2t_mrr", float("nan"))),
            "mrr": float(metrics.get("eval_mrr", float("nan"))),
            "loss": float(metrics.get("eval_loss", float("nan"))),
        }
        self.evals.append(record)
        if model is not None and record["mrr"] > self.best_mrr:
            self.best_mrr = record["mrr"]
            self.best_epoch = record["epoch"]
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _nested_trainer_class():
    from class_hf.trainer import CurriculumTrainer

    class _Nested(CurriculumTrainer):
        """``random_subset`` pools nested in one fixed random permutation (as easy-first pools are nested)."""

        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if hasattr(sampler, "redraw_random_subset"):
                sampler.redraw_random_subset = False
            return sampler

    return _Nested


def arm_label(arm: str, cfg: dict[str, Any]) -> str:
    """The arm's name in the results: ``class``, or ``class [difficulty_source=fingerprint]`` with overrides."""
    tags = [f"{k}={v}" for k, v in cfg.get("class_overrides", {}).items() if arm != "baseline"]
    if not cfg["sizes"]["dual_encoder"].get("fingerprint", True):
        tags.append("no fingerprint branch")
    if arm == "random_subset" and cfg.get("nested_random_subset"):
        tags.append("nested, not re-drawn")
    return f"{arm} [{', '.join(tags)}]" if tags else arm


def run_arm(backbone: str, arm: str, seed: int, data: BenchData, cfg: dict[str, Any], out_dir: str) -> dict:
    """Trains one arm and returns its per-epoch history and test metrics."""
    from class_hf.trainer import CurriculumTrainer
    from class_hf.training_args import CurriculumTrainingArguments

    size = cfg["sizes"][backbone]
    set_seed(seed)
    model = build_model(backbone, data, size)
    collator = make_collator(backbone, data)
    settings = {**ARMS[arm], **cfg.get("class_overrides", {})} if arm != "baseline" else dict(ARMS[arm])
    args = CurriculumTrainingArguments(
        output_dir=os.path.join(out_dir, f"{backbone}-{arm}-{seed}"),
        num_train_epochs=size["epochs"],
        per_device_train_batch_size=size["batch_size"],
        per_device_eval_batch_size=256,
        learning_rate=size["lr"],
        weight_decay=1e-4,
        lr_scheduler_type="linear",
        warmup_steps=0,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to="none",
        seed=seed,
        data_seed=seed,
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **settings,
    )
    recorder = EpochRecorder()
    trainer_cls = _nested_trainer_class() if cfg.get("nested_random_subset") else CurriculumTrainer
    trainer = trainer_cls(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=data.splits["train"],
        eval_dataset=data.splits["validation"],
        callbacks=[recorder],
    )
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    trainer.train()
    wall = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_start
    history = [dict(r) for r in trainer.curriculum_history]
    evals = {r["epoch"]: r for r in recorder.evals}
    scoring0 = float(trainer.scoring_info.get("seconds", 0.0)) if trainer.scoring_info else 0.0
    scoring_cpu = (recorder.cpu_at_train_begin or cpu_start) - cpu_start
    clock, cpu_clock = scoring0, scoring_cpu
    for i, record in enumerate(history):
        clock += record["train_seconds"] + record["scoring_seconds"]
        record["cumulative_train_seconds"] = clock  # initial scoring + training (+ refresh scoring), eval excluded
        record["cpu_seconds"] = recorder.cpu[i] if i < len(recorder.cpu) else None
        cpu_clock += record["cpu_seconds"] or 0.0
        record["cumulative_train_cpu_seconds"] = cpu_clock
        record["val"] = evals.get(record["epoch"] + 1, {})
    last = test_metrics(model, data.splits["test"], collator, None, 256, with_all=False)
    if recorder.best_state is not None:
        model.load_state_dict(recorder.best_state)
    best = test_metrics(model, data.splits["test"], collator, data.pool_extra, 256, with_all=True)
    summary = trainer.curriculum_summary()
    result = {
        "backbone": backbone,
        "arm": arm_label(arm, cfg),
        "seed": seed,
        "settings": {k: (v.value if hasattr(v, "value") else v) for k, v in settings.items()},
        "size": size,
        "num_parameters_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "history": history,
        "scoring_info": trainer.scoring_info,
        "summary": summary,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "scoring_cpu_seconds": scoring_cpu,
        "training_cpu_seconds": cpu_clock,
        "training_seconds": scoring0 + sum(r["train_seconds"] + r["scoring_seconds"] for r in history),
        "best_val_mrr": recorder.best_mrr,
        "best_val_epoch": recorder.best_epoch,
        "test_best_val": best,
        "test_last_epoch": last,
    }
    logger.info(
        "%s/%s seed %d: best val MRR %.4f (epoch %s), test MRR t2m %.4f m2t %.4f, %.0f s (training %.0f s)",
        backbone,
        arm,
        seed,
        recorder.best_mrr,
        recorder.best_epoch,
        best["split"]["t2m_mrr"],
        best["split"]["m2t_mrr"],
        wall,
        result["training_seconds"],
    )
    return result


def run_anchor(seed: int, data: BenchData) -> dict:
    """The frozen-encoder linear anchor: FingerprintScorer fitted on train, early-stopped on validation MRR."""
    from class_hf.curriculum.fingerprint_scorer import FingerprintScorer
    from class_hf.evaluation.retrieval import retrieval_metrics

    start = time.perf_counter()
    scorer = FingerprintScorer(
        CachedTextEncoder(data.text_states, data.text_config),
        FeatureIndexTokenizer(data.texts),
        seed=seed,
        show_progress=False,
    )
    scorer.fit(data.splits["train"], eval_dataset=data.splits["validation"])
    fit_seconds = time.perf_counter() - start
    text, mol = scorer(data.splits["test"])
    out: dict[str, Any] = {"split": retrieval_metrics(text, mol, scorer=scorer.score)}
    if data.pool_extra is not None:
        extra = scorer.encode_molecule(scorer.molecule_features(data.pool_extra))
        out["all"] = retrieval_metrics(text, mol, scorer=scorer.score, extra_mol_embeds=extra)
    return {
        "seed": seed,
        "fit_info": scorer.fit_info,
        "fit_seconds": fit_seconds,
        "best_val_mrr": scorer.fit_info["fingerprint_eval_mrr"],
        "test": out,
    }


# ------------------------------------------------------------------------------------------------ throughput
def measure_throughput(data: BenchData, cfg: dict[str, Any], steps: int, repeats: int = 2) -> dict:
    """CurriculumTrainer steps/s vs a bare PyTorch loop on the same model, batches, optimizer and schedule."""
    from torch.utils.data import DataLoader
    from transformers import get_linear_schedule_with_warmup

    from class_hf.trainer import CurriculumTrainer
    from class_hf.training_args import CurriculumTrainingArguments

    size = cfg["sizes"]["dual_encoder"]
    batch_size = size["batch_size"]
    collator = make_collator("dual_encoder", data)
    train = data.splits["train"].select(range(min(len(data.splits["train"]), steps * batch_size)))
    columns = [c for c in collator.columns if c in train.column_names]
    train = train.select_columns(columns)
    rows_per_step = batch_size
    results: dict[str, list[float]] = {"bare": [], "trainer_baseline": [], "trainer_class": []}
    for _ in range(repeats):
        # Bare loop.
        set_seed(0)
        model = build_model("dual_encoder", data, size)
        model.train()
        loader = DataLoader(train, batch_size=batch_size, shuffle=True, collate_fn=collator)
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=size["lr"], weight_decay=1e-4
        )
        schedule = get_linear_schedule_with_warmup(optimizer, 0, len(loader))
        start = time.perf_counter()
        done = 0
        for batch in loader:
            batch = {k: v for k, v in batch.items() if k not in ("sample_idx", "difficulty")}
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            done += 1
        results["bare"].append(done * rows_per_step / (time.perf_counter() - start))
        # The trainer, baseline switches and CLASS switches (difficulty precomputed: scoring is timed elsewhere).
        for key, settings in (
            ("trainer_baseline", ARMS["baseline"]),
            ("trainer_class", {"difficulty_source": "precomputed", "pacing_start_fraction": 1.0}),
        ):
            set_seed(0)
            model = build_model("dual_encoder", data, size)
            dataset = train
            if key == "trainer_class":
                rng = np.random.default_rng(0)
                dataset = train.add_column("difficulty", rng.random(len(train)).astype(np.float32).tolist())
            with tempfile.TemporaryDirectory() as tmp:
                args = CurriculumTrainingArguments(
                    output_dir=tmp,
                    num_train_epochs=1,
                    per_device_train_batch_size=batch_size,
                    learning_rate=size["lr"],
                    weight_decay=1e-4,
                    eval_strategy="no",
                    save_strategy="no",
                    logging_strategy="no",
                    report_to="none",
                    use_cpu=True,
                    disable_tqdm=True,
                    **settings,
                )
                trainer = CurriculumTrainer(model=model, args=args, data_collator=collator, train_dataset=dataset)
                output = trainer.train()
                results[key].append(output.metrics["train_samples_per_second"])
    med = {k: statistics.median(v) for k, v in results.items()}
    return {
        "steps": len(train) // batch_size,
        "batch_size": batch_size,
        "samples_per_second": results,
        "median_samples_per_second": med,
        "ratio_trainer_baseline_vs_bare": med["trainer_baseline"] / med["bare"],
        "ratio_trainer_class_vs_bare": med["trainer_class"] / med["bare"],
        "note": "Trainer samples/s from its train_samples_per_second (whole train() call, including setup); the bare "
        "loop times its batches only. CLASS switches: easy-first with precomputed difficulty, pacing start 1.0 (all "
        "data), beta = 1 weights and the LR multiplier.",
    }


# ------------------------------------------------------------------------------------------------ reporting
def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def time_to_reach(result: dict, bar: float, key: str = "cumulative_train_seconds") -> float | None:
    """Cumulative training seconds (scoring included, evaluation excluded) at the first epoch with val MRR >= bar.

    ``key`` ``cumulative_train_cpu_seconds`` counts CPU seconds of this process instead of wall-clock seconds.
    """
    for record in result["history"]:
        if record.get("val", {}).get("mrr", -1.0) >= bar - 1e-12:
            return record.get(key)
    return None


def _ensure_cpu_clock(result: dict, baseline: dict) -> None:
    """Fills the CPU clock of results recorded before it was measured directly (estimated; marked as such).

    Scoring CPU = the CPU of ``train()`` outside the epochs minus the baseline's (evaluation and set-up, equal in
    both).
    """
    if "training_cpu_seconds" in result:
        return
    outside = result["cpu_seconds"] - sum(h["cpu_seconds"] for h in result["history"])
    base_outside = baseline["cpu_seconds"] - sum(h["cpu_seconds"] for h in baseline["history"])
    scoring = max(0.0, outside - base_outside) if result is not baseline else 0.0
    clock = scoring
    for h in result["history"]:
        clock += h["cpu_seconds"]
        h["cumulative_train_cpu_seconds"] = clock
    result["scoring_cpu_seconds"] = scoring
    result["training_cpu_seconds"] = clock
    result["scoring_cpu_estimated"] = True


def compare(results: list[dict]) -> dict:
    """Per-seed ratios of each arm to the baseline of the same backbone and seed."""
    by_key = {(r["backbone"], r["arm"], r["seed"]): r for r in results}
    for (backbone, _, seed), r in by_key.items():
        base = by_key.get((backbone, "baseline", seed))
        if base is not None:
            _ensure_cpu_clock(base, base)
            _ensure_cpu_clock(r, base)
    out: dict[str, Any] = {}
    for (backbone, arm, seed), r in by_key.items():
        base = by_key.get((backbone, "baseline", seed))
        if base is None:
            continue
        bar = base["best_val_mrr"]
        base_time = time_to_reach(base, bar)
        reach = time_to_reach(r, bar)
        base_cpu = time_to_reach(base, bar, "cumulative_train_cpu_seconds")
        reach_cpu = time_to_reach(r, bar, "cumulative_train_cpu_seconds")
        split, base_split = r["test_best_val"]["split"], base["test_best_val"]["split"]
        entry = {
            "backbone": backbone,
            "arm": arm,
            "seed": seed,
            "baseline_best_val_mrr": bar,
            "baseline_time_to_best": base_time,
            "time_to_baseline_best": reach,
            "time_to_baseline_best_ratio": (reach / base_time) if reach is not None and base_time else None,
            "baseline_cpu_to_best": base_cpu,
            "cpu_to_baseline_best": reach_cpu,
            "cpu_to_baseline_best_ratio": (reach_cpu / base_cpu) if reach_cpu is not None and base_cpu else None,
            "sample_passes_ratio": r["summary"]["samples_seen"] / max(1, base["summary"]["samples_seen"]),
            "training_seconds_ratio": r["training_seconds"] / base["training_seconds"],
            "training_cpu_seconds_ratio": r["training_cpu_seconds"] / base["training_cpu_seconds"],
            "cpu_seconds_ratio": r["cpu_seconds"] / base["cpu_seconds"],
            "test_t2m_mrr_ratio": split["t2m_mrr"] / base_split["t2m_mrr"],
            "test_m2t_mrr_ratio": split["m2t_mrr"] / base_split["m2t_mrr"],
            "test_t2m_mrr_diff": split["t2m_mrr"] - base_split["t2m_mrr"],
            "test_m2t_mrr_diff": split["m2t_mrr"] - base_split["m2t_mrr"],
            "best_val_mrr_diff": r["best_val_mrr"] - bar,
        }
        out[f"{backbone}/{arm}/{seed}"] = entry
    return out


def _fmt(mean: float, std: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std > 0 else f"{mean:.{digits}f}"


def markdown_table(report: dict) -> str:
    """Markdown summary: one row per backbone/arm (mean ± std over seeds), ratios to the baseline, the anchor."""
    results = report["results"]
    ratios = report["ratios"]
    lines = [
        f"Data: {report['data']['split']} (train {report['data']['split_sizes'].get('train')}, validation "
        f"{report['data']['split_sizes'].get('validation')}, test {report['data']['split_sizes'].get('test')}). "
        "Test metrics at the best validation epoch (last-epoch test MRR in its own column); pool `split` = the "
        f"test split, `all` = {report['data'].get('all_pool_size') or '–'} ChEBI-20 molecules (t2m only changes: "
        "no extra texts exist).",
        "",
        "| backbone | arm | seeds | best val MRR | test MRR t2m (split) | test MRR m2t (split) | test Hits@1 t2m | "
        "test Hits@10 t2m | test MRR t2m (all) | test mean rank t2m (split) | last-epoch test MRR t2m / m2t | "
        "sample passes | training s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["backbone"], r["arm"]), []).append(r)
    for (backbone, arm), rs in groups.items():

        def col(fn, rs=rs):
            return _mean_std([fn(r) for r in rs])

        lines.append(
            f"| {backbone} | {arm} | {len(rs)} | {_fmt(*col(lambda r: r['best_val_mrr']))} | "
            f"{_fmt(*col(lambda r: r['test_best_val']['split']['t2m_mrr']))} | "
            f"{_fmt(*col(lambda r: r['test_best_val']['split']['m2t_mrr']))} | "
            f"{_fmt(*col(lambda r: r['test_best_val']['split']['t2m_hits@1']))} | "
            f"{_fmt(*col(lambda r: r['test_best_val']['split']['t2m_hits@10']))} | "
            f"{_fmt(*col(lambda r: r['test_best_val'].get('all', {}).get('t2m_mrr', float('nan'))))} | "
            f"{_fmt(*col(lambda r: r['test_best_val']['split']['t2m_mean_rank']), 1)} | "
            f"{_fmt(*col(lambda r: r['test_last_epoch']['split']['t2m_mrr']))} / "
            f"{_fmt(*col(lambda r: r['test_last_epoch']['split']['m2t_mrr']))} | "
            f"{_fmt(*col(lambda r: float(r['summary']['samples_seen'])), 0)} | "
            f"{_fmt(*col(lambda r: r['training_seconds']), 0)} |"
        )
    anchors = report.get("anchor", [])
    if anchors:

        def acol(fn):
            return _mean_std([fn(a) for a in anchors])

        lines.append(
            f"| linear anchor (frozen text + fingerprints) | – | {len(anchors)} | "
            f"{_fmt(*acol(lambda a: a['best_val_mrr']))} | {_fmt(*acol(lambda a: a['test']['split']['t2m_mrr']))} | "
            f"{_fmt(*acol(lambda a: a['test']['split']['m2t_mrr']))} | "
            f"{_fmt(*acol(lambda a: a['test']['split']['t2m_hits@1']))} | "
            f"{_fmt(*acol(lambda a: a['test']['split']['t2m_hits@10']))} | "
            f"{_fmt(*acol(lambda a: a['test'].get('all', {}).get('t2m_mrr', float('nan'))))} | "
            f"{_fmt(*acol(lambda a: a['test']['split']['t2m_mean_rank']), 1)} | – | – | "
            f"{_fmt(*acol(lambda a: a['fit_seconds']), 1)} |"
        )
    lines += [
        "",
        "Ratios to the baseline of the same backbone and seed (mean ± std over seeds). Training time = initial "
        "difficulty scoring + training epochs, evaluation excluded, as wall-clock seconds and as CPU seconds of the "
        "process (the machine is shared, so wall-clock per epoch varies 2-3x for the same work; CPU seconds do not). "
        "Time to baseline best = time until validation MRR first reaches the baseline's best validation MRR, divided "
        "by the baseline's time to its own best.",
        "",
        "| backbone | arm | sample passes | training wall | training CPU | wall to baseline best | "
        "CPU to baseline best | reached (seeds) | test MRR t2m diff | test MRR m2t diff | best val MRR diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rgroups: dict[tuple[str, str], list[dict]] = {}
    for entry in ratios.values():
        backbone, arm = entry["backbone"], entry["arm"]
        if arm != "baseline":
            rgroups.setdefault((backbone, arm), []).append(entry)
    for (backbone, arm), es in rgroups.items():
        reached = [e["time_to_baseline_best_ratio"] for e in es if e["time_to_baseline_best_ratio"] is not None]
        reached_cpu = [e["cpu_to_baseline_best_ratio"] for e in es if e["cpu_to_baseline_best_ratio"] is not None]
        lines.append(
            f"| {backbone} | {arm} | {_fmt(*_mean_std([e['sample_passes_ratio'] for e in es]), 2)} | "
            f"{_fmt(*_mean_std([e['training_seconds_ratio'] for e in es]), 2)} | "
            f"{_fmt(*_mean_std([e['training_cpu_seconds_ratio'] for e in es]), 2)} | "
            f"{_fmt(*_mean_std(reached), 2) if reached else 'not reached'} | "
            f"{_fmt(*_mean_std(reached_cpu), 2) if reached_cpu else 'not reached'} | {len(reached)}/{len(es)} | "
            f"{_fmt(*_mean_std([e['test_t2m_mrr_diff'] for e in es]), 3)} | "
            f"{_fmt(*_mean_std([e['test_m2t_mrr_diff'] for e in es]), 3)} | "
            f"{_fmt(*_mean_std([e['best_val_mrr_diff'] for e in es]), 3)} |"
        )
    tp = report.get("throughput")
    if tp:
        med = tp["median_samples_per_second"]
        lines += [
            "",
            f"Throughput (dual encoder, batch {tp['batch_size']}, {tp['steps']} steps, median of "
            f"{len(tp['samples_per_second']['bare'])}): bare loop {med['bare']:.1f} samples/s, CurriculumTrainer "
            f"baseline {med['trainer_baseline']:.1f} ({tp['ratio_trainer_baseline_vs_bare']:.2f}x), CLASS switches "
            f"{med['trainer_class']:.1f} ({tp['ratio_trainer_class_vs_bare']:.2f}x).",
        ]
    return "\n".join(lines) + "\n"


def make_plots(report: dict, out_dir: Path, stem: str) -> list[str]:
    """Sample ratio per epoch (one line per arm) and validation MRR vs cumulative training time, per backbone."""
    from class_hf.evaluation.plots import curves_figure, plot_sample_ratio

    paths = []
    backbones = sorted({r["backbone"] for r in report["results"]})
    for backbone in backbones:
        rs = [r for r in report["results"] if r["backbone"] == backbone]
        series: dict[tuple[float, ...], list[str]] = {}
        for r in rs:
            if r["seed"] == min(x["seed"] for x in rs if x["arm"] == r["arm"]):
                n = r["summary"]["num_samples"] or 1
                key = tuple(round(h["samples_seen"] / n, 6) for h in r["history"])
                series.setdefault(key, []).append(r["arm"])
        # Arms with the very same sizes (CLASS and its random-subset ablation) share one line and one label.
        ratios = {
            " = ".join(arms) + f" ({sum(key) / len(key):.1%} of the passes)": list(key) for key, arms in series.items()
        }
        paths.append(
            str(
                plot_sample_ratio(
                    ratios,
                    out_dir / f"{stem}_{backbone}_sample_ratio.png",
                    title=f"{backbone}: training samples per epoch",
                )
            )
        )
        anchors = report.get("anchor") or []
        for key, unit, suffix in (
            ("cumulative_train_seconds", "wall-clock", "time"),
            ("cumulative_train_cpu_seconds", "CPU", "cpu"),
        ):
            curves = {}
            for arm in dict.fromkeys(r["arm"] for r in rs):
                runs = [r for r in rs if r["arm"] == arm]
                epochs = min(len(r["history"]) for r in runs)
                points = []
                for e in range(epochs):
                    xs = [r["history"][e].get(key, float("nan")) for r in runs]
                    ys = [r["history"][e]["val"].get("mrr", float("nan")) for r in runs]
                    points.append((float(np.mean(xs)), float(np.mean(ys))))
                curves[f"{arm} (mean of {len(runs)} seed{'s' if len(runs) > 1 else ''})"] = points
            end = max((p[0] for pts in curves.values() for p in pts if math.isfinite(p[0])), default=1.0)
            bases = [r for r in rs if r["arm"] == "baseline"]
            if bases:
                bar = float(np.mean([r["best_val_mrr"] for r in bases]))
                curves["baseline's best (bar)"] = [(0.0, bar), (end, bar)]
            if anchors:
                level = float(np.mean([a["best_val_mrr"] for a in anchors]))
                curves["linear anchor's best"] = [(0.0, level), (end, level)]
            fig = curves_figure(
                curves,
                xlabel=f"training {unit} seconds incl. difficulty scoring (evaluation excluded)",
                ylabel="validation MRR (mean of both directions)",
                title=f"{backbone}: validation MRR vs {unit} time",
            )
            fig.axes[0].legend(loc="lower right", fontsize=8, framealpha=0.9)
            path = out_dir / f"{stem}_{backbone}_val_mrr_vs_{suffix}.png"
            fig.savefig(path, format="png", dpi=120)
            paths.append(str(path))
    return paths


# ------------------------------------------------------------------------------------------------ main
def default_config(quick: bool) -> dict[str, Any]:
    if quick:
        size = {"hidden": 16, "layers": 2, "fingerprint": True, "epochs": 4, "batch_size": 32, "lr": 1e-3}
        return {
            "sizes": {
                "dual_encoder": size,
                "aman": {**size, "lr": 1e-3},
                "orma": {**size, "ot_iterations": 5},
            },
            "seeds": [0],
            "backbones": {"dual_encoder": [0]},
            "throughput_steps": 2,
            "throughput_repeats": 1,
        }
    return {
        "sizes": {
            "dual_encoder": {
                "hidden": 128,
                "layers": 3,
                "fingerprint": True,
                "epochs": 12,
                "batch_size": 64,
                "lr": 1e-3,
            },
            "aman": {"hidden": 128, "layers": 2, "fingerprint": False, "epochs": 8, "batch_size": 64, "lr": 1e-3},
            "orma": {
                "hidden": 128,
                "layers": 2,
                "fingerprint": False,
                "epochs": 8,
                "batch_size": 32,
                "lr": 1e-3,
                "ot_iterations": 20,
            },
        },
        "seeds": [0, 1, 2],
        "backbones": {"dual_encoder": [0, 1, 2], "aman": [0], "orma": [0]},
        "throughput_steps": 40,
        "throughput_repeats": 2,
    }


def merge_reports(paths: list[str], out_dir: Path, stem: str, seeds: list[int] | None = None) -> dict:
    """Combines the reports of runs made side by side (e.g. one process per backbone) into one report.

    With ``seeds``, only the results and anchors of those seeds are kept.
    """
    reports = [json.loads(Path(p).read_text()) for p in paths]
    if seeds is not None:
        for r in reports:
            r["results"] = [x for x in r["results"] if x["seed"] in seeds]
            r["anchor"] = [a for a in r.get("anchor", []) if a["seed"] in seeds]
    merged = dict(reports[0])
    merged["command"] = [r["command"] for r in reports]
    merged["merged_from"] = list(paths)
    merged["machine_per_run"] = [r["machine"] for r in reports]
    merged["config_per_run"] = [r["config"] for r in reports]
    merged["results"] = [x for r in reports for x in r["results"]]
    merged["anchor"] = [a for r in reports for a in r.get("anchor", [])]
    for r in reports:
        if r.get("throughput"):
            merged["throughput"] = r["throughput"]
    merged["finished"] = max(r.get("finished", "") for r in reports)
    save_report(merged, out_dir, stem)
    merged["plots"] = make_plots(merged, out_dir, stem)
    save_report(merged, out_dir, stem)
    return merged


def save_report(report: dict, out_dir: Path, stem: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    report["ratios"] = compare(report["results"])
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
    if report["results"]:
        (out_dir / f"{stem}.md").write_text(markdown_table(report))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/shared/data/chebi20/original", help="ChEBI-20 pairs (folder/file).")
    parser.add_argument(
        "--pool", default=None, help="derived/cid_split_smiles.tsv: the `all` candidate pool (omit: split pool only)."
    )
    parser.add_argument("--text-encoder", default=None, help="Frozen text encoder folder (default: MiniLM-L6).")
    parser.add_argument("--cache-dir", default=None, help="Where the prepared data is cached.")
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--stem", default="class_vs_baseline", help="Output file names.")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes for a smoke test.")
    parser.add_argument("--backbones", nargs="*", default=None, help="Subset of backbones to run.")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="Dual-encoder seeds.")
    parser.add_argument("--epochs", type=int, default=None, help="Override every backbone's epochs.")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--no-anchor", action="store_true", help="Skip the linear anchor.")
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS), help="Arms to run.")
    parser.add_argument("--no-fingerprint", action="store_true", help="Dual encoder without the fingerprint branch.")
    parser.add_argument(
        "--nested-random-subset",
        action="store_true",
        help="random_subset pools nested in one fixed permutation (not re-drawn every epoch), like easy-first's.",
    )
    parser.add_argument(
        "--merge", nargs="*", default=None, help="Merge these result JSONs (results, anchors, throughput) and report."
    )
    parser.add_argument("--max-length", type=int, default=128, help="Token limit of the frozen text encoder.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    parser.add_argument(
        "--class-override",
        nargs="*",
        default=[],
        help="key=value CLASS settings (e.g. difficulty_source=fingerprint).",
    )
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if ns.merge:
        return merge_reports(ns.merge, Path(ns.out_dir), ns.stem, ns.seeds)
    for noisy in ("transformers", "datasets", "class_hf.trainer", "class_hf.curriculum"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if ns.threads:
        torch.set_num_threads(ns.threads)
    cfg = default_config(ns.quick)
    if ns.epochs:
        for size in cfg["sizes"].values():
            size["epochs"] = ns.epochs
    if ns.no_fingerprint:
        cfg["sizes"]["dual_encoder"]["fingerprint"] = False
    if ns.backbones is not None:
        cfg["backbones"] = {b: cfg["backbones"].get(b, [0]) for b in ns.backbones}
    if ns.seeds is not None and "dual_encoder" in cfg["backbones"]:
        cfg["backbones"]["dual_encoder"] = ns.seeds
    overrides = {}
    for item in ns.class_override:
        key, _, value = item.partition("=")
        overrides[key] = float(value) if value.replace(".", "", 1).isdigit() else value
    cfg["class_overrides"] = overrides
    cfg["nested_random_subset"] = ns.nested_random_subset

    encoder_path = ns.text_encoder or str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    encoder = AutoModel.from_pretrained(encoder_path)
    cache_dir = ns.cache_dir or str(ROOT / "benchmarks" / ".cache" / f"{Path(ns.data).stem}-{Path(encoder_path).name}")
    need_tokens = "orma" in cfg["backbones"]
    data = prepare(
        ns.data,
        ns.pool,
        cache_dir,
        text_encoder=encoder,
        tokenizer=tokenizer,
        max_length=ns.max_length,
        with_tokens=need_tokens,
    )
    del encoder
    if not need_tokens:
        data.token_states = None
    data.text_config = AutoConfig.from_pretrained(encoder_path)
    out_dir = Path(ns.out_dir)
    report: dict[str, Any] = {
        "benchmark": "class_vs_baseline",
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else f"main({argv})",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "text_encoder": encoder_path,
        "config": cfg,
        "data": {
            **data.info,
            "all_pool_size": (len(data.splits["test"]) + len(data.pool_extra))
            if data.pool_extra is not None
            else None,
        },
        "anchor": [],
        "results": [],
    }
    seeds = sorted({s for ss in cfg["backbones"].values() for s in ss})
    for seed in seeds:
        if not ns.no_anchor:
            report["anchor"].append(run_anchor(seed, data))
            save_report(report, out_dir, ns.stem)
        for backbone, bseeds in cfg["backbones"].items():
            if seed not in bseeds:
                continue
            for arm in ns.arms:
                with tempfile.TemporaryDirectory() as tmp:
                    report["results"].append(run_arm(backbone, arm, seed, data, cfg, tmp))
                report["machine"]["load_average_now"] = list(os.getloadavg())
                save_report(report, out_dir, ns.stem)
    if not ns.no_throughput:
        report["throughput"] = measure_throughput(data, cfg, cfg["throughput_steps"], cfg["throughput_repeats"])
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save_report(report, out_dir, ns.stem)
    report["plots"] = make_plots(report, out_dir, ns.stem)
    save_report(report, out_dir, ns.stem)
    logger.info("Wrote %s", out_dir / f"{ns.stem}.json")
    return report


if __name__ == "__main__":
    main()
