"""The README's "your own backbone" example runs as written, offline: with its default word-level tokenizer and
with a tokenizer folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "own_backbone.py"


@pytest.mark.parametrize("tokenizer", ["default", "folder"])
def test_own_backbone_example_trains_with_the_curriculum(
    tokenizer, tmp_path, tiny_tokenizer, chebi20_sample_dir, capsys, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the example needs nothing from the Hub
    arguments = []
    if tokenizer == "folder":
        tiny_tokenizer.save_pretrained(tmp_path / "tok")
        arguments = ["--tokenizer", str(tmp_path / "tok")]
    spec = importlib.util.spec_from_file_location("own_backbone", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metrics = module.main(
        [
            *arguments,
            "--data",
            str(chebi20_sample_dir / "orma_sample.csv"),
            "--output_dir",
            str(tmp_path / "out"),
            "--epochs",
            "4",
        ]
    )
    out = capsys.readouterr().out
    # staged pacing over 4 epochs: pools of 25/50/75/100 % of the training pairs
    pools = [int(line.split("trained on ")[1].split()[0]) for line in out.splitlines() if "trained on" in line]
    assert len(pools) == 4 and pools == sorted(pools) and pools[0] < pools[-1]
    assert 0.0 < metrics["test_t2m_mrr"] <= 1.0 and 0.0 < metrics["test_m2t_mrr"] <= 1.0
    assert "test: t2m_mrr " in out
