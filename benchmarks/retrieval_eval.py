"""Benchmark: cost of ranking a ChEBI-20 test split, both directions, in both candidate pools.

3,301 text and 3,301 molecule queries (the test split) are ranked against their own split (pool ``split``) and against
all 33,010 molecules / texts of ChEBI-20 (pool ``all``) with random embeddings, through
``class_hf.evaluation.retrieval.retrieval_metrics``. Targets: <= 10 s and <= 1 GiB of extra memory on 2 cores.

Memory is the peak resident set size during the call minus the resident set size just before it, read from the
kernel (``VmHWM`` after resetting it through ``/proc/self/clear_refs``); where that is unavailable, RSS is sampled
every 2 ms with psutil. The split pool is also checked against a dense full-matrix computation.

    .venv/bin/python benchmarks/retrieval_eval.py                      # 256-d, chunks 256/1024/4096, 2 threads
    .venv/bin/python benchmarks/retrieval_eval.py --dim 768 --chunk-sizes 1024

Writes ``benchmarks/results/retrieval_eval.json``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import torch

from class_hf.evaluation.retrieval import metrics_from_ranks, retrieval_metrics

RESULTS = Path(__file__).parent / "results" / "retrieval_eval.json"


def _rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _kernel_peak_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def measure(fn: Callable[[], object]) -> tuple[object, float, float, int, str]:
    """Run ``fn`` once: ``(result, wall seconds, CPU seconds, peak extra RSS in bytes, how memory was measured)``.

    CPU seconds (user + system, all threads of this process) are less sensitive than wall-clock to other jobs
    sharing the cores.
    """
    gc.collect()
    before = _rss_bytes()
    if _reset_peak():
        cpu, start = time.process_time(), time.perf_counter()
        result = fn()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return result, seconds, cpu, max(0, _kernel_peak_bytes() - before), "VmHWM"
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu, start = time.process_time(), time.perf_counter()
    result = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    done.set()
    sampler.join()
    return result, seconds, cpu, max(0, max(peak[0], _rss_bytes()) - before), "psutil sampling (2 ms)"


def dense_split_metrics(text: torch.Tensor, mol: torch.Tensor) -> dict[str, float]:
    """Reference for the split pool: the full N x N cosine matrix at once."""
    scores = torch.nn.functional.normalize(text, dim=1) @ torch.nn.functional.normalize(mol, dim=1).T
    positive = scores.diagonal()
    rank_t2m = (scores >= positive[:, None]).sum(1)
    rank_m2t = (scores >= positive[None, :]).sum(0)
    return metrics_from_ranks(rank_t2m, rank_m2t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=3301, help="pairs in the evaluated split")
    parser.add_argument("--candidates", type=int, default=33010, help="size of the `all` pool (split included)")
    parser.add_argument("--dim", type=int, default=256, help="embedding dimension")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[256, 1024, 4096], help="query chunk sizes")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (median and min reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.candidates < args.queries:
        parser.error("--candidates must be at least --queries (the pool contains the split).")

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    # Correlated pairs (split-pool MRR about 0.45 at 256-d), so that ranks spread out as with a half-trained model.
    text = torch.randn(args.queries, args.dim, generator=g)
    mol = text + 5.0 * torch.randn(args.queries, args.dim, generator=g)
    num_extra = args.candidates - args.queries
    extra_mol = torch.randn(num_extra, args.dim, generator=g)
    extra_text = torch.randn(num_extra, args.dim, generator=g)
    retrieval_metrics(text[:64], mol[:64], extra_mol_embeds=extra_mol[:64])  # warm-up (kernel selection, allocator)

    load_before = os.getloadavg()
    cases = []
    for pool, extras in (("split", {}), ("all", {"extra_mol_embeds": extra_mol, "extra_text_embeds": extra_text})):
        for chunk_size in args.chunk_sizes:
            runs = [
                measure(functools.partial(retrieval_metrics, text, mol, chunk_size=chunk_size, **extras))
                for _ in range(args.repeats)
            ]
            metrics = runs[0][0]
            seconds, cpu_seconds = [r[1] for r in runs], [r[2] for r in runs]
            cases.append(
                {
                    "pool": pool,
                    "queries_per_direction": args.queries,
                    "candidates": args.queries + (num_extra if extras else 0),
                    "dim": args.dim,
                    "chunk_size": chunk_size,
                    "seconds_median": statistics.median(seconds),
                    "seconds_min": min(seconds),
                    "seconds_all": seconds,
                    "cpu_seconds_median": statistics.median(cpu_seconds),
                    "peak_extra_mib": max(r[3] for r in runs) / 2**20,
                    "memory_method": runs[0][4],
                    "metrics": metrics,
                }
            )
    dense = dense_split_metrics(text, mol)
    split_case = next(c for c in cases if c["pool"] == "split")
    agrees = all(abs(dense[k] - split_case["metrics"][k]) < 1e-12 for k in dense)
    load_after = os.getloadavg()

    header = (
        "| pool | queries x candidates (per direction) | dim | chunk | wall s (median / min) | CPU s (median) "
        "| peak extra MiB |"
    )
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for c in cases:
        print(
            f"| {c['pool']} | {c['queries_per_direction']:,} x {c['candidates']:,} | {c['dim']} | {c['chunk_size']} "
            f"| {c['seconds_median']:.2f} / {c['seconds_min']:.2f} | {c['cpu_seconds_median']:.2f} "
            f"| {c['peak_extra_mib']:.0f} |"
        )
    print(f"\nsplit pool equals the dense N x N reference: {agrees}")
    print(
        f"threads {args.threads}, load average before/after {load_before[0]:.2f}/{load_after[0]:.2f} (shared machine)"
    )

    result = {
        "benchmark": "retrieval_eval",
        "command": "python benchmarks/retrieval_eval.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k != "output"
        ),
        "targets": {"seconds": 10.0, "peak_extra_mib": 1024.0},
        "cases": cases,
        "split_matches_dense_reference": agrees,
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1min_before": load_before[0],
            "load_average_1min_after": load_after[0],
            "note": "machine shared with other jobs; timings vary with their load",
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
