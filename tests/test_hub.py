"""Offline Hub round trips: a CLASS checkpoint and a difficulty-scored ChEBI-20 laid out in a temporary Hub cache.

The cache is built as ``huggingface_hub`` lays it out (``models--ORG--NAME/refs/main`` holding the revision name
without a trailing newline, files under ``snapshots/<rev>/``), so ``AutoModel.from_pretrained("org/name")``,
``snapshot_download`` and the recipes' Hub ids resolve with ``HF_HUB_OFFLINE=1`` and no network.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Value, load_dataset, load_from_disk

from class_hf import cli
from class_hf.hub import scored_dataset_card

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "fixtures" / "chebi20" / "orma_sample.csv"
MODEL_ID, DATASET_ID = "org/tiny-class", "org/chebi20-scored"
DIFFICULTY_COLUMNS = ("n_confusing_t2m", "n_confusing_m2t", "difficulty")


def _checksum(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _snapshot(cache: Path, repo_type: str, repo_id: str, revision: str) -> Path:
    """``<cache>/<type>s--org--name/snapshots/<revision>``, with ``refs/main`` pointing at it (no newline)."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)  # write_text adds no newline
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    return snapshot


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A Hub cache with a tiny dual encoder and a ChEBI-20 scored by it through ``class-hf prepare`` / ``score``."""
    from conftest import make_tiny_bert_config, make_tiny_tokenizer

    from class_hf.models import DualEncoderConfig, DualEncoderModel

    root = tmp_path_factory.mktemp("hub")
    cache = root / "cache"
    tokenizer = make_tiny_tokenizer()
    torch.manual_seed(0)
    text_config = make_tiny_bert_config(len(tokenizer))
    # gnn_hidden_size 24 is no recipe's default: a run that shows it loaded this checkpoint.
    model = DualEncoderModel(DualEncoderConfig(text_config=text_config, gnn_hidden_size=24, projection_dim=16))
    model_dir = _snapshot(cache, "model", MODEL_ID, "rev-model-1")
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    prepared, scored = root / "prepared", root / "scored"
    assert cli.main(["prepare", "--source", str(SAMPLE), "--out", str(prepared), "--resplit", "0.8,0.1,0.1"]) == 0
    argv = ["score", "--data", str(prepared), "--source", f"model:{model_dir}", "--out", str(scored)]
    assert cli.main([*argv, "--batch-size", "32"]) == 0

    # What a push of the scored data holds: one parquet file per split under data/, and the dataset card.
    data_dir = _snapshot(cache, "dataset", DATASET_ID, "rev-data-1")
    (data_dir / "data").mkdir()
    data = load_from_disk(str(scored))
    for split, part in data.items():
        part.to_parquet(data_dir / "data" / f"{split}-00000-of-00001.parquet")
    info = json.loads((scored / "difficulty_info.json").read_text())
    card = scored_dataset_card(info, command="class-hf score ...", source=str(SAMPLE), scorer=MODEL_ID)
    card.save(data_dir / "README.md")
    return {"cache": cache, "model": model, "model_dir": model_dir, "scored": scored, "data_dir": data_dir}


def test_scored_dataset_round_trips_through_save_to_disk_and_parquet(hub, tmp_path):
    scored = load_from_disk(str(hub["scored"]))
    assert set(scored) == {"train", "validation", "test"}
    train = scored["train"]
    assert train.features["n_confusing_t2m"] == Value("int64") and train.features["difficulty"] == Value("float32")
    assert set(DIFFICULTY_COLUMNS).isdisjoint(scored["test"].column_names)  # only the scored split carries them
    files = {split: str(hub["data_dir"] / "data" / f"{split}-00000-of-00001.parquet") for split in scored}
    parquet = load_dataset("parquet", data_files=files, cache_dir=str(tmp_path))
    assert parquet["train"].features == train.features  # int64 counts and float32 difficulty survive parquet
    for split in scored:
        assert parquet[split]["cid"] == scored[split]["cid"]
    # One schema for all splits: the unscored splits come back with empty difficulty columns (the recipes drop them).
    assert set(parquet["test"]["difficulty"]) == {None}
    for column in DIFFICULTY_COLUMNS:
        assert np.array_equal(np.asarray(parquet["train"][column]), np.asarray(train[column]))
    difficulty = np.asarray(train["difficulty"])
    assert 0 <= difficulty.min() and difficulty.max() <= 1 and difficulty.std() > 0


def test_load_dataset_of_an_offline_snapshot_gives_the_scored_data_and_its_card(hub, tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import DatasetCard

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    path = huggingface_hub.snapshot_download(DATASET_ID, repo_type="dataset", cache_dir=hub["cache"])
    assert Path(path) == hub["data_dir"]
    loaded = load_dataset(path, cache_dir=str(tmp_path))
    scored = load_from_disk(str(hub["scored"]))
    assert set(loaded) == set(scored)
    for column in ("cid", *DIFFICULTY_COLUMNS):
        assert loaded["train"][column] == scored["train"][column]
    card = DatasetCard.load(Path(path) / "README.md")
    assert card.data.pretty_name == "ChEBI-20 with CLASS difficulty scores" and "class-hf" in card.data.tags
    assert f"scored by: `model:{hub['model_dir']}`" in card.text and MODEL_ID in card.text


def test_training_on_precomputed_columns_scores_nothing(hub, tmp_path, monkeypatch):
    """A recipe run on the loaded scored data uses its difficulty column as it is: no scorer is ever called."""
    from class_hf.curriculum import difficulty

    def refuse(*args, **kwargs):
        raise AssertionError("the difficulty was scored again although the data carries it")

    for name in ("compute_difficulty", "score_with_model", "warm_up_copy", "score_difficulty"):
        monkeypatch.setattr(difficulty, name, refuse)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    main = runpy.run_path(str(ROOT / "recipes" / "dual_encoder.py"))["main"]  # the script, not run as __main__
    results = main(
        [
            "--dataset_name_or_path", str(hub["data_dir"]),  # a snapshot folder: load_dataset(snapshot_download())
            "--difficulty_source", "precomputed",
            "--tokenizer_name_or_path", "wordlevel",
            "--text_config", '{"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, '
            '"num_attention_heads": 2, "intermediate_size": 37}',
            "--model_config", '{"gnn_hidden_size": 32, "projection_dim": 32}',
            "--num_train_epochs", "2", "--pacing_stages", "2", "--per_device_train_batch_size", "32",
            "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
            "--output_dir", str(out), "--disable_tqdm", "true",
        ]
    )  # fmt: skip
    assert results["difficulty"] == {"source": "precomputed column"}
    assert results["curriculum"]["scoring_seconds"] == 0
    given = load_from_disk(str(hub["scored"]))["train"]
    used = load_from_disk(str(out / "scored_dataset"))["train"]
    assert used["cid"] == given["cid"]
    for column in DIFFICULTY_COLUMNS:
        assert np.array_equal(np.asarray(used[column]), np.asarray(given[column])), column


def test_hub_ids_load_offline_with_automodel_and_in_the_recipe(hub, tmp_path):
    """``import class_hf`` is enough for ``AutoModel``; the recipe takes both Hub ids (model and scored data)."""
    out = tmp_path / "continued"
    script = f"""
