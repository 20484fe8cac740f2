"""Why the dual encoder trailed the frozen-feature linear model: one change at a time, on validation only.

Every row trains the dual encoder of ``class_vs_baseline.py`` without curriculum (the baseline arm, seed 0, the same
re-split of the bundled ChEBI-20 pairs and the same frozen all-MiniLM-L6-v2) with ONE change against the previous
default ("today's" dual encoder: last-layer mean of 128 text tokens, linear text projection on raw features, the
fingerprint added inside the molecule tower, batch 64, learning rate 1e-3 with linear decay, weight decay 1e-4,
12 epochs), and reports its best validation MRR (mean of both directions) and the epoch it was reached. The last rows
combine the changes that helped: the new default. No test metric is computed here.

Run (about an hour on 2 CPU cores; ``--rows`` picks rows by name)::

    python benchmarks/diagnose_dual_encoder.py --jobs 2
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

HERE = Path(__file__).resolve().parent


def _benchmark():
    """The sibling ``class_vs_baseline.py`` (its data preparation and run), loaded from its file."""
    spec = importlib.util.spec_from_file_location("class_vs_baseline", HERE / "class_vs_baseline.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


TODAY_MODEL = {
    "text_pooling_layers": None,
    "text_input_norm": False,
    "fingerprint_fusion": "hidden",
}
TODAY_TRAINING = {
    "per_device_train_batch_size": 64,
    "learning_rate": 1e-3,
    "lr_scheduler_type": "linear",
    "weight_decay": 1e-4,
    "num_train_epochs": 12,
}
TODAY_TOKENS = 128
PLATEAU = {"num_train_epochs": 100}  # with early stopping (patience) instead of a fixed budget

# name -> (what changes, model overrides, training overrides, token limit); applied on top of "today".
ROWS: dict[str, tuple[str, dict[str, Any], dict[str, Any], int | None]] = {
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
COMBINED: dict[str, tuple[str, dict[str, Any], dict[str, Any], int]] = {
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


@dataclass
class DiagnosisArguments:
    rows: list[str] = field(default_factory=lambda: [*ROWS, *COMBINED])
    jobs: int = field(default=1, metadata={"help": "Rows in parallel (one CPU thread each)."})
    patience: int = field(default=8, metadata={"help": "Evaluations without a better validation MRR before stopping."})
    output_dir: str = field(default=str(HERE / "results"))
    cache_dir: str = field(default=str(HERE / ".cache" / "class_vs_baseline"))
    quick: bool = field(default=False, metadata={"help": "Tiny encoder and data (smoke test)."})
    resume: bool = field(
        default=True, metadata={"help": "Keep the rows of an existing report and run only the others."}
    )


def run_row(name: str, diag: DiagnosisArguments) -> dict[str, Any]:
    bench_module = _benchmark()
    bench = bench_module.BenchmarkArguments(cache_dir=diag.cache_dir, quick=diag.quick, pool=None)
    what, model, training, tokens = {**ROWS, **COMBINED}[name]
    if name in ROWS:
        model, training, tokens = {**TODAY_MODEL, **model}, {**TODAY_TRAINING, **training}, tokens or TODAY_TOKENS
    if diag.quick:
        training = {**training, "num_train_epochs": 3, "per_device_train_batch_size": 16}
    patience = diag.patience if training["num_train_epochs"] > 12 else None
    result = bench_module.run_one(
        "dual_encoder",
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
    """Writes ``diagnose_dual_encoder.{json,md}`` (after every row, so an interrupted run keeps what it measured)."""
    today = next((r["best_val_mrr"] for r in rows if r["row"] == "today"), None)
    lines = [
        "| change (one at a time against today's dual encoder) | best val MRR | Δ vs today | best epoch | CPU s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        delta = "–" if today is None or r["row"] == "today" else f"{r['best_val_mrr'] - today:+.3f}"
        lines.append(
            f"| {r['change']} | {r['best_val_mrr']:.3f} | {delta} | {r['best_epoch']:.0f} | {r['cpu_seconds']:.0f} |"
        )
    table = "\n".join(lines) + "\n"
    output = Path(diag.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    name = "diagnose_dual_encoder" + ("_quick" if diag.quick else "")
    (output / f"{name}.json").write_text(json.dumps({"rows": rows, "wall_seconds": wall_seconds}, indent=1))
    (output / f"{name}.md").write_text(table)
    return table


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    (diag,) = HfArgumentParser(DiagnosisArguments).parse_args_into_dataclasses(args=argv)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    report = Path(diag.output_dir) / ("diagnose_dual_encoder" + ("_quick" if diag.quick else "") + ".json")
    if diag.resume and report.exists():
        rows = [r for r in json.loads(report.read_text())["rows"] if r["row"] in diag.rows]
    todo = [name for name in diag.rows if name not in {r["row"] for r in rows}]
    if diag.jobs > 1:
        with ProcessPoolExecutor(max_workers=diag.jobs) as pool:
            for row in pool.map(run_row, todo, [diag] * len(todo)):
                rows.append(row)
                write_report(rows, diag, time.perf_counter() - start)
    else:
        for name in todo:
            rows.append(run_row(name, diag))
            write_report(rows, diag, time.perf_counter() - start)
    print(write_report(rows, diag, time.perf_counter() - start))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
