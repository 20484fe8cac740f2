"""The `class-hf` command line, run in-process on the bundled ChEBI-20 sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import DatasetDict, load_from_disk

from class_hf import cli

FAST_FIT = ["--fingerprint-max-epochs", "4", "--fingerprint-patience", "2", "--projection-dim", "32"]


@pytest.fixture(scope="module")
def text_encoder_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny BERT text encoder and its tokenizer saved like a Hub checkpoint."""
    from conftest import make_tiny_bert_config
    from transformers import BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(make_tiny_bert_config(len(tiny_tokenizer))).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory, chebi20_sample_dir):
    out = tmp_path_factory.mktemp("prepared") / "chebi20"
    status = cli.main(["prepare", "--source", str(chebi20_sample_dir / "molt5_sample.tsv"), "--out", str(out)])
    assert status == 0
    return out


def test_every_subcommand_is_registered_and_names_are_unique():
    assert {"prepare", "score", "evaluate"} <= set(cli.COMMANDS)
    with pytest.raises(ValueError, match="`score` is already registered"):
        cli.register_command("score", "again", lambda _parser: None, lambda _args: 0)
    with pytest.raises(SystemExit):
        cli.main([])  # a subcommand is required


def test_prepare_featurizes_and_saves(prepared_dir):
    data = load_from_disk(str(prepared_dir))
    assert isinstance(data, DatasetDict) and list(data) == ["train"]
    train = data["train"]
    assert len(train) == 300
    assert {"cid", "smiles", "description", "x", "edge_index", "edge_attr", "atom2motif"} <= set(train.column_names)
    assert "fp_index" not in train.column_names


def test_prepare_resplit_with_fingerprints(tmp_path, chebi20_sample_dir):
    out = tmp_path / "resplit"
    argv = ["prepare", "--source", str(chebi20_sample_dir / "molt5_sample.tsv"), "--out", str(out)]
    assert cli.main([*argv, "--resplit", "0.8,0.1,0.1", "--fingerprints"]) == 0
    data = load_from_disk(str(out))
    assert set(data) == {"train", "validation", "test"}
    assert sum(len(part) for part in data.values()) == 300
    assert len(data["train"]) > len(data["test"])
    assert "fp_index" in data["train"].column_names
    with pytest.raises(SystemExit, match="--resplit must be comma-separated numbers"):
        cli.main([*argv, "--resplit", "most,of,it"])


def test_score_fingerprint_writes_columns_and_card(tmp_path, prepared_dir, text_encoder_dir, capsys):
    out = tmp_path / "scored"
    argv = ["score", "--data", str(prepared_dir), "--source", "fingerprint", "--text-encoder", str(text_encoder_dir)]
    assert cli.main([*argv, "--out", str(out), *FAST_FIT]) == 0
    train = load_from_disk(str(out))["train"]
    assert {"n_confusing_t2m", "n_confusing_m2t", "difficulty"} <= set(train.column_names)
    assert len(train) == 300 and "x" in train.column_names  # the prepared columns are kept
    difficulty = np.asarray(train["difficulty"])
    assert difficulty.min() >= 0 and difficulty.max() <= 1 and difficulty.std() > 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "fingerprint" and info["num_pairs"] == 300 and info["seconds"] > 0
    assert json.loads((out / "difficulty_info.json").read_text())["num_pairs"] == 300
    card = (out / "README.md").read_text()
    assert "`fingerprint`" in card and str(text_encoder_dir) in card and "class-hf score" in card
    assert "out of fold (5 folds)" in card