import hashlib, json, sys
import class_hf
from transformers import AutoModel, AutoTokenizer

model = AutoModel.from_pretrained({MODEL_ID!r})
digest = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    digest.update(name.encode())
    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
print("CHECKSUM", type(model).__name__, digest.hexdigest(), len(AutoTokenizer.from_pretrained({MODEL_ID!r})))
sys.path.insert(0, "recipes")
import dual_encoder
dual_encoder.main([
    "--model_name_or_path", {MODEL_ID!r}, "--dataset_name_or_path", {DATASET_ID!r},
    "--difficulty_source", "precomputed", "--num_train_epochs", "2", "--pacing_stages", "2",
    "--max_length", "64", "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
    "--output_dir", {str(out)!r}, "--use_cpu", "--disable_tqdm", "true",
])
"""
    env = {**os.environ, "HF_HUB_CACHE": str(hub["cache"]), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.update(OMP_NUM_THREADS="1", HF_DATASETS_CACHE=str(tmp_path / "datasets-cache"))
    env.pop("HF_HOME", None)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("CHECKSUM"))
    _, cls, checksum, vocab = line.split()
    assert cls == "DualEncoderModel" and checksum == _checksum(hub["model"]) and int(vocab) > 100
    results = json.loads((out / "metrics.json").read_text())
    assert results["model_name_or_path"] == MODEL_ID and results["dataset"] == DATASET_ID
    assert results["difficulty"] == {"source": "precomputed column"}
    assert json.loads((out / "config.json").read_text())["gnn_hidden_size"] == 24  # the Hub checkpoint, trained on
    assert set(results["test"]) == {"split", "all"}


def test_push_to_hub_uploads_the_run_with_its_class_hf_card(tmp_path, monkeypatch):
    """``--push_to_hub`` goes through ``Trainer.push_to_hub``: our model card, not transformers' generic one."""
    import transformers.trainer
    from huggingface_hub import ModelCard

    from class_hf.model_card import metrics_from_model_card

    calls = {}

    class FakeApi:  # records what the Trainer sends instead of reaching the Hub
        def create_repo(self, repo_id, **kwargs):
            calls["create_repo"] = repo_id
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            calls["upload"] = (repo_id, sorted(os.listdir(folder_path)), kwargs.get("ignore_patterns"))
            calls["card"] = ModelCard.load(Path(folder_path) / "README.md")

    monkeypatch.setattr(transformers.trainer, "hf_api", FakeApi)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "pushed"
    main = runpy.run_path(str(ROOT / "recipes" / "dual_encoder.py"))["main"]
    results = main(
        [
            "--config", "recipes/configs/dual_encoder_tiny.yaml", "--output_dir", str(out),
            "--num_train_epochs", "2", "--pacing_stages", "2", "--max_train_samples", "64", "--eval_strategy", "no",
            "--push_to_hub", "--hub_model_id", "org/class-dual-encoder-tiny",
        ]
    )  # fmt: skip
    repo_id, files, _ = calls["upload"]
    assert calls["create_repo"] == repo_id == "org/class-dual-encoder-tiny"
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json", "metrics.json"} <= set(files)
    card = calls["card"]
    assert card.data.library_name == "class-hf" and card.data.model_name == "org/class-dual-encoder-tiny"
    assert metrics_from_model_card(card) == results["test"]
    assert 'AutoModel.from_pretrained("org/class-dual-encoder-tiny")' in card.text
