"""Benchmark: CPU seconds of ORMA's OT loop (IPOT) in the log domain and in linear space.

:func:`class_hf.models.sinkhorn.ipot` runs in linear space where no entry of the plan can underflow
(``domain="auto"``) and in the log domain otherwise. This times both on batches shaped like ORMA's token -> motif
problems (unit vectors, cost ``1 - cosine``, random padding of rows and columns), without gradient as in the model,
one CPU thread, and checks that the two give the same plan and the same token -> motif assignment (ORMA's argmin).

    python benchmarks/ot_solver.py            # a few seconds
    python benchmarks/ot_solver.py --quick    # smoke test: small problems, one repeat

Writes ``benchmarks/results/ot_solver.{json,md}``.
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
# (problems, tokens, motifs): ORMA's benchmark batch (128 texts of up to 128 tokens; the largest molecules have
# about 50 motifs) and a smaller one.
SHAPES = [(128, 128, 48), (32, 64, 16)]
QUICK_SHAPES = [(8, 16, 6)]


def measure(shape: tuple[int, int, int], iterations: int, repeats: int, seed: int = 0) -> dict[str, object]:
    import torch
    import torch.nn.functional as F

    from class_hf.models.sinkhorn import ipot, uniform_marginals

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(seed)
    problems, rows, cols = shape
    x = F.normalize(torch.randn(problems, rows, 64, generator=generator), dim=-1)
    y = F.normalize(torch.randn(problems, cols, 64, generator=generator), dim=-1)
    x_mask = torch.rand(problems, rows, generator=generator) < 0.7
    y_mask = torch.rand(problems, cols, generator=generator) < 0.6
    x_mask[:, 0] = y_mask[:, 0] = True
    cost = 1 - x @ y.transpose(1, 2)
    a, b = uniform_marginals(x_mask, y_mask)
    out: dict[str, object] = {"shape": list(shape), "iterations": iterations}
    plans = {}
    with torch.no_grad():
        for domain in ("log", "linear"):
            plans[domain] = ipot(cost, a, b, beta=0.5, num_iters=iterations, domain=domain)
            seconds = []
            for _ in range(repeats):
                start = time.process_time()
                ipot(cost, a, b, beta=0.5, num_iters=iterations, domain=domain)
                seconds.append(time.process_time() - start)
            out[domain] = {"cpu_seconds": seconds, "median": statistics.median(seconds)}
    choice = {d: p.masked_fill(~y_mask.unsqueeze(1), float("inf")).argmin(-1)[x_mask] for d, p in plans.items()}
    out["max_abs_difference"] = float((plans["log"] - plans["linear"]).abs().max())
    out["largest_entry"] = float(plans["log"].max())
    out["same_assignment"] = float((choice["log"] == choice["linear"]).float().mean())
    out["auto_is_linear"] = bool(torch.equal(ipot(cost, a, b, beta=0.5, num_iters=iterations), plans["linear"]))
    return out


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10, help="IPOT steps (the benchmark's ORMA runs 10).")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output_dir", default=str(HERE / "results"))
    parser.add_argument("--quick", action="store_true", help="Small problems, one repeat (smoke test).")
    args = parser.parse_args(argv)
    shapes, repeats = (QUICK_SHAPES, 1) if args.quick else (SHAPES, args.repeats)
    rows = [measure(shape, args.iterations, repeats) for shape in shapes]
    lines = [
        "| problems × tokens × motifs | IPOT steps | CPU ms, log domain | CPU ms, linear space | ratio "
        "| largest plan difference | same assignment |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        log, linear = row["log"]["median"], row["linear"]["median"]
        lines.append(
            f"| {' × '.join(map(str, row['shape']))} | {row['iterations']} | {1e3 * log:.1f} | {1e3 * linear:.1f} "
            f"| {linear / log:.2f} | {row['max_abs_difference']:.1e} (of {row['largest_entry']:.1e}) "
            f"| {row['same_assignment']:.1%} |"
        )
    table = "\n".join(lines) + f"\n\nMedian of {repeats} runs, one CPU thread, no gradient; load average "
    table += f"{os.getloadavg()[0]:.1f}.\n"
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/ot_solver.py " + " ".join(argv if argv is not None else sys.argv[1:])
    payload = {"benchmark": "ot_solver", "command": command.strip(), "rows": rows}
    (output / "ot_solver.json").write_text(json.dumps(payload, indent=1))
    (output / "ot_solver.md").write_text(table)
    print(table)
    return rows


if __name__ == "__main__":
    main()
