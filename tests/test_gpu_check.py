"""benchmarks/gpu_check.py: the ``--tiny`` CPU run end to end (the report's structure), its budget and device rules.

The GPU numbers themselves come from ``scripts/gpu_check.sh`` on a GPU machine (docs/gpu.md); here the same code path
runs with tiny models on the CPU, where bf16 must be reported as not measured.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("benchmarks_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> tuple[dict, str]:
    """The JSON and Markdown of one ``--tiny`` run of the script as a program (as the GPU session runs it)."""
    out = tmp_path_factory.mktemp("gpu_check")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--output_dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "gpu_check_tiny.json").read_text()), (out / "gpu_check_tiny.md").read_text()


def test_tiny_run_reports_throughput_and_comparison(tiny_report):
    report, md = tiny_report
    assert report["benchmark"] == "gpu_check" and report["mode"] == "tiny" and report["complete"]
    assert report["errors"] == []
    assert report["device"]["type"] == "cpu" and "not a GPU measurement" in report["label"]
    for key in ("python", "torch", "transformers", "datasets", "torch_geometric", "rdkit", "class_hf"):
        assert report["versions"][key], key
    assert report["text_encoder"]["config"]["hidden_size"] == 32
    assert report["text_encoder"]["config"]["vocab_size"] == report["data"]["tokenizer_size"]
    assert report["data"]["used"] == {"train": 64, "validation": 32}
    assert report["data"]["split_sizes"] == {"train": 5235, "validation": 624, "test": 703}

    # (a) both backbones, fp32 only: bf16 is refused without a GPU, and said so.
    assert [(r["backbone"], r["precision"]) for r in report["throughput"]] == [
        ("dual_encoder", "fp32"),
        ("orma", "fp32"),
    ]
    assert {s["what"] for s in report["skipped"]} == {"bf16", "bf16 comparison"}
    for r in report["throughput"]:
        assert r["timed_steps"] == 3 and r["batch_size"] == 8 and r["peak_memory_gib"] is None
        assert r["samples_per_second"] > 0 and r["optimizer_steps_per_second"] > 0
        assert r["samples_per_second"] == pytest.approx(8 * r["optimizer_steps_per_second"], rel=0.01)
        assert r["trainable_parameters"] == r["parameters"]  # the text encoder is trained too

    # (b) baseline and CLASS per backbone, the same epochs, validation MRR after every one of them.
    runs = {(r["backbone"], r["arm"]): r for r in report["comparison"]}
    assert sorted(runs) == [
        ("dual_encoder", "baseline"),
        ("dual_encoder", "class"),
        ("orma", "baseline"),
        ("orma", "class"),
    ]
    for (backbone, arm), r in runs.items():
        assert r["precision"] == "fp32" and r["epochs"] == 4 and not r["cut_by_budget"]
        assert [p["epoch"] for p in r["val_curve"]] == [1.0, 2.0, 3.0, 4.0]
        assert all(0.0 < p["mrr"] <= 1.0 for p in r["val_curve"])
        assert r["best_val_mrr"] == max(p["mrr"] for p in r["val_curve"])
        assert r["wall_seconds"] >= r["val_curve"][-1]["wall_seconds"] > 0
        assert report["plan"][backbone]["epochs"] == 4
        if arm == "class":  # fewer pairs (25/50/75/100 %), after scoring the difficulty
            assert r["samples_seen"] == 160 < runs[(backbone, "baseline")]["samples_seen"] == 256
            assert r["scoring_seconds"] > 0
    assert md.startswith("## GPU check: CPU, tiny smoke test (not a GPU measurement)")
    assert "| dual_encoder | fp32 | 8 |" in md and "| orma | class | fp32 | 4 |" in md
    assert "Not measured: bf16" in md


def test_refuses_to_run_without_a_gpu_unless_tiny(monkeypatch):
    gpu_check = _load()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        gpu_check.main([])


def test_bf16_is_measured_only_where_the_gpu_supports_it():
    gpu_check = _load()
    h100 = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "bf16_supported": True}
    assert gpu_check.usable_precisions(["bf16", "fp32"], h100) == (["bf16", "fp32"], [])
    kept, skipped = gpu_check.usable_precisions(
        ["bf16", "fp32"], {**h100, "name": "Tesla V100", "bf16_supported": False}
    )
    assert kept == ["fp32"] and "does not support bf16" in skipped[0]["why"]
    kept, skipped = gpu_check.usable_precisions(["bf16"], {"type": "cpu"})
    assert kept == [] and skipped[0]["what"] == "bf16"


def test_epochs_are_cut_to_the_budget():
    gpu_check = _load()
    bench = gpu_check.GpuCheckArguments(epochs=8, output_dir="unused")
    data = gpu_check.Data(train=range(5000), validation=range(600), tokenizer=None, info={"max_length": 256})
    measured = [
        {"backbone": "orma", "precision": "bf16", "samples_per_second": 500.0},
        {"backbone": "orma", "precision": "fp32", "samples_per_second": 250.0},
    ]
    plenty, estimate = gpu_check.plan_epochs("orma", 3600.0, measured, data, bench)
    assert plenty == 8 and estimate["epochs_that_fit"] > 8
    assert estimate["epoch_seconds"] == pytest.approx(5000 / 500 + 2 * 600 / 1500 + 1.0, abs=0.1)
    few, estimate = gpu_check.plan_epochs("orma", 120.0, measured, data, bench)
    assert few == 3 and sum(estimate["arm_seconds"].values()) <= 120.0  # the two arms fit together
    none, _ = gpu_check.plan_epochs("orma", 20.0, measured, data, bench)
    assert none == 0
    unmeasured, estimate = gpu_check.plan_epochs("dual_encoder", 120.0, measured, data, bench)
    assert unmeasured == 8 and estimate["estimate"] is None  # the runs' deadlines guard the budget then
