"""The `class-hf` command line, run in-process on the bundled ChEBI-20 sample."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from datasets import DatasetDict, load_from_disk

from class_hf import cli
from class_hf.hub import push_scored_dataset

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
    assert card.startswith("---\n") and "license: cc-by-4.0" in card and "pretty_name:" in card  # YAML metadata
    assert "`fingerprint`" in card and str(text_encoder_dir) in card and "class-hf score" in card
    assert "out of fold (5 folds)" in card


def test_score_raw_files_and_push_to_hub(tmp_path, chebi20_sample_dir, text_encoder_dir, monkeypatch):
    """Unprepared ChEBI-20 files score directly; --push-to-hub pushes the data, then our card over datasets' one.

    The Hub is a dict holding the repository's README.md; the fake ``push_to_hub`` of the data does to it what
    ``datasets`` does: it writes the files' description (``dataset_info``, ``configs``) into the YAML header and keeps
    the body the repository had.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    repo: dict[str, str] = {}
    pushes = []

    def fake_push(self, repo_id, **kwargs):
        pushes.append((repo_id, {split: len(part) for split, part in self.items()}, kwargs))
        files = {
            "dataset_info": {"splits": [{"name": split, "num_examples": len(part)} for split, part in self.items()]},
            "configs": [{"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in self]}],
        }
        card = DatasetCard(repo.get("README.md") or f"---\n{DatasetCardData().to_yaml()}\n---\n")
        for key, value in files.items():
            card.data[key] = value
        repo["README.md"] = str(card)

    def fake_load(cls, repo_id, repo_type=None):
        assert (repo_id, repo_type) == ("org/chebi20-scored", "dataset")
        return cls(repo["README.md"])

    def fake_card_push(self, repo_id, repo_type=None):
        assert (repo_id, repo_type) == ("org/chebi20-scored", "dataset")
        repo["README.md"] = str(self)

    monkeypatch.setattr(DatasetDict, "push_to_hub", fake_push)
    monkeypatch.setattr(DatasetCard, "load", classmethod(fake_load))
    monkeypatch.setattr(DatasetCard, "push_to_hub", fake_card_push)
    out = tmp_path / "scored"
    argv = ["score", "--data", str(chebi20_sample_dir / "molt5_sample.tsv"), "--source", "fingerprint"]
    argv += ["--text-encoder", str(text_encoder_dir), "--out", str(out), "--push-to-hub", "org/chebi20-scored"]
    argv += FAST_FIT
    assert cli.main(argv) == 0
    assert pushes[0][:2] == ("org/chebi20-scored", {"train": 300})

    def check(text: str) -> None:
        card = DatasetCard(text)
        assert card.data.license == "cc-by-4.0" and "class-hf" in card.data.tags  # our YAML metadata ...
        assert card.data.pretty_name == "ChEBI-20 with CLASS difficulty scores"
        assert card.data.dataset_info["splits"] == [{"name": "train", "num_examples": 300}]  # ... and datasets'
        assert card.text.count("# CLASS difficulty scores") == 1 and "class-hf score" in card.text

    check(repo["README.md"])
    saved = DatasetCard((out / "README.md").read_text())  # the card `score` saved next to the data
    assert saved.data.license == "cc-by-4.0" and saved.text.count("# CLASS difficulty scores") == 1
    # Pushing again (the same scores, or new ones) replaces the body: it is never repeated.
    push_scored_dataset(load_from_disk(str(out)), "org/chebi20-scored", saved)
    check(repo["README.md"])
    assert len(pushes) == 2


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


# ------------------------------------------------------------------------------------------------ errors and help
def _one_error_line(capsys, prefix: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in err if line.startswith(prefix)]
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    return errors[0]


def test_user_errors_are_one_line_with_exit_status_2(tmp_path, chebi20_sample_dir, capsys, monkeypatch):
    """Issue 13.8: a strict-validation failure, a missing file or a typo'd option used to print a traceback."""
    monkeypatch.delenv("CLASS_HF_DEBUG", raising=False)
    bad_rows = str(chebi20_sample_dir / "bad_rows.csv")
    cases = [
        (["prepare", "--source", bad_rows, "--out", str(tmp_path / "o"), "--strict"], "rows failed validation"),
        (["prepare", "--source", str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "o")], "nope.tsv"),
        (["evaluate", "--model", str(tmp_path / "no-model"), "--data", bad_rows], "no-model"),
        (["search", "--index", str(tmp_path / "no-index"), "a query"], "no-index is not a class-hf index"),
    ]
    for argv, expected in cases:
        with pytest.raises(SystemExit, match=expected) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2, argv
        line = _one_error_line(capsys, f"class-hf {argv[0]}: error:")
        assert expected in line and line.endswith("(--debug or CLASS_HF_DEBUG=1 shows the traceback)")

    with pytest.raises(SystemExit) as exit_:
        cli.main(["search", "--index", "x", "--tpo-k", "3", "query"])
    assert exit_.value.code == 2
    line = _one_error_line(capsys, "class-hf search")
    assert "unrecognized arguments: --tpo-k query (did you mean --top-k?)" in line
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serch", "--index", "x"])
    assert exit_.value.code == 2 and "Did you mean 'search'?" in _one_error_line(capsys, "class-hf: error:")


def test_outputs_devices_and_hub_ids_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    """`index --out FILE`, `--device banana|cuda` (no GPU) and `score --push-to-hub "not a repo"` used to fail only
    after the model was loaded and the work done, with a traceback. The model and data here do not exist: the error
    must come first."""
    monkeypatch.delenv("CLASS_HF_DEBUG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    index = ["index", "--model", str(tmp_path / "no-model"), "--molecules", str(tmp_path / "none.csv")]
    score = ["score", "--data", str(tmp_path / "no-data"), "--text-encoder", str(tmp_path / "no-encoder")]
    cases = [
        ([*index, "--out", str(a_file)], "--out '.*taken' is an existing file, not a folder"),
        ([*index, "--out", str(tmp_path / "i"), "--device", "banana"], "--device 'banana' is not a torch device"),
        ([*index, "--out", str(tmp_path / "i"), "--device", "cuda"], "--device 'cuda': this torch sees no CUDA GPU"),
        ([*index, "--out", str(tmp_path / "i"), "--device", "meta"], "--device 'meta': class-hf encodes on cpu"),
        ([*score, "--out", str(tmp_path / "s"), "--push-to-hub", "not a repo"], "--push-to-hub 'not a repo' is not"),
        ([*score, "--out", str(a_file)], "--out '.*taken' is an existing file"),
    ]
    for argv, expected in cases:
        with pytest.raises(SystemExit, match=expected) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2, argv
        _one_error_line(capsys, f"class-hf {argv[0]}: error:")


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    argv = ["prepare", "--source", str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "o")]
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        cli.main([*argv, "--debug"])
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        cli.main(["--debug", *argv])
    monkeypatch.setenv("CLASS_HF_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        cli.main(argv)


def test_version_and_defaults_in_every_help(capsys):
    from class_hf import __version__

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"class-hf {__version__}"
    parser = cli.build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subcommands) == set(cli.COMMANDS)
    for name, sub in subcommands.items():
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"class-hf {name} {action.option_strings or action.dest} has no help text"
            shown = action.default not in (None, argparse.SUPPRESS) and action.nargs != 0 and not action.required
            if shown:
                assert f"(default: {action.default})" in text, (
                    f"class-hf {name} --help hides the default of {action.dest}"
                )


def test_help_and_version_import_nothing_heavy():
    """`class-hf --help` / `class-hf <verb> --help` must not pay for torch (issue 14 part 4)."""
    code = (
        "import sys\n"
        "from class_hf import cli\n"
        "for argv in (['--help'], ['--version'], *[[name, '--help'] for name in cli.COMMANDS]):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit as exit_:\n"
        "        assert exit_.code == 0, (argv, exit_.code)\n"
        "heavy = ('torch', 'transformers', 'datasets', 'rdkit', 'torch_geometric', 'numpy')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HEAVY []" in result.stderr, result.stderr[-2000:]


def test_recipe_user_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from class_hf.recipe import run_recipe

    monkeypatch.delenv("CLASS_HF_DEBUG", raising=False)
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rte: 1.0e-4\n")
    with pytest.raises(
        SystemExit, match=r"unknown argument\(s\) \['learning_rte'\] \(did you mean learning_rate"
    ) as exit_:
        run_recipe("dual_encoder", {}, ["--config", str(config)])
    assert exit_.value.code == 2
    _one_error_line(capsys, "recipes/dual_encoder.py: error:")
    with pytest.raises(
        SystemExit, match=r"unrecognized arguments: --learning_rte 0.1 \(did you mean --learning_rate\?\)"
    ):
        run_recipe("dual_encoder", {}, ["--learning_rte", "0.1"])
    _one_error_line(capsys, "recipes/dual_encoder.py: error:")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['learning_rte'\]"):
        run_recipe("dual_encoder", {}, ["--config", str(config), "--debug"])


# ------------------------------------------------------------------------------------------------ prepare: bad input
def test_prepare_refuses_a_header_only_split(tmp_path, chebi20_sample_dir, capsys):
    """Issue 13.1: `prepare` used to exit 0 and write a dataset that `load_from_disk` could not read."""
    folder = tmp_path / "chebi20"
    folder.mkdir()
    lines = (chebi20_sample_dir / "molt5_sample.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "validation.tsv").write_text("".join(lines[:51]), encoding="utf-8")
    (folder / "test.tsv").write_text(lines[0], encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"'test' \(.*test.tsv\) hold no data rows") as exit_:
        cli.main(["prepare", "--source", str(folder), "--out", str(out)])
    assert exit_.value.code == 2 and not out.exists()
    assert "class-hf prepare: error:" in _one_error_line(capsys, "class-hf prepare: error:")


def test_prepare_refuses_a_split_without_valid_rows(tmp_path, chebi20_sample_dir, capsys):
    folder = tmp_path / "chebi20"
    folder.mkdir()
    header, *rows = (chebi20_sample_dir / "orma_sample.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "val.csv").write_text(header + "".join(rows[:50]), encoding="utf-8")
    (folder / "test.csv").write_text(header + '1,C1CC,x,"An open ring."\n2,,y,"No SMILES."\n', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"'test' \(.*test.csv\): all 2 rows dropped"):
        cli.main(["prepare", "--source", str(folder), "--out", str(tmp_path / "out")])
    _one_error_line(capsys, "class-hf prepare: error:")


def test_prepare_leaves_out_a_split_that_resplit_left_empty(tmp_path, chebi20_sample_dir, caplog):
    """What `prepare` writes always loads, with `load_from_disk` and with `class-hf cases --data`."""
    out = tmp_path / "out"
    argv = ["prepare", "--source", str(chebi20_sample_dir / "molt5_sample.tsv"), "--out", str(out)]
    with caplog.at_level(logging.WARNING, logger="class_hf.cli"):
        assert cli.main([*argv, "--resplit", "0.9,0.1,0"]) == 0
    assert "Leaving out the split(s) ['test']" in caplog.text
    data = load_from_disk(str(out))
    assert list(data) == ["train", "validation"] and sum(map(len, data.values())) == 300


def test_prepare_reads_bom_headerless_and_non_utf8_files(tmp_path, chebi20_sample_dir, capsys):
    source = (chebi20_sample_dir / "molt5_sample.tsv").read_bytes()
    bom = tmp_path / "bom.tsv"
    bom.write_bytes(b"\xef\xbb\xbf" + source)
    assert cli.main(["prepare", "--source", str(bom), "--out", str(tmp_path / "bom")]) == 0
    headerless = tmp_path / "test.txt"
    headerless.write_bytes(source.split(b"\n", 1)[1])
    assert cli.main(["prepare", "--source", str(headerless), "--out", str(tmp_path / "headerless")]) == 0
    assert (
        len(load_from_disk(str(tmp_path / "bom"))["train"])
        == len(load_from_disk(str(tmp_path / "headerless"))["test"])
        == 300
    )
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes(source.replace(b"The molecule", b"The mol\xe9cule", 1))
    capsys.readouterr()
    with pytest.raises(SystemExit, match=r"latin1.tsv, line 2: not UTF-8 text \(byte 0xe9"):
        cli.main(["prepare", "--source", str(latin1), "--out", str(tmp_path / "latin1")])
    _one_error_line(capsys, "class-hf prepare: error:")
