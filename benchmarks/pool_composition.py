"""What CLASS's early pools hold, and what a pair of them costs to train on, against random and hardest pools.

For each backbone of ``class_vs_baseline.py`` and seed, the benchmark's CLASS arm scores the training pairs with its
warm-up scorer (the library's defaults, the benchmark's batch size and learning rate). Then, for the easiest
``--share`` of the pairs (CLASS's first pool), a random pool of the same size and the hardest ``--share`` (the first
pool of the anti-curriculum ``hard_first``):

- the mean number of atoms of the molecules and of text tokens of the descriptions (at the backbone's token limit),
  as ratios to the means over all training pairs, and the rank correlation of difficulty with each;
- the training cost: process CPU seconds per 1,000 pairs of ``--batches`` optimizer steps (forward, backward, AdamW)
  on batches of the benchmark's size drawn from that pool, one thread, each pool training its own copy of the same
  untrained backbone, the pools taking turns batch by batch.

Run (about 4.5 minutes on one core)::

    python benchmarks/pool_composition.py
    python benchmarks/pool_composition.py --backbones orma --seeds 0 --batches 4
    python benchmarks/pool_composition.py --quick     # smoke test: a tiny random text encoder, 160 training pairs

Writes ``benchmarks/results/pool_composition.{json,md}``. Validation of nothing: training pairs only.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import HfArgumentParser

HERE = Path(__file__).resolve().parent


def _benchmark():
    """The sibling ``class_vs_baseline.py`` (its data preparation and backbones), imported from beside this file."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import class_vs_baseline

    return class_vs_baseline


@dataclass
class PoolArguments:
    backbones: list[str] = field(
        default_factory=lambda: ["dual_encoder", "aman", "orma"], metadata={"help": "Backbones to measure."}
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds (scorer and random pool)."})
    share: float = field(default=0.25, metadata={"help": "Pool size as a share of the training pairs."})
    batches: int = field(default=8, metadata={"help": "Timed optimizer steps per pool."})
    output_dir: str = field(default=str(HERE / "results"))
    cache_dir: str = field(default=str(HERE / ".cache" / "class_vs_baseline"))
    name: str = field(default="pool_composition")
    quick: bool = field(default=False, metadata={"help": "Tiny encoder and data (smoke test)."})


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    import pandas as pd  # a dependency of ``datasets``

    return float(np.corrcoef(pd.Series(a).rank(), pd.Series(b).rank())[0, 1])


def cpu_per_pair(model, dataset, pools: dict[str, np.ndarray], collator, *, batch_size: int, batches: int, lr: float):
    """CPU seconds per 1,000 pairs of ``batches`` training steps on each pool, the pools taking turns; each pool
    trains its own copy of ``model``."""
    import torch

    copies = {name: copy.deepcopy(model).train() for name in pools}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=lr) for name, m in copies.items()}
    rng = np.random.default_rng(0)
    seconds = dict.fromkeys(pools, 0.0)
    pairs = dict.fromkeys(pools, 0)
    for _ in range(batches):
        for name, pool in pools.items():
            rows = dataset.select(np.sort(rng.choice(pool, size=min(batch_size, len(pool)), replace=False)))
            batch = {k: v for k, v in collator(list(rows)).items() if k not in ("sample_idx", "difficulty")}
            start = time.process_time()
            loss = copies[name](**batch).loss
            loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            seconds[name] += time.process_time() - start
            pairs[name] += len(rows)
    return {name: 1000 * seconds[name] / pairs[name] for name in pools}


