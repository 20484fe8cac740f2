"""Every CLI verb, and the usage snippet of the generated model card, on every shipped backbone configuration.

The library must never break on a model it trained itself: whatever molecule features a backbone reads (graphs only,
Morgan fingerprints, ORMA's hierarchical graphs, AMAN's bond-aware graphs), ``class-hf score``, ``evaluate``,
``index``, ``search`` and ``cases`` featurize for it (``class_hf.data.features``). Tiny models (BERT with hidden size
32, a WordLevel tokenizer) are built in memory and saved to temporary folders; nothing is downloaded.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import CHEBI20_SAMPLE, make_tiny_bert_config
from datasets import Dataset, load_from_disk

from class_hf import cli
from class_hf.data.features import MoleculeFeatures
from class_hf.model_card import build_model_card
from class_hf.models.registry import get_backbone

# name -> (registry backbone, tiny config overrides): the shipped configurations.
CONFIGURATIONS = {
    "dual_encoder": ("dual_encoder", {"gnn_hidden_size": 16, "gnn_num_layers": 2, "projection_dim": 16}),
    "dual_encoder_fingerprints": (
        "dual_encoder",
        {"gnn_hidden_size": 16, "gnn_num_layers": 2, "projection_dim": 16, "use_fingerprint": True},
    ),
    "orma": ("orma", {"text_encoder_name_or_path": None, "emb_dim": 16, "num_gnn_layers": 2, "ot_iterations": 5}),
    "aman": (
        "aman",
        {
            "text_encoder_name_or_path": None,
            "graph_hidden_size": 16,
            "graph_num_heads": 2,
            "graph_ffn_size": 32,
            "graph_num_layers": 2,
            "projection_dim": 16,
            "discriminator_hidden_sizes": [8],
        },
    ),
}
QUERY = "The molecule is a monocarboxylic acid anion that is the conjugate base of a fatty acid."


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The 300-pair sample re-split 60/20/20 by ``class-hf prepare``, graphs only (no fingerprints)."""
    out = tmp_path_factory.mktemp("prepared") / "chebi20"
    argv = ["prepare", "--source", str(CHEBI20_SAMPLE / "molt5_sample.tsv"), "--out", str(out)]
    assert cli.main([*argv, "--resplit", "0.6,0.2,0.2"]) == 0
    return out


@pytest.fixture(scope="module", params=sorted(CONFIGURATIONS))
def checkpoint(request, tmp_path_factory, tiny_tokenizer):
    """``(name, folder)``: a tiny model of one shipped configuration saved with its tokenizer."""
    backbone, overrides = CONFIGURATIONS[request.param]
    torch.manual_seed(0)
    model = get_backbone(backbone).build(text_config=make_tiny_bert_config(len(tiny_tokenizer)), **overrides)
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return request.param, path


def _json_out(capsys) -> dict:
    """The JSON document a verb printed (the warm-up's own Trainer may print its summary line before it)."""
    out = capsys.readouterr().out
    start = re.search(r"(?m)^\{$", out)
    assert start is not None, f"no JSON document in the output: {out[-500:]!r}"
    return json.loads(out[start.start() :])


def test_features_follow_the_configuration(checkpoint):
    name, path = checkpoint
    from transformers import AutoConfig

    features = MoleculeFeatures.for_model(AutoConfig.from_pretrained(path))
    assert features.fingerprints == (name == "dual_encoder_fingerprints") and not features.mol2vec


def test_score_with_the_checkpoint_and_a_warm_up_of_it(checkpoint, prepared, tmp_path, capsys):
    _, path = checkpoint
    base = ["score", "--data", str(prepared), "--eval-split", "validation", "--batch-size", "16"]
    assert cli.main([*base, "--source", f"model:{path}", "--out", str(tmp_path / "scored")]) == 0
    info = _json_out(capsys)
    assert info["num_pairs"] == len(load_from_disk(str(prepared))["train"]) and 0 < info["eval_t2m_mrr"] <= 1
    train = load_from_disk(str(tmp_path / "scored"))["train"]
    assert {"n_confusing_t2m", "n_confusing_m2t", "difficulty"} <= set(train.column_names)

    warm = [*base, "--source", "warmup", "--model", str(path), "--warmup-fraction", "0.5"]
    assert cli.main([*warm, "--out", str(tmp_path / "warm")]) == 0
    assert _json_out(capsys)["source"] == "warmup"


def test_evaluate_in_both_pools(checkpoint, prepared, tmp_path, capsys):
    _, path = checkpoint
    base = ["evaluate", "--model", str(path), "--data", str(prepared), "--split", "test", "--batch-size", "16"]
    assert cli.main(base) == 0
    split = _json_out(capsys)
    num_test = split["num_queries"]
    assert split["num_candidate_molecules"] == num_test and 0 < split["metrics"]["test_split_t2m_mrr"] <= 1

    table = tmp_path / "pool.tsv"
    table.write_text("CID\tSMILES\n1\tCCO\n2\tc1ccccc1O\n")
    assert cli.main([*base, "--pool", "all", "--pool-molecules", str(table)]) == 0
    pooled = _json_out(capsys)
    assert pooled["num_candidate_molecules"] == 302 and pooled["num_candidate_texts"] == 300
    assert pooled["metrics"]["test_all_t2m_mean_rank"] >= split["metrics"]["test_split_t2m_mean_rank"]


def test_index_search_and_cases(checkpoint, prepared, tmp_path, capsys):
    _, path = checkpoint
    index = tmp_path / "index"
    library = CHEBI20_SAMPLE / "orma_sample.csv"
    argv = ["index", "--model", str(path), "--molecules", str(library), "--out", str(index), "--texts"]
    assert cli.main([*argv, "--batch-size", "32"]) == 0
    assert _json_out(capsys)["num_molecules"] == 300

    assert cli.main(["search", QUERY, "--index", str(index), "-k", "3", "--json"]) == 0
    found = _json_out(capsys)
    assert found["direction"] == "t2m" and len(found["results"]) == 3
    assert cli.main(["search", "--smiles", "CCO", "--index", str(index), "-k", "2", "--json"]) == 0
    assert len(_json_out(capsys)["results"]) == 2

    argv = ["cases", "--model", str(path), "--data", str(prepared), "--split", "test", "--n", "2", "--json"]
    assert cli.main(argv) == 0
    study = _json_out(capsys)
    assert study["num_queries"] == len(load_from_disk(str(prepared))["test"]) and study["split"] == "test"


def test_the_model_card_snippet_runs(checkpoint):
    name, path = checkpoint
    from transformers import AutoConfig

    card = build_model_card(
        model_type=AutoConfig.from_pretrained(path).model_type,
        test_metrics={"split": {"t2m_mrr": 0.5, "m2t_mrr": 0.5}},
        model_id=str(path),
    )
    snippet = re.search(r"```python\n(.*?)```", card.text, flags=re.DOTALL)
    assert snippet is not None, "the card has no Python usage snippet"
    rows = Dataset.from_dict(
        {"smiles": ["CCO", "c1ccccc1O", "CC(=O)O"], "description": ["an alcohol", "a phenol", "an acid"]}
    )
    namespace = {"dataset": rows}
    exec(compile(snippet.group(1), f"<model card snippet of {name}>", "exec"), namespace)
    assert namespace["scores"].shape == (3, 3)
