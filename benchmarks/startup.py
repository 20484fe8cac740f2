"""Benchmark: start-up time of ``import class_hf`` and ``class-hf --help`` against ``import torch, transformers``.

Each command runs in a fresh Python process, ``--repeats`` times, the commands interleaved round by round so that
they share the machine's load; the table gives the median wall-clock and CPU (user + system) seconds of each, and
the ratio of the medians to the baseline ``python -c "import torch, transformers"`` measured in the same rounds.
The targets (issue 14 part 4): ``class-hf --help`` at most 0.5x the baseline, ``import class_hf`` at most 1.3x.

The machine may be shared: the 1-minute load average is recorded before and after. CPU seconds are less sensitive
to other jobs than wall-clock seconds; both are reported.

    .venv/bin/python benchmarks/startup.py                 # 7 rounds
    .venv/bin/python benchmarks/startup.py --repeats 15

Writes ``benchmarks/results/startup.json``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "startup.json"
BASELINE = "import torch, transformers"
TARGETS = {"class-hf --help": 0.5, "class-hf search --help": 0.5, "import class_hf": 1.3}


def _commands() -> dict[str, list[str]]:
    """Label -> argv. ``class-hf`` is the installed console script next to this interpreter, when there is one."""
    script = shutil.which("class-hf", path=str(Path(sys.executable).parent))
    in_process = "import sys; from class_hf.cli import main; main(sys.argv[1:])"
    cli = [script] if script else [sys.executable, "-c", in_process]
    return {
        "python (empty)": [sys.executable, "-c", "pass"],
        BASELINE: [sys.executable, "-c", BASELINE],
        "import class_hf": [sys.executable, "-c", "import class_hf"],
        "class-hf --help": [*cli, "--help"],
        "class-hf search --help": [*cli, "search", "--help"],
        "class-hf --version": [*cli, "--version"],
        "import class_hf + AutoModel": [sys.executable, "-c", "import class_hf; from transformers import AutoModel"],
        "from class_hf import CurriculumTrainer": [sys.executable, "-c", "from class_hf import CurriculumTrainer"],
    }


def _run_once(argv: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system, the child's) seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def measure(repeats: int) -> dict:
    """Runs every command ``repeats`` times, interleaved, after one unmeasured warm-up round (file cache)."""
    commands = _commands()
    for argv in commands.values():
        _run_once(argv)
    load_before = os.getloadavg()
    samples: dict[str, dict[str, list[float]]] = {label: {"wall": [], "cpu": []} for label in commands}
    for _ in range(repeats):
        for label, argv in commands.items():
            wall, cpu = _run_once(argv)
            samples[label]["wall"].append(round(wall, 4))
            samples[label]["cpu"].append(round(cpu, 4))
    load_after = os.getloadavg()
    rows = {}
    base = {key: statistics.median(samples[BASELINE][key]) for key in ("wall", "cpu")}
    for label, values in samples.items():
        wall, cpu = statistics.median(values["wall"]), statistics.median(values["cpu"])
        rows[label] = {
            "wall_median_s": round(wall, 3),
            "wall_min_s": round(min(values["wall"]), 3),
            "cpu_median_s": round(cpu, 3),
            "wall_ratio": round(wall / base["wall"], 3),
            "cpu_ratio": round(cpu / base["cpu"], 3),
            "target_ratio": TARGETS.get(label),
            "meets_target": None if label not in TARGETS else wall / base["wall"] <= TARGETS[label],
            "samples": values,
        }
    return {
        "benchmark": "startup",
        "command": "python benchmarks/startup.py --repeats " + str(repeats),
        "date": datetime.date.today().isoformat(),
        "baseline": BASELINE,
        "repeats": repeats,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": _version("torch"),
            "transformers": _version("transformers"),
            "class-hf": _version("class-hf"),
        },
        "results": rows,
    }


def table(result: dict) -> str:
    """A Markdown table of the medians and ratios."""
    lines = [
        "| command | wall s (median) | CPU s (median) | wall / baseline | CPU / baseline | target |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in result["results"].items():
        target = (
            ""
            if row["target_ratio"] is None
            else f"<= {row['target_ratio']}x " + ("(met)" if row["meets_target"] else "(missed)")
        )
        lines.append(
            f"| `{label}` | {row['wall_median_s']:.2f} | {row['cpu_median_s']:.2f} | {row['wall_ratio']:.2f} | "
            f"{row['cpu_ratio']:.2f} | {target} |"
        )
    load = result["load_average_before"], result["load_average_after"]
    lines.append("")
    lines.append(
        f"{result['repeats']} interleaved rounds, {result['machine']['cpus']} CPUs; load average (1, 5, 15 min) "
        f"{load[0]} before, {load[1]} after."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="Rounds of measurement (default: 7).")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON output (default: {RESULTS}).")
    args = parser.parse_args()
    result = measure(args.repeats)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    print(f"\nWrote {args.output}")


if __name__ == "__main__":
    main()
