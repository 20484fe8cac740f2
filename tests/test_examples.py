"""The README's "your own backbone" example runs as written (with a local tokenizer instead of a Hub id)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "own_backbone.py"


def test_own_backbone_example_trains_with_the_curriculum(tmp_path, tiny_tokenizer, chebi20_sample_dir, capsys):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    spec = importlib.util.spec_from_file_location("own_backbone", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metrics = module.main(
        [
            "--tokenizer",
            str(tmp_path / "tok"),
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
