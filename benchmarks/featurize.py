"""Benchmark: featurizing all 33,010 ChEBI-20 molecules into graph columns, and reloading them from the cache.

Reads a ChEBI-20 ``cid_split_smiles.tsv`` (the bundled one is in ``class_hf/data/bundled/chebi20/``) with the
`datasets` csv loader (backslashes un-doubled, ``CID`` -> ``cid``,
``SMILES`` -> ``smiles``), then times ``class_hf.data.graphs.featurize_molecules`` twice: once recomputed
(``load_from_cache_file=False``, which also writes the cache) and once reloaded from the `datasets` cache. Targets on
2 cores: <= 60 s to featurize, <= 5 s to reload. Seconds are wall-clock; the machine is shared, so the load average
and the CPU seconds of all processes (this one and the finished ``map`` workers, which other jobs' load does not
inflate) are recorded with them. Also checks that every molecule got a non-empty graph with a motif for every atom.

    .venv/bin/python benchmarks/featurize.py --smiles class_hf/data/bundled/chebi20/cid_split_smiles.tsv
    .venv/bin/python benchmarks/featurize.py --smiles ... --num-proc 2 --cache-dir featurize-cache --fingerprints

Without ``--cache-dir`` a temporary cache folder is used and removed at the end. Writes
``benchmarks/results/featurize.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import datasets
import pyarrow.compute as pc
from datasets import Dataset, Features, Value, load_dataset

from class_hf.data.graphs import featurize_molecules

RESULTS = Path(__file__).parent / "results" / "featurize.json"
TARGETS = {"featurize_seconds": 60.0, "cached_reload_seconds": 5.0}


def _prepare(row: dict) -> dict:
    return {"cid": row["CID"], "smiles": row["SMILES"].replace("\\\\", "\\")}


def load_smiles(path: Path, cache_dir: str) -> Dataset:
    """The TSV as a Dataset with ``cid``, ``split``, ``in_molt5_file`` and un-doubled ``smiles`` (all strings)."""
    features = Features({name: Value("string") for name in ("CID", "split", "in_molt5_file", "SMILES")})
    raw = load_dataset(
        "csv",
        data_files=str(path),
        split="train",
        delimiter="\t",
        quoting=3,  # csv.QUOTE_NONE: SMILES are never quoted
        keep_default_na=False,
        na_filter=False,
        features=features,
        cache_dir=cache_dir,
    )
    return raw.map(_prepare, remove_columns=["CID", "SMILES"], desc="Un-doubling backslashes")


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the ``Dataset.map`` workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn):
    """``(result, wall seconds, CPU seconds)`` of ``fn()``; CPU time does not grow with other jobs' load."""
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    result = fn()
    return result, time.perf_counter() - start, _cpu_seconds() - cpu_start


def check(featurized: Dataset) -> dict:
    """Every row has atoms, a motif for every atom, and two directed edges per bond."""
    table = featurized.select_columns(["num_nodes", "num_motifs", "edge_attr", "atom2motif"]).with_format("arrow")[:]
    num_nodes = table.column("num_nodes").to_numpy()
    num_motifs = table.column("num_motifs").to_numpy()
    a2m_lengths = pc.list_value_length(table.column("atom2motif")).to_numpy()
    num_edges = pc.list_value_length(table.column("edge_attr")).to_numpy()
    if not ((num_nodes > 0).all() and (a2m_lengths == num_nodes).all() and (num_motifs > 0).all()):
        raise RuntimeError("Some molecule has no atoms, no motif, or an atom2motif of the wrong length.")
    if (num_edges % 2).any():
        raise RuntimeError("Some molecule has an odd number of directed edges.")
    return {
        "atoms_total": int(num_nodes.sum()),
        "atoms_mean": float(num_nodes.mean()),
        "atoms_max": int(num_nodes.max()),
        "directed_edges_total": int(num_edges.sum()),
        "motifs_mean": float(num_motifs.mean()),
        "motifs_max": int(num_motifs.max()),
    }