def measure(backbone: str, seed: int, args: PoolArguments) -> dict[str, Any]:
    """One backbone and seed: the scorer, the pools' composition and their training cost."""
    import torch
    from transformers import set_seed

    from class_hf.curriculum.difficulty import compute_difficulty
    from class_hf.data import MoleculeFeatures
    from class_hf.training_args import CurriculumTrainingArguments

    bench_module = _benchmark()
    bench = bench_module.BenchmarkArguments(cache_dir=args.cache_dir, quick=args.quick, pool=None)
    torch.set_num_threads(1)
    data = bench_module.prepare(backbone, bench)
    set_seed(seed)
    model = bench_module.build_model(backbone, data["encoder"], bench.quick)
    train = bench_module.top_layers(data["splits"], backbone, model, bench)["train"]
    max_length = bench_module.TOKEN_LIMITS[backbone]
    collator = MoleculeFeatures.for_model(model).collator(data["tokenizer"], max_length=max_length, model=model)
    training = bench_module.TRAINING[backbone]
    batch_size = 16 if args.quick else training["per_device_train_batch_size"]
    defaults = {f.name: f.default for f in dataclasses.fields(CurriculumTrainingArguments)}
    scored, info = compute_difficulty(
        train,
        "warmup",
        model=model,
        data_collator=collator,
        seed=seed,
        batch_size=256,  # the benchmark's encoding batch (its `per_device_eval_batch_size`)
        warmup_fraction=defaults["difficulty_warmup_fraction"],
        warmup_epochs=defaults["difficulty_warmup_epochs"],
        warmup_learning_rate=training["learning_rate"],
        warmup_batch_size=batch_size,
        show_progress=False,
    )
    difficulty = np.asarray(scored["difficulty"], dtype=np.float64)
    atoms = np.asarray(train["num_nodes"], dtype=np.float64)
    tokenized = data["tokenizer"](list(train["description"]), truncation=True, max_length=max_length)
    tokens = np.asarray([len(ids) for ids in tokenized["input_ids"]], dtype=np.float64)
    size = math.ceil(args.share * len(train))
    by_difficulty = np.argsort(difficulty, kind="stable")
    pools = {
        "easiest": by_difficulty[:size],
        "random": np.random.default_rng(seed).permutation(len(train))[:size],
        "hardest": by_difficulty[-size:],
    }
    cost = cpu_per_pair(
        model, train, pools, collator, batch_size=batch_size, batches=args.batches, lr=training["learning_rate"]
    )
    return {
        "backbone": backbone,
        "seed": seed,
        "pairs": len(train),
        "pool_size": size,
        "scored_t2m_mrr": info.get("scored_t2m_mrr"),
        "corr_difficulty_atoms": rank_correlation(difficulty, atoms),
        "corr_difficulty_tokens": rank_correlation(difficulty, tokens),
        "mean_atoms_all": float(atoms.mean()),
        "mean_tokens_all": float(tokens.mean()),
        **{f"mean_difficulty_{name}": float(difficulty[pool].mean()) for name, pool in pools.items()},
        **{f"atoms_ratio_{name}": float(atoms[pool].mean() / atoms.mean()) for name, pool in pools.items()},
        **{f"tokens_ratio_{name}": float(tokens[pool].mean() / tokens.mean()) for name, pool in pools.items()},
        **{f"cpu_per_1000_{name}": seconds for name, seconds in cost.items()},
    }


def report(rows: list[dict[str, Any]], args: PoolArguments, wall_seconds: float) -> str:
    pools = ("easiest", "random", "hardest")
    lines = [
        f"The easiest, a random and the hardest {args.share:.0%} of the training pairs (CLASS's warm-up scorer): "
        f"mean atoms and text tokens as ratios to all training pairs, and training CPU seconds per 1,000 pairs "
        f"({args.batches} steps per pool, one thread).",
        "",
        "| backbone | seed | corr(difficulty, atoms) | corr(difficulty, tokens) | atoms easiest / random / hardest | "
        "tokens easiest / random / hardest | CPU s per 1,000 pairs easiest / random / hardest | "
        "CPU easiest, hardest × random |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def three(r: dict[str, Any], key: str) -> str:
        return " / ".join(f"{r[f'{key}_{pool}']:.2f}" for pool in pools)

    for r in rows:
        easy, hard = (r[f"cpu_per_1000_{pool}"] / r["cpu_per_1000_random"] for pool in ("easiest", "hardest"))
        lines.append(
            f"| {r['backbone']} | {r['seed']} | {r['corr_difficulty_atoms']:+.2f} "
            f"| {r['corr_difficulty_tokens']:+.2f} | {three(r, 'atoms_ratio')} | {three(r, 'tokens_ratio')} "
            f"| {three(r, 'cpu_per_1000')} | {easy:.2f}×, {hard:.2f}× |"
        )
    table = "\n".join(lines) + "\n"
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    payload = {
        "args": {k: v for k, v in dataclasses.asdict(args).items() if k not in ("output_dir", "cache_dir")},
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version()},
        "wall_seconds": wall_seconds,
        "rows": rows,
    }
    (output / f"{args.name}.json").write_text(json.dumps(payload, indent=1))
    (output / f"{args.name}.md").write_text(table)
    return table


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    (args,) = HfArgumentParser(PoolArguments).parse_args_into_dataclasses(args=argv)
    unknown = sorted(set(args.backbones) - set(_benchmark().TRAINING))
    if unknown:
        raise SystemExit(f"Unknown backbones {unknown}; choose from {sorted(_benchmark().TRAINING)}.")
    if not 0 < args.share <= 1 or args.batches < 1:
        raise SystemExit(f"--share must lie in (0, 1] and --batches be >= 1, got {args.share} and {args.batches}.")
    start = time.perf_counter()
    rows = []
    for backbone in args.backbones:
        for seed in args.seeds:
            rows.append(measure(backbone, seed, args))
            print(f"[pool_composition] {backbone} seed {seed} done", flush=True)
    print(report(rows, args, time.perf_counter() - start))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
