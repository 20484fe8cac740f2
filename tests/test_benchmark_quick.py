"""Smoke test of benchmarks/class_vs_baseline.py --quick on the 300-pair fixture (tiny BERT, no MiniLM)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertModel

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location(f"benchmarks.{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_encoder_dir(tmp_path, tiny_tokenizer, tiny_bert_config):
    folder = tmp_path / "tiny_text_encoder"
    torch.manual_seed(0)
    BertModel(tiny_bert_config).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_feature_index_tokenizer_and_cached_encoder_round_trip():
    cached = _load("cached_text")
    states = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tokenizer = cached.FeatureIndexTokenizer(["a", "b", "c"])
    encoder = cached.CachedTextEncoder(states, None)
    batch = tokenizer(["c", "a"], padding="longest", truncation=True, max_length=8, return_tensors="pt")
    out = encoder(**batch)
    assert torch.equal(out.last_hidden_state[:, 0], states[[2, 0]])
    assert not any(p.requires_grad for p in encoder.parameters())
    with pytest.raises(KeyError, match="not in the cached feature table"):
        tokenizer(["unknown text"])

    tokens = torch.randn(3, 2, 5, 4).half()
    lengths = [5, 2, 3]
    tok = cached.FeatureIndexTokenizer(["a", "b", "c"], lengths)
    batch = tok(["b", "c"])
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    out = cached.CachedTextEncoder(tokens, None)(**batch, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 3, 4)
    assert torch.equal(out.hidden_states[0], tokens[[1, 2], 0, :3].float())


def _pool_file(csv_path: Path, out: Path) -> Path:
    """A ``cid_split_smiles.tsv``-style pool of the fixture's molecules (SMILES as they are: no backslash)."""
    import csv

    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    lines = ["CID\tsplit\tin_molt5_file\tSMILES"]
    lines += [f"{r['CID']}\ttest\t1\t{r['CanonicalSMILES']}" for r in rows if "\\" not in r["CanonicalSMILES"]]
    out.write_text("\n".join(lines) + "\n")
    return out


def test_quick_run_writes_results(tmp_path, chebi20_sample_dir, tiny_encoder_dir):
    bench = _load("class_vs_baseline")
    out_dir = tmp_path / "results"
    pool = _pool_file(chebi20_sample_dir / "orma_sample.csv", tmp_path / "cid_split_smiles.tsv")
    report = bench.main(
        [
            "--quick",
            "--data",
            str(chebi20_sample_dir / "orma_sample.csv"),
            "--pool",
            str(pool),
            "--text-encoder",
            str(tiny_encoder_dir),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out-dir",
            str(out_dir),
            "--stem",
            "quick",
            "--threads",
            "1",
        ]
    )
    saved = json.loads((out_dir / "quick.json").read_text())
    arms = sorted(r["arm"] for r in saved["results"])
    assert arms == ["baseline", "class", "random_subset"]
    sizes = saved["data"]["split_sizes"]
    assert sum(sizes.values()) == 300 and sizes["train"] > sizes["test"] > 0
    by_arm = {r["arm"]: r for r in saved["results"]}
    epochs = saved["config"]["sizes"]["dual_encoder"]["epochs"]
    for r in saved["results"]:
        assert len(r["history"]) == epochs
        assert all(0.0 <= h["val"]["mrr"] <= 1.0 for h in r["history"])
        assert 0.0 < r["test_best_val"]["split"]["t2m_mrr"] <= 1.0
        # The `all` pool adds the other molecules as candidates: text->molecule can only get harder.
        assert r["test_best_val"]["all"]["t2m_mrr"] <= r["test_best_val"]["split"]["t2m_mrr"] + 1e-9
        assert r["test_best_val"]["all_pool_size"] == saved["data"]["all_pool_size"] > sizes["test"]
    # CLASS and the random-subset ablation see the same (smaller) number of samples; the baseline sees all.
    n = sizes["train"]
    assert by_arm["baseline"]["summary"]["samples_seen"] == n * epochs
    assert by_arm["class"]["summary"]["samples_seen"] == by_arm["random_subset"]["summary"]["samples_seen"]
    assert by_arm["class"]["summary"]["samples_seen"] < n * epochs
    assert by_arm["class"]["scoring_info"]["source"] == "warmup"
    assert len(saved["anchor"]) == 1 and 0.0 < saved["anchor"][0]["test"]["split"]["m2t_mrr"] <= 1.0
    ratios = saved["ratios"]
    assert ratios["dual_encoder/class/0"]["sample_passes_ratio"] < 1.0
    assert saved["throughput"]["median_samples_per_second"]["bare"] > 0
    md = (out_dir / "quick.md").read_text()
    assert "| dual_encoder | class |" in md and "linear anchor" in md
    for path in report["plots"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
