"""Benchmark: CPU training time against the number of torch intra-op threads (``OMP_NUM_THREADS``).

Two workloads, each run in a fresh process per thread count, the thread counts interleaved round by round:

- ``tiny recipe``: ``recipes/dual_encoder.py --config recipes/configs/dual_encoder_tiny.yaml`` end to end (warm-up
  difficulty scoring, 4 curriculum epochs, evaluation); reported: the training wall time and the whole run's time
  from its ``metrics.json``;
- ``MiniLM step``: one forward + backward of a dual encoder with a MiniLM-L6-sized text encoder (hidden 384, 6 layers)
  and the default GINE molecule tower, batch 32 real ChEBI-20 pairs (``benchmarks/backbone_step_time.py --sizes mid
  --backbones dual_encoder``); reported: the median step's wall and process-CPU seconds.

The thread counts are 1, 2, 4 ... up to the machine's CPUs; the largest equals torch's own default (one thread per
CPU), which class-hf used before it chose a default (``class_hf/runtime.py``). The 1-minute load average is recorded
before and after every run: on a shared machine, more threads than free cores make OpenMP threads wait for each other.

    .venv/bin/python benchmarks/cpu_threads.py                 # 2 rounds
    .venv/bin/python benchmarks/cpu_threads.py --rounds 3 --workloads step

Writes ``benchmarks/results/cpu_threads.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "cpu_threads.json"
PAIRS = ROOT / "class_hf" / "data" / "bundled" / "chebi20" / "validation.csv"  # real ChEBI-20 pairs, shipped


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def tiny_recipe(threads: int, workdir: Path) -> dict:
    out = workdir / f"tiny-{threads}-{time.monotonic_ns()}"
    argv = [sys.executable, "recipes/dual_encoder.py", "--config", "recipes/configs/dual_encoder_tiny.yaml"]
    argv += ["--output_dir", str(out), "--report_to", "none"]
    load, start = _load(), time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=_env(threads), check=True, capture_output=True)
    wall = time.perf_counter() - start
    seconds = json.loads((out / "metrics.json").read_text())["seconds"]
    return {
        "train_s": round(seconds["train_wall"], 2),
        "run_s": round(seconds["total"], 2),
        "process_s": round(wall, 2),
        "load_before": load,
        "load_after": _load(),
    }


def minilm_step(threads: int, workdir: Path) -> dict:
    out = workdir / f"step-{threads}-{time.monotonic_ns()}.json"
    argv = [sys.executable, "benchmarks/backbone_step_time.py", "--sizes", "mid", "--backbones", "dual_encoder"]
    argv += ["--steps", "3", "--warmup", "1", "--threads", str(threads), "--data", str(PAIRS), "--output", str(out)]
    load = _load()
    subprocess.run(argv, cwd=ROOT, env=_env(threads), check=True, capture_output=True)
    row = json.loads(out.read_text())["results"][0]
    return {
        "step_wall_s": row["median_seconds"],
        "step_cpu_s": row["median_cpu_seconds"],
        "load_before": load,
        "load_after": _load(),
    }


WORKLOADS = {"recipe": tiny_recipe, "step": minilm_step}


def thread_counts(cpus: int) -> list[int]:
    counts, n = [], 1
    while n < cpus:
        counts.append(n)
        n *= 2
    return counts + [cpus]


def summarise(runs: list[dict]) -> dict:
    keys = [key for key in runs[0] if not key.startswith("load")]
    summary = {f"{key}_median": round(statistics.median(run[key] for run in runs), 3) for key in keys}
    summary["load_range"] = [min(r["load_before"] for r in runs), max(r["load_after"] for r in runs)]
    summary["runs"] = runs
    return summary


def table(result: dict) -> str:
    lines = []
    for workload, by_threads in result["results"].items():
        metrics = [key for key in next(iter(by_threads.values())) if key.endswith("_median")]
        lines.append(f"\n{workload}:\n")
        lines.append("| threads | " + " | ".join(metrics) + " | load (1 min) |")
        lines.append("|---|" + "---|" * (len(metrics) + 1))
        for threads, row in by_threads.items():
            values = " | ".join(f"{row[m]:.2f}" for m in metrics)
            lines.append(f"| {threads} | {values} | {row['load_range'][0]}-{row['load_range'][1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="Runs per thread count (default: 2).")
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="Thread counts (default: 1, 2, 4 ...).")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON output.")
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    counts = args.threads or thread_counts(cpus)
    results: dict[str, dict[str, list[dict]]] = {w: {str(n): [] for n in counts} for w in args.workloads}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for workload in args.workloads:
                for n in counts:
                    run = WORKLOADS[workload](n, Path(tmp))
                    results[workload][str(n)].append(run)
                    print(workload, n, run, flush=True)
    result = {
        "benchmark": "cpu_threads",
        "command": "python benchmarks/cpu_threads.py " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "machine": {"cpus": cpus, "platform": platform.platform(), "python": platform.python_version()},
        "note": "one process per run; OMP_NUM_THREADS=MKL_NUM_THREADS=threads; load = 1-minute load average",
        "results": {w: {n: summarise(runs) for n, runs in by_n.items()} for w, by_n in results.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    print(f"\nWrote {args.output}")


if __name__ == "__main__":
    main()
