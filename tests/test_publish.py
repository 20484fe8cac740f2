"""Publishing a trained run with its model card (``class-hf push``), offline: the upload is recorded, not sent."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from class_hf import cli
from class_hf.hub import publish_run, retarget_model_card
from class_hf.model_card import build_model_card, metrics_from_model_card

METRICS = {
    "split": {"t2m_hits@1": 0.5, "t2m_mrr": 0.61, "m2t_hits@1": 0.4, "m2t_mrr": 0.52},
    "all": {"t2m_hits@1": 0.2, "t2m_mrr": 0.31, "m2t_hits@1": 0.1, "m2t_mrr": 0.22},
}


@pytest.fixture()
def run_dir(tmp_path, monkeypatch):
    """A finished recipe run as it lies on disk: the final model, its card and outputs, plus what stays local."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may leave the machine
    out = tmp_path / "runs" / "demo"
    (out / "checkpoint-84").mkdir(parents=True)
    (out / "checkpoint-84" / "model.safetensors").write_bytes(b"old weights")
    (out / "scored_dataset").mkdir()
    (out / "scored_dataset" / "dataset_dict.json").write_text("{}")
    for name, content in {
        "config.json": '{"model_type": "class_dual_encoder"}',
        "model.safetensors": "weights",
        "tokenizer.json": "{}",
        "metrics.json": "{}",
        "loss.png": "png",
    }.items():
        (out / name).write_text(content)
    card = build_model_card(
        model_type="class_dual_encoder",
        test_metrics=METRICS,
        model_id="runs/demo",
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        recipe_command="python recipes/dual_encoder.py --config recipes/configs/demo.yaml",
    )
    card.save(out / "README.md")
    return out


def test_the_card_is_retargeted_to_the_repository(run_dir):
    text = retarget_model_card((run_dir / "README.md").read_text(), "org/class-dual-encoder")
    card = ModelCard(text)
    assert card.data.model_name == "org/class-dual-encoder"
    assert 'AutoModel.from_pretrained("org/class-dual-encoder")' in card.text
    assert "--model_name_or_path org/class-dual-encoder" in card.text
    assert '"runs/demo"' not in card.text
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert metrics_from_model_card(card) == METRICS  # the model-index survives, every float


def test_a_dry_run_lists_the_model_files_and_leaves_checkpoints_and_data_local(run_dir):
    result = publish_run(run_dir, "org/class-dual-encoder", dry_run=True)
    assert result["files"] == [
        "README.md", "config.json", "loss.png", "metrics.json", "model.safetensors", "tokenizer.json",
    ]  # fmt: skip
    assert result["dry_run"] and "url" not in result


def test_publishing_creates_the_repository_and_uploads_one_commit(run_dir, monkeypatch):
    import huggingface_hub

    calls = {}

    class RecordingApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, **kwargs):
            calls["create_repo"] = (repo_id, kwargs)

        def create_commit(self, repo_id, operations, commit_message, **kwargs):
            calls["commit"] = (repo_id, operations, commit_message, kwargs)
            return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    result = publish_run(run_dir, "org/class-dual-encoder", private=True, token="hf_test")
    assert calls["token"] == "hf_test"
    assert calls["create_repo"] == (
        "org/class-dual-encoder",
        {"private": True, "exist_ok": True, "repo_type": "model"},
    )
    repo_id, operations, message, _ = calls["commit"]
    uploaded = {op.path_in_repo: op for op in operations}
    assert repo_id == "org/class-dual-encoder" and "class-hf" in message
    assert sorted(uploaded) == result["files"]
    assert uploaded["model.safetensors"].path_or_fileobj == str(run_dir / "model.safetensors")
    card = uploaded["README.md"].path_or_fileobj
    assert isinstance(card, bytes) and b'from_pretrained("org/class-dual-encoder")' in card
    assert result["url"].endswith("/commit/abc")


def test_publishing_needs_a_token_a_model_and_a_card(run_dir, monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ValueError, match="No Hugging Face token: log in with `hf auth login`"):
        publish_run(run_dir, "org/name")
    with pytest.raises(ValueError, match="not a Hub repository id"):
        publish_run(run_dir, "just-a-name", dry_run=True)
    (run_dir / "README.md").unlink()
    with pytest.raises(ValueError, match="has no model card"):
        publish_run(run_dir, "org/name", dry_run=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no trained model"):
        publish_run(empty, "org/name", dry_run=True)


def test_class_hf_push_is_one_command(run_dir, tmp_path, capsys):
    card_path = tmp_path / "card.md"
    status = cli.main(["push", str(run_dir), "--repo-id", "org/name", "--dry-run", "--card", str(card_path)])
    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["repo_id"] == "org/name" and "model.safetensors" in printed["files"]
    assert 'from_pretrained("org/name")' in card_path.read_text()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["push", str(tmp_path / "missing"), "--repo-id", "org/name", "--dry-run"])
    assert exit_.value.code == 2 and "no such folder" in str(exit_.value)
