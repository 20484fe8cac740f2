"""GPU check: the dual encoder and ORMA at SciBERT size on one GPU: bf16 step throughput and CLASS against baseline.

One script of at most ``--max-minutes`` (default 9) for a GPU session (``scripts/gpu_check.sh`` runs it on the device
machine; ``docs/gpu.md`` says how). On the GPU it measures:

(a) **Step throughput** of every ``--backbones`` entry (default: the dual encoder and ORMA) in each of
    ``--precisions`` (bf16 and fp32 for comparison), at ``--batch_size`` 32 (ORMA's and Text2Mol's batch size): a
    ``CurriculumTrainer`` run with the curriculum off of ``--untimed_steps`` + ``--timed_steps`` optimizer steps, the
    whole text encoder fine-tuned. Samples/s and optimizer steps/s over the timed steps (the GPU synchronised at every
    step end) include data loading, forward, backward and the optimizer step; peak GPU memory is recorded.
(b) **CLASS against baseline**: for every ``--compare_backbones`` entry, ``baseline`` (curriculum off) and ``class``
    (CLASS defaults: easy-first over 4 stages, difficulty from a warm-up copy, per-sample weights, learning-rate stage
    multiplier) with the same seed, in bf16, for as many epochs (up to ``--epochs``) as the budget allows. Validation
    MRR (mean of both directions) after every epoch and the wall seconds at that point; wall seconds of each arm with
    the difficulty scoring included.

The text encoder is a BERT built from a SciBERT-sized config (hidden 768, 12 layers, 12 heads, intermediate 3072,
vocabulary 31,090, 512 positions) with **random weights**: nothing is downloaded. SciBERT's weights are not needed for
throughput, which depends only on the shapes; for the same reason the MRRs of (b) are those of a text encoder trained
from scratch for a few epochs on 5,235 pairs, not of fine-tuned SciBERT. The texts are tokenized with class-hf's
word-level tokenizer built from the training descriptions (``word_level_tokenizer``; SciBERT's WordPiece vocabulary
is not available offline, and its texts come out somewhat longer). The molecule sides keep each backbone's defaults.

Data: the real ChEBI-20 pairs bundled with class-hf (``load_chebi20("bundled")``), re-split 80/10/10 by CID
(``resplit_by_cid``, seed 0); (b) trains on ``train`` and evaluates on ``validation``.

The budget: every measurement stops at its share of the time left, and (b) runs only as many epochs as the measured
throughput says fit (both arms of a backbone the same number); a run stopped early is marked ``cut_by_budget``. The
JSON is rewritten after every measurement, so a killed run still leaves what it measured. A measurement that fails
is recorded with its error and the script goes on (exit code 1 at the end).

``--tiny`` runs the same code path on the CPU with a tiny BERT (hidden 32, 2 layers) and tiny molecule sides, 64
training and 32 validation pairs, in well under a minute: a smoke test (``tests/test_gpu_check.py``), not a
measurement. Without a CUDA GPU, bf16 is not measured (the report says so); without ``--tiny`` the script refuses to
run on the CPU.

    python benchmarks/gpu_check.py                      # on a GPU machine; or: bash scripts/gpu_check.sh
    python benchmarks/gpu_check.py --tiny --output_dir runs/gpu_check

Writes ``<output_dir>/<name>.json`` and ``<name>.md`` (default ``benchmarks/results/gpu_check.*``; ``gpu_check_tiny.*``
with ``--tiny``), labelled with the GPU model, the torch/CUDA/transformers versions and the timings.
"""

from __future__ import annotations

import time

_START = time.monotonic()  # the budget counts from here (before the heavy imports)

import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the data-loader workers fork after tokenizing

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import BertConfig, HfArgumentParser, TrainerCallback, set_seed  # noqa: E402
from typing_extensions import override  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
logger = logging.getLogger("gpu_check")

