"""Benchmark: CPU seconds of one ``CurriculumTrainer.evaluate`` with and without the evaluation loss.

Every backbone of ``class_vs_baseline.py`` at its benchmark size (same data, cached frozen text features, one CPU
thread) evaluates the 624 validation pairs: the retrieval metrics alone (``eval_loss=False``) and with the loss pass
(``eval_loss=True``, the default). The model is freshly initialised: the cost does not depend on the weights.

    python benchmarks/evaluation_cost.py            # about 2 minutes once the benchmark's data is prepared
    python benchmarks/evaluation_cost.py --quick    # smoke test: a tiny random text encoder, 200 pairs

Writes ``benchmarks/results/evaluation_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(backbone: str, repeats: int, cache_dir: str, quick: bool = False) -> dict[str, object]:
    import torch

    from class_hf.data import MoleculeFeatures
    from class_hf.trainer import CurriculumTrainer
    from class_hf.training_args import CurriculumTrainingArguments

    if str(HERE) not in sys.path:  # the sibling class_vs_baseline.py: its data preparation and model building
        sys.path.insert(0, str(HERE))
    import class_vs_baseline as bench_module

    bench = bench_module.BenchmarkArguments(cache_dir=cache_dir, pool=None, quick=quick)
    torch.set_num_threads(1)
    data = bench_module.prepare(backbone, bench)
    model = bench_module.build_model(backbone, data["encoder"], quick, None)
    splits = bench_module.top_layers(data["splits"], backbone, model, bench)
    collator = MoleculeFeatures.for_model(model).collator(
        data["tokenizer"], max_length=bench_module.TOKEN_LIMITS[backbone], model=model
    )
    out: dict[str, object] = {"backbone": backbone, "pairs": len(splits["validation"])}
    for eval_loss in (False, True):
        args = CurriculumTrainingArguments(
            output_dir=str(Path(cache_dir) / "evaluation_cost"),
            per_device_eval_batch_size=256,
            eval_loss=eval_loss,
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            dataloader_pin_memory=False,
        )
        trainer = CurriculumTrainer(model=model, args=args, eval_dataset=splits["validation"], data_collator=collator)
        seconds = []
        for _ in range(repeats):
            start = time.process_time()
            metrics = trainer.evaluate()
            seconds.append(time.process_time() - start)
        key = "with_loss" if eval_loss else "retrieval_only"
        out[key] = {"cpu_seconds": seconds, "median": statistics.median(seconds), "eval_mrr": metrics["eval_mrr"]}
    return out


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["dual_encoder", "aman", "orma"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache_dir", default=str(HERE / ".cache" / "class_vs_baseline"))
    parser.add_argument("--output_dir", default=str(HERE / "results"))
    parser.add_argument("--quick", action="store_true", help="A tiny random text encoder and 200 pairs (smoke test).")
    args = parser.parse_args(argv)
    rows = [measure(backbone, args.repeats, args.cache_dir, args.quick) for backbone in args.backbones]
    lines = [
        "| backbone | validation pairs | CPU s, retrieval metrics only | CPU s, with the loss pass "
        "| share of the loss pass |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        alone, full = row["retrieval_only"]["median"], row["with_loss"]["median"]
        lines.append(
            f"| {row['backbone']} | {row['pairs']} | {alone:.2f} | {full:.2f} | {(full - alone) / full:.0%} |"
        )
    table = "\n".join(lines) + f"\n\nMedian of {args.repeats} evaluations, one CPU thread; load average "
    table += f"{os.getloadavg()[0]:.1f}.\n"
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/evaluation_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    payload = {"benchmark": "evaluation_cost", "command": command.strip(), "rows": rows}
    (output / "evaluation_cost.json").write_text(json.dumps(payload, indent=1))
    (output / "evaluation_cost.md").write_text(table)
    print(table)
    return rows


if __name__ == "__main__":
    main()