def run(args: argparse.Namespace, cache_dir: str) -> dict:
    dataset, load_seconds, _ = timed(lambda: load_smiles(args.smiles, cache_dir))
    cases = []
    variants = [False, True] if args.fingerprints else [False]
    for fingerprints in variants:
        kwargs = {"num_proc": args.num_proc, "fingerprints": fingerprints, "desc": None}
        load_before = os.getloadavg()[0]
        fresh, seconds, cpu_seconds = timed(
            functools.partial(featurize_molecules, dataset, load_from_cache_file=False, **kwargs)
        )
        reloaded, reload_seconds, _ = timed(functools.partial(featurize_molecules, dataset, **kwargs))
        load_after = os.getloadavg()[0]
        if reloaded.cache_files != fresh.cache_files:
            raise RuntimeError("The second featurize_molecules call did not reload the first call's cache files.")
        cases.append(
            {
                "fingerprints": fingerprints,
                "rows": fresh.num_rows,
                "featurize_seconds": seconds,
                "rows_per_second": fresh.num_rows / seconds,
                "featurize_cpu_seconds": cpu_seconds,
                "cached_reload_seconds": reload_seconds,
                "cache_mib": sum(os.path.getsize(f["filename"]) for f in fresh.cache_files) / 2**20,
                "load_average_1min_before": load_before,
                "load_average_1min_after": load_after,
                "stats": check(fresh),
            }
        )
    return {"load_seconds": load_seconds, "cases": cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smiles", type=Path, required=True, help="cid_split_smiles.tsv (CID, split, SMILES)")
    parser.add_argument("--num-proc", type=int, default=2, help="Dataset.map worker processes")
    parser.add_argument("--cache-dir", type=str, default=None, help="datasets cache folder (default: a temp folder)")
    parser.add_argument("--fingerprints", action="store_true", help="also time fingerprints=True")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not args.smiles.is_file():
        parser.error(f"--smiles {args.smiles} is not a file.")
    datasets.disable_progress_bars()

    if args.cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="featurize-bench-") as cache_dir:
            result = run(args, cache_dir)
    else:
        result = run(args, args.cache_dir)

    header = (
        "| fingerprints | rows | seconds | rows/s | CPU seconds (all processes) | cached reload seconds | cache MiB "
        "| load avg before/after |"
    )
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for c in result["cases"]:
        print(
            f"| {c['fingerprints']} | {c['rows']:,} | {c['featurize_seconds']:.1f} | {c['rows_per_second']:,.0f} "
            f"| {c['featurize_cpu_seconds']:.1f} "
            f"| {c['cached_reload_seconds']:.2f} | {c['cache_mib']:.0f} "
            f"| {c['load_average_1min_before']:.2f}/{c['load_average_1min_after']:.2f} |"
        )
    stats = result["cases"][0]["stats"]
    print(
        f"\nTSV load {result['load_seconds']:.1f} s; {stats['atoms_total']:,} atoms (mean {stats['atoms_mean']:.1f}, "
        f"max {stats['atoms_max']}), {stats['directed_edges_total']:,} directed edges, motifs per molecule mean "
        f"{stats['motifs_mean']:.2f} (max {stats['motifs_max']}); num_proc {args.num_proc}, {os.cpu_count()} CPUs"
    )

    command = f"python benchmarks/featurize.py --smiles {args.smiles} --num-proc {args.num_proc}"
    command += (f" --cache-dir {args.cache_dir}" if args.cache_dir else "") + (
        " --fingerprints" if args.fingerprints else ""
    )
    output = {
        "benchmark": "featurize",
        "command": command,
        "targets": TARGETS,
        **result,
        "environment": {
            "datasets": datasets.__version__,
            "num_proc": args.num_proc,
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "note": "machine shared with other jobs; wall-clock timings vary with their load",
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