SCIBERT_TEXT: dict[str, int] = {
    "vocab_size": 31090,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
}
TINY_TEXT: dict[str, int] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "max_position_embeddings": 128,
}
# Molecule sides of --tiny (as recipes/configs/*_tiny.yaml); the GPU run keeps every backbone's defaults.
TINY_MODEL: dict[str, dict[str, Any]] = {
    "dual_encoder": {"gnn_hidden_size": 32, "gnn_num_layers": 2, "projection_dim": 32},
    "orma": {"emb_dim": 32, "num_gnn_layers": 2, "ot_iterations": 10, "max_atoms": 64, "max_motifs": 16},
}
# The two arms of (b), as benchmarks/class_vs_baseline.py: the baseline is a plain Trainer run.
ARMS: dict[str, dict[str, Any]] = {
    "baseline": {"curriculum": "none", "intensity_beta": 0.0, "intensity_target": "none"},
    "class": {},
}
PRECISIONS = ("bf16", "fp32")
RESERVE_SECONDS = 15.0  # kept back from the budget for the last evaluation and the report
ARM_OVERHEAD_SECONDS = 15.0  # model build, Trainer set-up and the first steps of one (b) run (estimate)


@dataclass
class GpuCheckArguments:
    """What to measure; every field is a command-line option (``--max-minutes 5`` or ``--max_minutes 5``)."""

    tiny: bool = field(default=False, metadata={"help": "CPU smoke test with tiny models and 96 pairs."})
    max_minutes: float = field(default=9.0, metadata={"help": "Wall-clock budget of the whole script."})
    backbones: list[str] = field(
        default_factory=lambda: ["dual_encoder", "orma"], metadata={"help": "Backbones of the throughput part."}
    )
    precisions: list[str] = field(
        default_factory=lambda: list(PRECISIONS), metadata={"help": "bf16 and/or fp32 (throughput part)."}
    )
    batch_size: int = field(default=32, metadata={"help": "Training batch size (throughput and comparison)."})
    untimed_steps: int = field(default=3, metadata={"help": "Optimizer steps before timing starts (>= 1)."})
    timed_steps: int = field(default=20, metadata={"help": "Timed optimizer steps per throughput configuration."})
    compare_backbones: list[str] = field(
        default_factory=lambda: ["dual_encoder", "orma"], metadata={"help": "Backbones of the CLASS-vs-baseline part."}
    )
    arms: list[str] = field(default_factory=lambda: list(ARMS), metadata={"help": "baseline and/or class."})
    compare_precision: str = field(default="bf16", metadata={"help": "Precision of the comparison (fp32 on CPU)."})
    epochs: int = field(default=8, metadata={"help": "Most epochs of a comparison run (fewer if the budget says)."})
    min_epochs: int = field(default=2, metadata={"help": "A comparison that fits fewer epochs is skipped."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate of every parameter group."})
    lr_warmup_steps: int = field(default=50, metadata={"help": "Linear learning-rate warm-up steps."})
    eval_batch_size: int = field(default=128, metadata={"help": "Evaluation and difficulty-scoring batch size."})
    max_length: int = field(default=256, metadata={"help": "Tokens per text."})
    dataloader_num_workers: int = field(default=4, metadata={"help": "Data-loader worker processes."})
    num_proc: int | None = field(default=None, metadata={"help": "Featurization processes (default: up to 8)."})
    seed: int = field(default=0, metadata={"help": "Seed of the models and the runs."})
    output_dir: str = field(default=str(RESULTS), metadata={"help": "Where the JSON and the table go."})
    name: str | None = field(default=None, metadata={"help": "Basename (default gpu_check / gpu_check_tiny)."})

    def __post_init__(self) -> None:
        if self.tiny:  # the smoke test's sizes, whatever else was given
            self.batch_size, self.untimed_steps, self.timed_steps = 8, 1, 3
            self.epochs, self.min_epochs, self.lr_warmup_steps = 4, 1, 0
            self.eval_batch_size, self.max_length, self.dataloader_num_workers, self.num_proc = 32, 64, 0, None
        if self.name is None:
            self.name = "gpu_check_tiny" if self.tiny else "gpu_check"
        from class_hf.models.registry import get_backbone

        for backbone in {*self.backbones, *self.compare_backbones}:
            get_backbone(backbone)  # a ValueError naming the known backbones
        unknown = {*self.precisions, self.compare_precision} - set(PRECISIONS)
        if unknown:
            raise ValueError(f"Unknown precision(s) {sorted(unknown)}; choose from {list(PRECISIONS)}.")
        if set(self.arms) - set(ARMS):
            raise ValueError(f"Unknown arm(s) {sorted(set(self.arms) - set(ARMS))}; choose from {list(ARMS)}.")
        if self.untimed_steps < 1 or self.timed_steps < 1:
            raise ValueError("`untimed_steps` and `timed_steps` must be >= 1 (timing starts after an untimed step).")
        if self.max_minutes <= 0 or self.epochs < 1 or self.min_epochs < 1:
            raise ValueError("`max_minutes`, `epochs` and `min_epochs` must be positive.")


# ------------------------------------------------------------------------------------------------------ machine
def device_info(tiny: bool) -> dict[str, Any]:
    """The GPU the run measures (model, memory, compute capability, bf16 support), or the CPU with ``tiny``."""
    if tiny or not torch.cuda.is_available():
        name = platform.processor() or platform.machine()
        return {"type": "cpu", "name": name, "cpu_count": os.cpu_count(), "cuda_available": torch.cuda.is_available()}
    props = torch.cuda.get_device_properties(0)
    return {
        "type": "cuda",
        "name": torch.cuda.get_device_name(0),
        "count": torch.cuda.device_count(),
        "memory_gib": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
        "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
        "bf16_supported": torch.cuda.is_bf16_supported(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "cpu_count": os.cpu_count(),
    }


def versions() -> dict[str, str | None]:
    """Versions of Python and of the libraries the measurements depend on."""
    import importlib

    found: dict[str, str | None] = {"python": platform.python_version(), "cuda": torch.version.cuda}
    for module in ("torch", "transformers", "accelerate", "datasets", "tokenizers", "torch_geometric", "rdkit"):
        try:
            found[module] = importlib.import_module(module).__version__
        except Exception:  # a missing library is reported, not fatal here
            found[module] = None
    import class_hf

    found["class_hf"] = class_hf.__version__
    return found


def usable_precisions(wanted: list[str], device: dict[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
    """The precisions this device can be measured in, and why the others are skipped."""
    keep, skipped = [], []
    for precision in wanted:
        if precision == "bf16" and device["type"] != "cuda":
            skipped.append({"what": "bf16", "why": "no CUDA GPU: bf16 speed is only measured on a GPU"})
        elif precision == "bf16" and not device.get("bf16_supported"):
            skipped.append({"what": "bf16", "why": f"{device['name']} does not support bf16"})
        else:
            keep.append(precision)
    return keep, skipped


# --------------------------------------------------------------------------------------------------------- budget
class Budget:
    """The wall-clock deadline of the script (counted from its start) and the shares handed out of it."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes
        self.deadline = _START + minutes * 60.0 - RESERVE_SECONDS

    def left(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def share(self, fraction: float) -> float:
        """A deadline ``fraction`` of the time left from now."""
        return time.monotonic() + fraction * self.left()


class RunMonitor(TrainerCallback):
    """Step end times (the GPU synchronised when asked), validation MRR after every evaluation, and a deadline.

    Training stops at the first step end after ``deadline`` once ``min_steps`` steps are done (``cut_by_budget``).
    """

    def __init__(self, deadline: float, *, min_steps: int = 1, synchronize: bool = False) -> None:
        self.deadline, self.min_steps, self.synchronize = deadline, min_steps, synchronize
        self.started = time.perf_counter()
        self.step_ends: list[float] = []
        self.evaluations: list[dict[str, float]] = []
        self.cut_by_budget = False

    @override
    def on_step_end(self, args, state, control, **kwargs):  # noqa: ARG002
        if self.synchronize:
            torch.cuda.synchronize()
        self.step_ends.append(time.perf_counter())
        if time.monotonic() > self.deadline and len(self.step_ends) >= self.min_steps:
            self.cut_by_budget = not control.should_training_stop
            control.should_training_stop = True

    @override
    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ARG002
        self.evaluations.append(
            {
                "epoch": round(float(state.epoch or 0.0), 3),
                "mrr": float(metrics["eval_mrr"]),
                "t2m_mrr": float(metrics["eval_t2m_mrr"]),
                "m2t_mrr": float(metrics["eval_m2t_mrr"]),
                "wall_seconds": round(time.perf_counter() - self.started, 2),
            }
        )


# ----------------------------------------------------------------------------------------------------------- data
@dataclass
class Data:
    """The featurized splits, the tokenizer and what the report says about them."""

    train: Any
    validation: Any
    tokenizer: Any
    info: dict[str, Any]


def prepare_data(bench: GpuCheckArguments) -> Data:
    """Bundled ChEBI-20, re-split 80/10/10 by CID, featurized (graphs), and the word-level tokenizer."""
    from datasets import DatasetDict

    from class_hf.data import MoleculeFeatures, load_chebi20, resplit_by_cid
    from class_hf.recipe.building import word_level_tokenizer

    start = time.perf_counter()
    splits = resplit_by_cid(load_chebi20("bundled"), (0.8, 0.1, 0.1), seed=0)
    sizes = {name: len(part) for name, part in splits.items()}
    keep = {"train": 64, "validation": 32} if bench.tiny else {"train": None, "validation": None}
    splits = DatasetDict({k: splits[k].select(range(n)) if n else splits[k] for k, n in keep.items()})
    num_proc = bench.num_proc if bench.num_proc is not None else (None if bench.tiny else min(8, os.cpu_count() or 1))
    splits = MoleculeFeatures().featurize(splits, num_proc=num_proc, desc=None)  # graphs: what both backbones read
    texts = splits["train"]["description"]
    tokenizer = word_level_tokenizer(texts, model_max_length=bench.max_length)
    sample = texts[:1000]
    lengths = [len(ids) for ids in tokenizer(sample, truncation=True, max_length=bench.max_length)["input_ids"]]
    atoms = splits["train"]["num_nodes"]
    info = {
        "source": "ChEBI-20 pairs bundled with class-hf (validation + test, 6,562), re-split 80/10/10 by CID",
        "split_sizes": sizes,
        "used": {name: len(part) for name, part in splits.items()},
        "tokenizer": f"class-hf word-level tokenizer from the {len(texts)} training descriptions",
        "tokenizer_size": len(tokenizer),
        "max_length": bench.max_length,
        "tokens_per_text_mean": round(statistics.fmean(lengths), 1),
        "tokens_per_text_truncated_share": round(sum(n >= bench.max_length for n in lengths) / len(lengths), 3),
        "atoms_per_molecule_mean": round(statistics.fmean(atoms), 1),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return Data(splits["train"], splits["validation"], tokenizer, info)


# ---------------------------------------------------------------------------------------------------------- model
def text_config(bench: GpuCheckArguments, vocab_size: int) -> BertConfig:
    """The SciBERT-sized BERT config (tiny with ``--tiny``), its vocabulary at least the tokenizer's."""
    sizes = dict(TINY_TEXT if bench.tiny else SCIBERT_TEXT)
    sizes["vocab_size"] = max(sizes.get("vocab_size", 0), vocab_size)
    return BertConfig(**sizes)


def build_model(backbone: str, bench: GpuCheckArguments, vocab_size: int) -> torch.nn.Module:
    """A new backbone from the registry, its text encoder built from :func:`text_config` (random weights)."""
    from class_hf.models.registry import get_backbone

    overrides = dict(TINY_MODEL.get(backbone, {})) if bench.tiny else {}
    set_seed(bench.seed)
    return get_backbone(backbone).build(
        text_config=text_config(bench, vocab_size), text_encoder_name_or_path=None, **overrides
    )


def on_gpu(bench: GpuCheckArguments) -> bool:
    """Whether the runs go to the GPU (not with ``--tiny``, which always runs on the CPU)."""
    return torch.cuda.is_available() and not bench.tiny


def training_arguments(bench: GpuCheckArguments, output_dir: str, precision: str, arm: str, **overrides: Any) -> Any:
    """``CurriculumTrainingArguments`` of one run: the arm's curriculum settings, no checkpoints, no reports."""
    from class_hf.training_args import CurriculumTrainingArguments

    return CurriculumTrainingArguments(
        output_dir=output_dir,
        seed=bench.seed,
        bf16=precision == "bf16",
        use_cpu=not on_gpu(bench),
        per_device_train_batch_size=bench.batch_size,
        per_device_eval_batch_size=bench.eval_batch_size,
        learning_rate=bench.learning_rate,
        text_encoder_learning_rate=bench.learning_rate,  # a text encoder from scratch: no fine-tuning rate
        weight_decay=0.0,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=bench.lr_warmup_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=bench.dataloader_num_workers,
        dataloader_persistent_workers=bench.dataloader_num_workers > 0,
        dataloader_pin_memory=on_gpu(bench),
        **ARMS[arm],
        **overrides,
    )


def make_trainer(model: torch.nn.Module, args: Any, data: Data, monitor: RunMonitor, evaluate: bool) -> Any:
    """A ``CurriculumTrainer`` over the training split (and the validation split when ``evaluate``)."""
    from class_hf.data import MoleculeFeatures
    from class_hf.trainer import CurriculumTrainer

    features = MoleculeFeatures.for_model(model)
    train = features.featurize(data.train, desc=None)  # a no-op unless this model reads more than graphs
    validation = features.featurize(data.validation, desc=None) if evaluate else None
    return CurriculumTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=features.collator(data.tokenizer, max_length=data.info["max_length"], model=model),
        processing_class=data.tokenizer,
        callbacks=[monitor],
    )


def free_memory() -> None:
    """Returns the memory of the models just dropped (the next run starts from an empty GPU)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------ (a) throughput
def measure_throughput(
    backbone: str, precision: str, deadline: float, data: Data, bench: GpuCheckArguments, tmp: str
) -> dict[str, Any]:
    """Samples/s and optimizer steps/s of ``untimed_steps + timed_steps`` training steps (curriculum off).

    Args:
        backbone (str): the registry name.
        precision (str): ``bf16`` or ``fp32``.
        deadline (float): ``time.monotonic()`` after which the run stops (after at least 2 timed steps).
        data (Data): the prepared data.
        bench (GpuCheckArguments): the settings.
        tmp (str): a scratch folder for the Trainer's ``output_dir``.

    Returns:
        dict: the measurement.
    """
    model = build_model(backbone, bench, len(data.tokenizer))
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    steps = bench.untimed_steps + bench.timed_steps
    args = training_arguments(
        bench, f"{tmp}/{backbone}-{precision}", precision, "baseline", max_steps=steps, logging_strategy="no"
    )
    monitor = RunMonitor(deadline, min_steps=bench.untimed_steps + 2, synchronize=on_gpu(bench))
    trainer = make_trainer(model, args, data, monitor, evaluate=False)
    if on_gpu(bench):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    peak = round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu(bench) else None
    del trainer, model
    free_memory()
    timed = monitor.step_ends[bench.untimed_steps - 1 :]  # from the end of the last untimed step
    durations = [b - a for a, b in zip(timed, timed[1:], strict=False)]
    seconds = sum(durations)
    return {
        "backbone": backbone,
        "precision": precision,
        "batch_size": bench.batch_size,
        "parameters": parameters,
        "trainable_parameters": trainable,
        "untimed_steps": bench.untimed_steps,
        "timed_steps": len(durations),
        "timed_seconds": round(seconds, 3),
        "samples_per_second": round(bench.batch_size * len(durations) / seconds, 2) if durations else None,
        "optimizer_steps_per_second": round(len(durations) / seconds, 3) if durations else None,
        "median_step_seconds": round(statistics.median(durations), 4) if durations else None,
        "untimed_seconds": round(timed[0] - start, 2) if timed else None,
        "train_call_seconds": round(total, 2),
        "peak_memory_gib": peak,
        "cut_by_budget": monitor.cut_by_budget,
    }


# ---------------------------------------------------------------------------------------------- (b) comparison
def plan_epochs(
    backbone: str, seconds: float, throughput: list[dict[str, Any]], data: Data, bench: GpuCheckArguments
) -> tuple[int, dict[str, Any]]:
    """How many epochs of every arm fit in ``seconds``, from the measured samples/s of ``backbone``.

    Returns ``bench.epochs`` when nothing was measured (each run's deadline then guards the budget).

    Returns:
        tuple: ``(epochs, estimate)``; ``estimate["arm_seconds"]`` is each arm's expected share of the time.
    """
    from class_hf.curriculum.pacing import get_pacing, planned_sample_passes

    measured = {
        r["precision"]: r["samples_per_second"]
        for r in throughput
        if r.get("backbone") == backbone and r.get("samples_per_second")
    }
    rate = measured.get(bench.compare_precision)
    if rate is None:
        why = f"no {bench.compare_precision} throughput of {backbone} was measured"
        return bench.epochs, {"estimate": None, "why": why, "arm_seconds": {arm: 1.0 for arm in bench.arms}}
    n_train, n_val = len(data.train), len(data.validation)
    scoring_rate = measured.get("fp32", rate)  # the warm-up copy and the scoring pass run without autocast
    epoch = n_train / rate + 2 * n_val / (3 * rate) + 1.0  # training, then two passes over validation (loss, MRR)
    scoring = 0.25 * n_train / scoring_rate + n_train / (3 * scoring_rate) + 5.0
    share = planned_sample_passes(n_train, get_pacing("staged"), bench.epochs) / (bench.epochs * n_train)
    per_epoch = {"baseline": epoch, "class": share * epoch}
    fixed = {"baseline": ARM_OVERHEAD_SECONDS, "class": ARM_OVERHEAD_SECONDS + scoring}
    arms = bench.arms
    fits = int((seconds - sum(fixed[a] for a in arms)) // sum(per_epoch[a] for a in arms))
    epochs = max(0, min(bench.epochs, fits))
    return epochs, {
        "epoch_seconds": round(epoch, 1),
        "class_scoring_seconds": round(scoring, 1),
        "epochs_that_fit": fits,
        "arm_seconds": {a: round(fixed[a] + max(epochs, 1) * per_epoch[a], 1) for a in arms},
    }


def run_arm(
    backbone: str, arm: str, epochs: int, deadline: float, data: Data, bench: GpuCheckArguments, tmp: str
) -> dict[str, Any]:
    """One comparison run: validation MRR after every epoch, wall seconds (difficulty scoring included).

    Args:
        backbone (str): the registry name.
        arm (str): ``baseline`` or ``class``.
        epochs (int): training epochs.
        deadline (float): ``time.monotonic()`` after which training stops (``cut_by_budget``).
        data (Data): the prepared data.
        bench (GpuCheckArguments): the settings.
        tmp (str): a scratch folder for the Trainer's ``output_dir``.

    Returns:
        dict: the run's curve and totals.
    """
    model = build_model(backbone, bench, len(data.tokenizer))
    args = training_arguments(
        bench,
        f"{tmp}/{backbone}-{arm}",
        bench.compare_precision,
        arm,
        num_train_epochs=epochs,
        eval_strategy="epoch",
        logging_strategy="epoch",
    )
    monitor = RunMonitor(deadline, min_steps=1)
    trainer = make_trainer(model, args, data, monitor, evaluate=True)
    trainer.train()
    wall = time.perf_counter() - monitor.started
    summary = trainer.curriculum_summary()
    losses = [
        {"epoch": round(float(log["epoch"]), 3), "loss": float(log["loss"])}
        for log in trainer.state.log_history
        if "loss" in log and "epoch" in log
    ]
    del trainer, model
    free_memory()
    best = max(monitor.evaluations, key=lambda point: point["mrr"], default=None)
    return {
        "backbone": backbone,
        "arm": arm,
        "precision": bench.compare_precision,
        "seed": bench.seed,
        "epochs": epochs,
        "val_curve": monitor.evaluations,
        "best_val_mrr": best["mrr"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "wall_seconds": round(wall, 2),
        "scoring_seconds": round(float(summary["scoring_seconds"]), 2),
        "samples_seen": summary["samples_seen"],
        "optimizer_steps": summary["optimizer_steps"],
        "train_loss": losses,
        "cut_by_budget": monitor.cut_by_budget,
    }


# -------------------------------------------------------------------------------------------------------- report
def _fmt(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a title naming the device and the versions, then one table per part."""
    device, ver = report["device"], report["versions"]
    if device["type"] == "cuda":
        where = f"{device['memory_gib']} GiB GPU memory, compute capability {device['capability']}"
    else:
        where = "no GPU"
    lines = [
        f"## GPU check: {report['label']}",
        "",
        f"torch {ver['torch']} (CUDA {ver['cuda'] or '–'}), transformers {ver['transformers']}, accelerate "
        f"{ver['accelerate']}, datasets {ver['datasets']}, torch_geometric {ver['torch_geometric']}, rdkit "
        f"{ver['rdkit']}, Python {ver['python']}; {where}, {device.get('cpu_count')} CPU cores. Measured "
        f"{report['measured_at']}: {report['wall_seconds']:.0f} s of a {report['settings']['max_minutes']:g}-minute "
        "budget.",
        "",
        "**(a) Step throughput** (text encoder fine-tuned; data loading, forward, backward and optimizer step):",
        "",
        "| backbone | precision | batch | parameters | samples/s | optimizer steps/s | median step ms "
        "| peak GPU memory GiB | timed steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["throughput"]:
        if "error" in r:
            lines.append(f"| {r['backbone']} | {r['precision']} | – | – | error: {r['error']} | | | | |")
            continue
        median = r["median_step_seconds"]
        lines.append(
            f"| {r['backbone']} | {r['precision']} | {r['batch_size']} | {r['parameters'] / 1e6:.1f} M | "
            f"{_fmt(r['samples_per_second'], 1)} | {_fmt(r['optimizer_steps_per_second'])} | "
            f"{_fmt(median * 1000 if median is not None else None, 1)} | {_fmt(r['peak_memory_gib'])} | "
            f"{r['timed_steps']}{' (cut)' if r['cut_by_budget'] else ''} |"
        )
    lines += [
        "",
        "**(b) CLASS against baseline** (same seed; validation MRR, mean of both directions, after each epoch):",
        "",
        "| backbone | arm | precision | epochs | validation MRR per epoch | best | wall s | scoring s "
        "| samples seen | optimizer steps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["comparison"]:
        if "error" in r or "skipped" in r:
            note = f"error: {r['error']}" if "error" in r else f"skipped: {r['skipped']}"
            lines.append(f"| {r['backbone']} | {r['arm']} | – | – | {note} | | | | | |")
            continue
        curve = ", ".join(f"{p['mrr']:.3f}" for p in r["val_curve"])
        lines.append(
            f"| {r['backbone']} | {r['arm']} | {r['precision']} | {r['epochs']}"
            f"{' (cut)' if r['cut_by_budget'] else ''} | {curve} | {_fmt(r['best_val_mrr'], 3)} | "
            f"{r['wall_seconds']:.1f} | {r['scoring_seconds']:.1f} | {r['samples_seen']} | {r['optimizer_steps']} |"
        )
    text, data = report["text_encoder"], report["data"]
    lines += [
        "",
        f"Text encoder: BERT built from a config ({text['config']['num_hidden_layers']} layers, hidden "
        f"{text['config']['hidden_size']}, vocabulary {text['config']['vocab_size']}); its weights: "
        f"{text['weights']}. Data: {data.get('source')}; {data.get('tokenizer')}, "
        f"{data.get('tokens_per_text_mean')} tokens per text on average (at most {data.get('max_length')}).",
    ]
    for skipped in report["skipped"]:
        lines.append(f"Not measured: {skipped['what']} ({skipped['why']}).")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], bench: GpuCheckArguments) -> None:
    """Writes ``<name>.json`` and ``<name>.md`` (called after every measurement)."""
    report["wall_seconds"] = round(time.monotonic() - _START, 1)
    output = Path(bench.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{bench.name}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (output / f"{bench.name}.md").write_text(markdown(report))


def guarded(report: dict[str, Any], what: dict[str, Any], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``, or ``what`` with the error when it fails (listed with its traceback in ``report["errors"]``)."""
    try:
        return run()
    except Exception as error:  # one failed measurement must not lose the others
        logger.exception("%s failed", what)
        report["errors"].append({**what, "error": repr(error), "traceback": traceback.format_exc(limit=8)})
        free_memory()
        return {**what, "error": f"{type(error).__name__}: {str(error)[:200]}"}


def new_report(
    bench: GpuCheckArguments, device: dict[str, Any], skipped: list[dict[str, str]], argv: list[str] | None
) -> dict[str, Any]:
    """The report before any measurement: what is measured, where, with which versions."""
    if device["type"] == "cuda":
        label = f"{device['name']} ({device['memory_gib']} GiB)"
    else:
        label = "CPU, tiny smoke test (not a GPU measurement)"
    return {
        "benchmark": "gpu_check",
        "mode": "tiny" if bench.tiny else "gpu",
        "label": label,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "device": device,
        "versions": versions(),
        "settings": asdict(bench),
        "text_encoder": {
            "config": dict(TINY_TEXT if bench.tiny else SCIBERT_TEXT),
            "weights": "random, built from the config (no download); SciBERT's weights are not needed for "
            "throughput, which depends only on the shapes",
        },
        "skipped": skipped,
        "data": {},
        "throughput": [],
        "plan": {},
        "comparison": [],
        "errors": [],
        "complete": False,
    }


def run_throughput(
    report: dict[str, Any], precisions: list[str], deadline: float, data: Data, bench: GpuCheckArguments, tmp: str
) -> None:
    """Part (a): every backbone in every precision, each with an equal share of the time left to ``deadline``."""
    configs = [(backbone, precision) for backbone in bench.backbones for precision in precisions]
    for i, (backbone, precision) in enumerate(configs):
        own = time.monotonic() + max(0.0, deadline - time.monotonic()) / (len(configs) - i)
        result = guarded(
            report,
            {"backbone": backbone, "precision": precision},
            lambda b=backbone, p=precision, d=own: measure_throughput(b, p, d, data, bench, tmp),
        )
        report["throughput"].append(result)
        write_report(report, bench)
        logger.info("Throughput %s %s: %s samples/s", backbone, precision, result.get("samples_per_second"))


def run_comparison(report: dict[str, Any], budget: Budget, data: Data, bench: GpuCheckArguments, tmp: str) -> None:
    """Part (b): per backbone an equal share of the time left, split between its arms as the plan expects."""
    backbones = bench.compare_backbones
    for i, backbone in enumerate(backbones):
        seconds = budget.left() / (len(backbones) - i)
        until = time.monotonic() + seconds
        epochs, estimate = plan_epochs(backbone, seconds, report["throughput"], data, bench)
        report["plan"][backbone] = {"seconds": round(seconds, 1), "epochs": epochs, **estimate}
        logger.info("Comparison %s: %d epoch(s) in %.0f s (%s).", backbone, epochs, seconds, estimate)
        costs = estimate["arm_seconds"]
        for j, arm in enumerate(bench.arms):
            if epochs < bench.min_epochs:
                why = f"{epochs} epoch(s) fit in {seconds:.0f} s; at least {bench.min_epochs} wanted"
                report["comparison"].append({"backbone": backbone, "arm": arm, "skipped": why})
                continue
            weight = costs[arm] / sum(costs[a] for a in bench.arms[j:])
            deadline = min(budget.deadline, time.monotonic() + weight * max(0.0, until - time.monotonic()))
            result = guarded(
                report,
                {"backbone": backbone, "arm": arm},
                lambda b=backbone, a=arm, e=epochs, d=deadline: run_arm(b, a, e, d, data, bench, tmp),
            )
            report["comparison"].append(result)
            write_report(report, bench)
            logger.info("%s / %s: best validation MRR %s", backbone, arm, result.get("best_val_mrr"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the check and writes the report.

    Args:
        argv (list[str] | None): the options (default: the command line).

    Returns:
        dict: the report (also written as ``<output_dir>/<name>.json`` and ``.md``).

    Raises:
        SystemExit: no CUDA GPU without ``--tiny``; exit code 1 when a measurement failed.
    """
    (bench,) = HfArgumentParser(GpuCheckArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    transformers.logging.set_verbosity_warning()
    if not bench.tiny and not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA GPU (SciBERT-size training); use --tiny for the CPU smoke test.")
    if bench.tiny:
        torch.set_num_threads(1)  # tiny models: one thread is faster, and much faster on a busy machine
    device = device_info(bench.tiny)
    precisions, skipped = usable_precisions(bench.precisions, device)
    if bench.compare_precision == "bf16" and "bf16" not in usable_precisions(["bf16"], device)[0]:
        bench.compare_precision = "fp32"
        skipped.append({"what": "bf16 comparison", "why": "bf16 is not measured here: the comparison runs in fp32"})
    budget = Budget(bench.max_minutes)
    report = new_report(bench, device, skipped, argv)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        data = prepare_data(bench)
        report["data"] = data.info
        report["text_encoder"]["config"]["vocab_size"] = text_config(bench, len(data.tokenizer)).vocab_size
        write_report(report, bench)
        logger.info("Data ready in %.1f s: %s; %.0f s left.", data.info["seconds"], data.info["used"], budget.left())
        comparing = bool(bench.compare_backbones and bench.arms)
        run_throughput(report, precisions, budget.share(0.4) if comparing else budget.deadline, data, bench, tmp)
        if comparing:
            run_comparison(report, budget, data, bench, tmp)
    report["complete"] = True
    write_report(report, bench)
    print(markdown(report))
    if report["errors"]:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
