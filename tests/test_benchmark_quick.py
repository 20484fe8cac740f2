"""Smoke test of benchmarks/class_vs_baseline.py --quick on the 300-pair fixture (a tiny random BERT, no MiniLM)."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _pool_file(csv_path: Path, out: Path) -> Path:
    """A ``cid_split_smiles.tsv``-style table of the fixture's molecules (the `all` pool)."""
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    lines = ["CID\tsplit\tin_molt5_file\tSMILES"]
    lines += [f"{r['CID']}\ttest\t1\t{r['CanonicalSMILES']}" for r in rows if "\\" not in r["CanonicalSMILES"]]
    out.write_text("\n".join(lines) + "\n")
    return out


def test_quick_run_writes_results(tmp_path, chebi20_sample_dir):
    bench = _load("class_vs_baseline")
    out_dir = tmp_path / "results"
    pool = _pool_file(chebi20_sample_dir / "orma_sample.csv", tmp_path / "cid_split_smiles.tsv")
    arms = ["baseline", "class", "random_subset", "confusion_batches", "hard_first"]
    report = bench.main(
        [
            "--quick",
            "--data", str(chebi20_sample_dir / "orma_sample.csv"),
            "--pool", str(pool),
            "--backbones", "dual_encoder",
            "--arms", *arms,
            "--cache_dir", str(tmp_path / "cache"),
            "--output_dir", str(out_dir),
            "--name", "quick",
        ]
    )  # fmt: skip
    saved = json.loads((out_dir / "quick.json").read_text())
    assert sorted(r["arm"] for r in saved["results"]) == sorted(arms)
    by_arm = {r["arm"]: r for r in saved["results"]}
    for r in saved["results"]:
        assert len(r["val_curve"]) == 4 and all(0.0 <= p["mrr"] <= 1.0 for p in r["val_curve"])
        assert r["best_val_mrr"] == max(p["mrr"] for p in r["val_curve"])
        split, every = r["test_best_val"]["split"], r["test_best_val"]["all"]
        assert 0.0 < split["t2m_mrr"] <= 1.0
        # The `all` pool adds the other molecules as candidates: text->molecule can only get harder.
        assert every["t2m_mrr"] <= split["t2m_mrr"] + 1e-9
    # CLASS and the random-subset control see the same (fewer) pairs; the baseline and confusion batches see all.
    assert by_arm["baseline"]["samples_seen"] == by_arm["confusion_batches"]["samples_seen"]
    assert by_arm["baseline"]["samples_seen"] == by_arm["baseline"]["full_sample_passes"]
    assert by_arm["class"]["samples_seen"] == by_arm["random_subset"]["samples_seen"]
    assert by_arm["class"]["samples_seen"] < by_arm["baseline"]["samples_seen"]
    assert by_arm["class"]["scoring_info"]["source"] == "warmup" and by_arm["class"]["scoring_seconds"] > 0
    # hard pairs first: the same scorer, the order reversed, pools reaching all the pairs at half the epochs
    hard = by_arm["hard_first"]
    assert hard["training_arguments"]["curriculum"] == "hard_first" and hard["scoring_seconds"] > 0
    assert by_arm["class"]["samples_seen"] < hard["samples_seen"] < by_arm["baseline"]["samples_seen"]
    assert [h["samples_seen"] for h in hard["history"]][-2:] == [by_arm["baseline"]["history"][-1]["samples_seen"]] * 2
    assert len(saved["anchor"]) == 1 and 0.0 < saved["anchor"][0]["test"]["split"]["m2t_mrr"] <= 1.0
    rows = {(row["backbone"], row["arm"]): row for row in saved["summary"]}
    assert rows[("dual_encoder", "baseline")]["cpu_ratio"] == [1.0]
    # the baseline gets within 98 % of its own best before its run ends, at the first evaluation that does
    base = by_arm["baseline"]
    (near,) = rows[("dual_encoder", "baseline")]["cpu_to_near_baseline_best_ratio"]
    first = next(p for p in base["val_curve"] if p["mrr"] >= 0.98 * base["best_val_mrr"])
    assert near == first["cpu_seconds"] / base["cpu_seconds"] and 0 < near <= 1
    md = (out_dir / "quick.md").read_text()
    assert "| dual_encoder | class |" in md and "linear anchor" in md
    for path in report["plots"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Result files name the repository's files relative to it, not by this machine's folders.
    text = (out_dir / "quick.json").read_text()
    assert str(ROOT) not in text and '"tests/fixtures/' in text

    # Runs split over several invocations merge into one report over all their backbones, arms and seeds.
    half = {**saved, "results": saved["results"][:2], "anchor": []}
    rest = {**saved, "results": saved["results"][2:], "settings": {**saved["settings"], "seeds": [1]}}
    (tmp_path / "a.json").write_text(json.dumps(half))
    (tmp_path / "b.json").write_text(json.dumps(rest))
    argv = ["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--output_dir", str(out_dir)]
    merged = bench.main([*argv, "--name", "merged"])
    assert [r["arm"] for r in merged["results"]] == [r["arm"] for r in saved["results"]]
    assert merged["settings"]["seeds"] == [0, 1] and sorted(merged["settings"]["arms"]) == sorted(arms)
    assert len(merged["parts"]) == 2 and len(merged["anchor"]) == 1
    assert "| dual_encoder | class |" in (out_dir / "merged.md").read_text()
    # A backbone re-run with other settings keeps the settings of the part that ran it.
    other = {**rest, "settings": {**rest["settings"], "backbones": ["orma"]}, "results": [], "anchor": []}
    other["configs"] = {"orma": {"emb_dim": 7}, "dual_encoder": {"gnn_hidden_size": -1}}
    (tmp_path / "c.json").write_text(json.dumps(other))
    parts = [str(tmp_path / f"{name}.json") for name in "abc"]
    merged = bench.main(["--merge", *parts, "--output_dir", str(out_dir), "--name", "merged3"])
    assert merged["configs"]["orma"] == {"emb_dim": 7}
    assert merged["configs"]["dual_encoder"] == saved["configs"]["dual_encoder"]
    # A run repeated in a later part (same backbone, arm and seed) replaces the earlier one instead of counting twice.
    again = {**rest, "results": [{**saved["results"][0], "cpu_seconds": 12345.0}], "anchor": []}
    (tmp_path / "d.json").write_text(json.dumps(again))
    parts = [str(tmp_path / f"{name}.json") for name in "abd"]
    merged = bench.main(["--merge", *parts, "--output_dir", str(out_dir), "--name", "merged4"])
    assert len(merged["results"]) == len(saved["results"])
    assert merged["results"][0]["cpu_seconds"] == 12345.0
    # Merging a merged report lists the invocations behind it, less one whose every run a later part repeats.
    no_anchor = {**other, "settings": {**other["settings"], "anchor": False}}
    (tmp_path / "e.json").write_text(json.dumps(no_anchor))
    bench.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "e.json"), "--output_dir", str(tmp_path),
                "--name", "ae"])  # fmt: skip
    rerun = {**no_anchor, "machine": {**no_anchor["machine"], "load_average": [9.0, 9.0, 9.0]}}
    (tmp_path / "f.json").write_text(json.dumps(rerun))
    merged = bench.main(["--merge", str(tmp_path / "ae.json"), str(tmp_path / "f.json"), "--output_dir",
                         str(out_dir), "--name", "merged5"])  # fmt: skip
    assert [(p["settings"]["backbones"], p["machine"]["load_average"][0]) for p in merged["parts"]] == [
        (half["settings"]["backbones"], half["machine"]["load_average"][0]),
        (["orma"], 9.0),
    ]
    assert "9.0 →" in (out_dir / "merged5.md").read_text()

    # The anchor alone, re-fitted in its own invocation and merged: it replaces the anchor, every backbone run stays.
    anchor = bench.main(
        ["--quick", "--anchor_only", "--data", str(chebi20_sample_dir / "orma_sample.csv"), "--pool", str(pool),
         "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(out_dir), "--name", "anchor"]
    )  # fmt: skip
    assert anchor["results"] == [] and anchor["settings"]["backbones"] == [] and len(anchor["anchor"]) == 1
    # the frozen text features are encoded before the timed fit (as the backbones' are), and give the same anchor
    assert anchor["anchor"][0]["test"] == saved["anchor"][0]["test"]
    merged = bench.main(["--merge", str(out_dir / "quick.json"), str(out_dir / "anchor.json"), "--output_dir",
                         str(out_dir), "--name", "merged6"])  # fmt: skip
    assert merged["results"] == saved["results"] and merged["anchor"] == anchor["anchor"]
    assert merged["settings"]["backbones"] == ["dual_encoder"] and len(merged["parts"]) == 2
    # merging a merged report again keeps the files behind it named
    again = bench.main(["--merge", str(out_dir / "merged6.json"), "--output_dir", str(out_dir), "--name", "merged7"])
    names = [Path(name).name for name in again["settings"]["merged_from"]]
    assert names == ["quick.json", "anchor.json", "merged6.json"]
    assert "CPU to 98 % of it" in (out_dir / "merged7.md").read_text()


def test_curriculum_diagnosis_reports_the_cpu_to_reach_the_baseline_best(tmp_path):
    diagnose = _load("diagnose")
    rows = diagnose.main(
        [
            "--study", "curriculum",
            "--quick",
            "--rows", "baseline", "class_root_half",
            "--cache_dir", str(tmp_path / "cache"),
            "--output_dir", str(tmp_path),
        ]
    )  # fmt: skip
    base, row = rows
    assert (base["arm"], row["arm"]) == ("baseline", "class")
    assert row["training"] == {"pacing": "root", "pacing_saturation": 0.5, "intensity_gamma_min": 1.0}
    for r in rows:
        assert r["best_val_mrr"] == max(p["mrr"] for p in r["val_curve"]) and r["cpu_seconds"] > 0
    assert row["scoring_seconds"] > 0 and base["scoring_seconds"] == 0
    assert row["scoring_info"]["source"] == "warmup" and 0 < row["scoring_info"]["scored_t2m_mrr"] <= 1

    def reach(r, share):
        hit = next((p for p in r["val_curve"] if p["mrr"] >= share * base["best_val_mrr"]), None)
        return "not reached" if hit is None else f"{hit['cpu_seconds'] / base['cpu_seconds']:.2f}×"

    md = (tmp_path / "diagnose_curriculum_dual_encoder_quick.md").read_text()
    assert f"{row['best_val_mrr'] - base['best_val_mrr']:+.3f} |" in md
    assert f"| {reach(row, 1.0)} | {reach(row, 0.98)} |" in md and f"| – | {reach(base, 0.98)} |" in md
    assert f"| {row['cpu_seconds'] / base['cpu_seconds']:.2f}× |" in md and "| 1.00× |" in md
    # the sample passes: the pools the curriculum trained on, against every pair every epoch
    assert row["pool_sizes"][-1] == base["pool_sizes"][0] and row["pool_sizes"] == sorted(row["pool_sizes"])
    assert row["samples_seen"] == sum(row["pool_sizes"]) < base["samples_seen"] == sum(base["pool_sizes"])
    assert f"× | {row['samples_seen'] / base['samples_seen']:.2f}× |" in md
    first = base["val_curve"][0]  # the per-epoch table: MRR / CPU seconds of epoch 1
    assert f"| baseline (no curriculum) | {first['mrr']:.3f} / {first['cpu_seconds']:.1f} |" in md
    saved = json.loads((tmp_path / "diagnose_curriculum_dual_encoder_quick.json").read_text())
    assert [r["row"] for r in saved["rows"]] == ["baseline", "class_root_half"]
    first_wall = saved["wall_seconds"]
    assert first_wall > 0
    # the picture: one panel per setting against the baseline
    assert (tmp_path / "diagnose_curriculum_dual_encoder_quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # asking again for a row the report has reruns nothing and keeps the report's other rows
    again = diagnose.main(
        ["--study", "curriculum", "--quick", "--rows", "baseline", "--cache_dir", str(tmp_path / "cache"),
         "--output_dir", str(tmp_path)]
    )  # fmt: skip
    assert [r["row"] for r in again] == ["baseline", "class_root_half"] and again[0] == base
    saved = json.loads((tmp_path / "diagnose_curriculum_dual_encoder_quick.json").read_text())
    assert [r["row"] for r in saved["rows"]] == ["baseline", "class_root_half"]
    assert saved["wall_seconds"] >= first_wall  # the invocations' wall times add up
    # another seed adds rows; --rerun replaces the requested ones and keeps the others
    common = ["--study", "curriculum", "--quick", "--cache_dir", str(tmp_path / "cache")]
    common += ["--output_dir", str(tmp_path)]
    rows = diagnose.main([*common, "--rows", "baseline", "--seeds", "1"])
    assert [(r["row"], r.get("seed", 0)) for r in rows] == [("baseline", 0), ("class_root_half", 0), ("baseline", 1)]
    md = (tmp_path / "diagnose_curriculum_dual_encoder_quick.md").read_text()
    assert "| baseline (no curriculum) | 0, 1 |" in md
    rows = diagnose.main([*common, "--rows", "class_root_half", "--rerun"])
    assert [(r["row"], r.get("seed", 0)) for r in rows] == [("baseline", 0), ("baseline", 1), ("class_root_half", 0)]


def test_every_curriculum_row_gives_valid_training_arguments(tmp_path):
    """Each row of the curriculum study is the benchmark's run with its settings changed: the arguments build for every
    backbone, the row's settings win over the arm's and the backbone's, and the result records each of them."""
    bench_module, diagnose = _load("class_vs_baseline"), _load("diagnose")
    bench = bench_module.BenchmarkArguments(cache_dir=str(tmp_path), pool=None)
    for backbone in diagnose.CURRICULUM_BACKBONES:
        for name, (_what, arm, training) in diagnose.CURRICULUM_ROWS.items():
            args, recorded = bench_module.training_arguments(backbone, arm, 0, bench, training)
            assert set(training) <= recorded, name
            for key, value in training.items():
                assert getattr(args, key) == value, (backbone, name, key)
            order = training.get("curriculum", bench_module.ARMS[arm].get("curriculum", "easy_first"))
            assert args.curriculum == order, (backbone, name)
            epochs = training.get("num_train_epochs", bench_module.TRAINING[backbone]["num_train_epochs"])
            assert args.num_train_epochs == epochs
    # the shorter budgets decay the rate to 0 over their own epochs; the benchmark's runs keep it constant
    args, _ = bench_module.training_arguments("dual_encoder", "class", 0, bench, diagnose.CURRICULUM_ROWS["class"][2])
    assert args.lr_scheduler_type == "constant_with_warmup"
    what, arm, training = diagnose.CURRICULUM_ROWS["class_root_half_linear_15"]
    args, _ = bench_module.training_arguments("dual_encoder", arm, 0, bench, training)
    assert (arm, args.lr_scheduler_type, args.num_train_epochs) == ("class", "linear", 15) and "15 epochs" in what
    assert args.pacing == "root" and args.pacing_saturation == 0.5
    # the equal-CPU rows keep the benchmark's constant rate and CLASS's pacing over their longer run
    longer = diagnose.CURRICULUM_ROWS["class_40"][2]
    args, _ = bench_module.training_arguments("dual_encoder", "class", 0, bench, longer)
    default, _ = bench_module.training_arguments("dual_encoder", "class", 0, bench, {})
    assert (args.lr_scheduler_type, args.num_train_epochs) == ("constant_with_warmup", 40)
    assert (args.pacing, args.pacing_stages) == (default.pacing, default.pacing_stages)


def test_rank_correlation_averages_tied_ranks():
    rank_correlation = _load("pool_composition").rank_correlation
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (0.5, 0.5, 2) against (0, 1, 2): covariance 1.5, variances 1.5 and 2
    assert rank_correlation([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / (1.5 * 2) ** 0.5)


def test_pool_composition_compares_the_easiest_pool_with_a_random_one(tmp_path):
    pools = _load("pool_composition")
    common = ["--quick", "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path)]
    (row,) = pools.main([*common, "--backbones", "dual_encoder", "--seeds", "1", "--batches", "2"])
    assert (row["backbone"], row["seed"], row["pool_size"]) == ("dual_encoder", 1, -(-row["pairs"] // 4))
    assert row["mean_difficulty_easiest"] < row["mean_difficulty_random"] < row["mean_difficulty_hardest"]
    for key in ("corr_difficulty_atoms", "corr_difficulty_tokens"):
        assert -1 <= row[key] <= 1
    for name in ("easiest", "random", "hardest"):
        assert row[f"atoms_ratio_{name}"] > 0 and row[f"tokens_ratio_{name}"] > 0 and row[f"cpu_per_1000_{name}"] > 0
    saved = json.loads((tmp_path / "pool_composition.json").read_text())
    assert saved["rows"] == [row] and saved["args"]["batches"] == 2
    easy, hard = (row[f"cpu_per_1000_{name}"] / row["cpu_per_1000_random"] for name in ("easiest", "hardest"))
    md = (tmp_path / "pool_composition.md").read_text()
    assert f"| dual_encoder | 1 | {row['corr_difficulty_atoms']:+.2f} |" in md
    assert f"| {easy:.2f}×, {hard:.2f}× |" in md
    with pytest.raises(SystemExit, match="--share"):
        pools.main([*common, "--share", "0"])
    with pytest.raises(SystemExit, match="Unknown backbones"):
        pools.main([*common, "--backbones", "gin"])


def test_evaluation_cost_measures_both_ways_with_the_same_metrics(tmp_path):
    evaluation_cost = _load("evaluation_cost")
    argv = ["--quick", "--backbones", "dual_encoder", "--repeats", "1"]
    (row,) = evaluation_cost.main([*argv, "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path)])
    alone, full = row["retrieval_only"], row["with_loss"]
    assert alone["eval_mrr"] == full["eval_mrr"] and 0 < alone["eval_mrr"] <= 1
    assert alone["median"] > 0 and full["median"] > 0
    saved = json.loads((tmp_path / "evaluation_cost.json").read_text())
    assert saved["rows"] == [row] and "| dual_encoder |" in (tmp_path / "evaluation_cost.md").read_text()


def test_ot_solver_times_both_domains_and_they_agree(tmp_path):
    ot_solver = _load("ot_solver")
    (row,) = ot_solver.main(["--quick", "--output_dir", str(tmp_path)])
    assert row["log"]["median"] > 0 and row["linear"]["median"] > 0
    assert row["auto_is_linear"] and row["same_assignment"] == 1.0
    assert row["max_abs_difference"] < 1e-6 * max(1.0, row["largest_entry"])
    saved = json.loads((tmp_path / "ot_solver.json").read_text())
    assert saved["rows"] == [row] and "| 8 × 16 × 6 | 10 |" in (tmp_path / "ot_solver.md").read_text()


def test_an_interrupted_benchmark_resumes_from_its_finished_runs(chebi20_sample_dir, tmp_path, monkeypatch):
    bench = _load("class_vs_baseline")
    pool = _pool_file(chebi20_sample_dir / "orma_sample.csv", tmp_path / "pool.csv")
    argv = ["--quick", "--data", str(chebi20_sample_dir / "orma_sample.csv"), "--pool", str(pool),
            "--backbones", "dual_encoder", "--arms", "baseline", "class", "--cache_dir", str(tmp_path / "cache"),
            "--output_dir", str(tmp_path / "out"), "--name", "r"]  # fmt: skip
    calls = []
    real_run_one = bench.run_one

    def failing_second_run(backbone, arm, seed, b, **kwargs):
        calls.append(arm)
        if arm == "class" and len(calls) == 2:
            raise RuntimeError("interrupted")
        return real_run_one(backbone, arm, seed, b, **kwargs)

    monkeypatch.setattr(bench, "run_one", failing_second_run)
    with pytest.raises(RuntimeError, match="interrupted"):
        bench.main(argv)
    partial = tmp_path / "out" / "r.partial.jsonl"
    kept = [json.loads(line) for line in partial.read_text().splitlines()]
    assert "settings" in kept[0] and [(e["kind"], e["value"]["arm"]) for e in kept[1:]] == [("result", "baseline")]
    # other settings than the interrupted invocation's are refused, naming the file
    with pytest.raises(ValueError, match="r.partial.jsonl"):
        bench.main([*argv, "--resume", "--epochs", "2"])
    report = bench.main([*argv, "--resume"])
    assert calls == ["baseline", "class", "class"]  # the finished baseline run was not run again
    assert [r["arm"] for r in report["results"]] == ["baseline", "class"] and report["resumed"] == 1
    assert report["results"][0]["best_val_mrr"] == kept[1]["value"]["best_val_mrr"] and len(report["anchor"]) == 1
    assert not partial.exists() and (tmp_path / "out" / "r.json").exists()


def test_parallel_runs_start_with_the_longest():
    bench = _load("class_vs_baseline")
    tasks = [(b, a, "0") for b in ("dual_encoder", "aman", "orma") for a in ("baseline", "class", "random_subset")]
    tasks.append(("anchor", "0"))
    order = sorted(tasks, key=bench._cost_rank)
    assert order[:2] == [("orma", "baseline", "0"), ("orma", "class", "0")]
    assert [t[0] for t in order] == ["orma"] * 3 + ["aman"] * 3 + ["dual_encoder"] * 3 + ["anchor"]
    assert [t[1] for t in order[3:6]] == ["baseline", "class", "random_subset"]  # stable within the curriculum arms


def _absolute_paths(value, where: str):
    """``(where, string)`` for every string in a JSON value that is an absolute file path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _absolute_paths(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _absolute_paths(item, f"{where}[{index}]")
    elif isinstance(value, str) and Path(value).is_absolute() and len(Path(value).parts) > 2:
        yield where, value


def test_committed_results_hold_no_machine_paths():
    files = sorted((ROOT / "benchmarks" / "results").rglob("*.json"))
    assert files, "no result files found"
    found = [hit for f in files for hit in _absolute_paths(json.loads(f.read_text()), f.name)]
    assert found == [], f"result files name paths of the machine they ran on: {found}"


def test_step_time_records_the_data_file_relative_to_the_repository(tmp_path):
    step_time = _load("backbone_step_time")
    report = {"data": str(step_time.DEFAULT_DATA), "other": str(tmp_path / "pairs.csv")}
    assert step_time.portable(report) == {
        "data": "class_hf/data/bundled/chebi20/validation.csv",
        "other": str(tmp_path / "pairs.csv"),
    }