def test_score_raw_files_and_push_to_hub(tmp_path, chebi20_sample_dir, text_encoder_dir, monkeypatch):
    """Unprepared ChEBI-20 files score directly; --push-to-hub pushes the data, then our card on top of datasets'."""
    import huggingface_hub

    pushed = {}

    def fake_push(self, repo_id, **kwargs):
        pushed["data"] = (repo_id, {split: len(part) for split, part in self.items()}, kwargs)

    class FakeCard:
        def __init__(self):
            self.text = "datasets' own card body"

        @classmethod
        def load(cls, repo_id, repo_type=None):
            pushed["loaded"] = (repo_id, repo_type)
            return cls()

        def push_to_hub(self, repo_id, repo_type=None):
            pushed["card"] = (repo_id, repo_type, self.text)

    monkeypatch.setattr(DatasetDict, "push_to_hub", fake_push)
    monkeypatch.setattr(huggingface_hub, "DatasetCard", FakeCard)
    out = tmp_path / "scored"
    argv = ["score", "--data", str(chebi20_sample_dir / "molt5_sample.tsv"), "--source", "fingerprint"]
    argv += ["--text-encoder", str(text_encoder_dir), "--out", str(out), "--push-to-hub", "org/chebi20-scored"]
    argv += FAST_FIT
    assert cli.main(argv) == 0
    assert pushed["data"][:2] == ("org/chebi20-scored", {"train": 300})
    repo, repo_type, text = pushed["card"]
    assert repo == "org/chebi20-scored" and repo_type == "dataset"
    assert text.startswith("# CLASS difficulty scores") and text.endswith("datasets' own card body")


def test_score_rejects_a_missing_split_or_text_encoder(tmp_path, prepared_dir):
    with pytest.raises(SystemExit, match="'validation' is not in the data"):
        cli.main(["score", "--data", str(prepared_dir), "--split", "validation", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="needs --text-encoder"):
        cli.main(["score", "--data", str(prepared_dir), "--out", str(tmp_path / "o")])


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, tiny_tokenizer):
    from conftest import make_tiny_bert_config

    from class_hf.models.configuration_dual_encoder import DualEncoderConfig
    from class_hf.models.modeling_dual_encoder import DualEncoderModel

    torch.manual_seed(0)
    config = DualEncoderConfig(
        text_config=make_tiny_bert_config(len(tiny_tokenizer)), gnn_hidden_size=16, gnn_num_layers=2, projection_dim=16
    )
    path = tmp_path_factory.mktemp("checkpoint")
    DualEncoderModel(config).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def test_evaluate_prints_metrics_for_both_pools(tmp_path, chebi20_sample_dir, checkpoint_dir, capsys):
    data_dir = tmp_path / "resplit"
    source = str(chebi20_sample_dir / "molt5_sample.tsv")
    assert cli.main(["prepare", "--source", source, "--out", str(data_dir), "--resplit", "0.6,0.2,0.2"]) == 0
    capsys.readouterr()
    base = ["evaluate", "--model", str(checkpoint_dir), "--data", str(data_dir), "--split", "test"]
    assert cli.main([*base, "--output", str(tmp_path / "split.json")]) == 0
    split = json.loads(capsys.readouterr().out)
    num_test = len(load_from_disk(str(data_dir))["test"])
    assert split["pool"] == "split" and split["num_candidate_molecules"] == num_test
    assert 0 < split["metrics"]["test_split_t2m_mrr"] <= 1
    assert json.loads((tmp_path / "split.json").read_text())["metrics"] == split["metrics"]

    assert cli.main([*base, "--pool", "all"]) == 0
    pooled = json.loads(capsys.readouterr().out)
    assert pooled["num_candidate_molecules"] == pooled["num_candidate_texts"] == 300
    # More candidates can only push the true partner down.
    assert pooled["metrics"]["test_all_t2m_mean_rank"] >= split["metrics"]["test_split_t2m_mean_rank"]

    table = tmp_path / "pool.tsv"
    table.write_text(
        "CID\tSMILES\n1\tCCO\n2\tc1ccccc1O\n"
        + "".join(f"{c}\tCCO\n" for c in load_from_disk(str(data_dir))["test"]["cid"][:3])
    )
    assert cli.main([*base, "--pool", "all", "--pool-molecules", str(table)]) == 0
    with_table = json.loads(capsys.readouterr().out)
    assert with_table["num_candidate_molecules"] == 302  # the split's own CIDs are not added twice
