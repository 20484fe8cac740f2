"""Tests of the plain dual-encoder backbone: config, forward/backward, freezing, save/load and pretrained loading."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError
from torch_geometric.data import Batch, Data
from transformers import AutoConfig, AutoModel, BertModel

from class_hf.data.graphs import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS
from class_hf.models.losses import contrastive_loss
from class_hf.models.modeling_dual_encoder import DualEncoderConfig, DualEncoderModel


def make_molecule(num_atoms: int, num_bonds: int, generator: torch.Generator, fp_dim: int = 2048) -> Data:
    """A random molecule graph in the collator's format (bonds stored in both directions)."""
    x = torch.stack([torch.randint(0, d, (num_atoms,), generator=generator) for d in ATOM_FEATURE_DIMS], dim=1)
    src = torch.randint(0, num_atoms, (num_bonds,), generator=generator)
    dst = torch.randint(0, num_atoms, (num_bonds,), generator=generator)
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    bond = torch.stack([torch.randint(0, d, (num_bonds,), generator=generator) for d in BOND_FEATURE_DIMS], dim=1)
    fp = torch.log1p(torch.randint(0, 4, (1, fp_dim), generator=generator).float())
    return Data(x=x, edge_index=edge_index, edge_attr=bond.repeat(2, 1), fp=fp)


def make_batch(vocab_size: int, sizes=((5, 4), (1, 0), (9, 10), (3, 2)), seq_len: int = 12, seed: int = 0) -> dict:
    """A batch as the collator returns it: token ids with padding, and a graph Batch (one single-atom molecule)."""
    g = torch.Generator().manual_seed(seed)
    graph = Batch.from_data_list([make_molecule(n, e, g) for n, e in sizes])
    input_ids = torch.randint(5, vocab_size, (len(sizes), seq_len), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, seq_len // 2 :] = 0
    input_ids[attention_mask == 0] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "graph": graph}


@pytest.fixture()
def make_model(tiny_bert_config):
    def _make(**overrides) -> DualEncoderModel:
        torch.manual_seed(0)
        kwargs = {"text_config": tiny_bert_config, "gnn_hidden_size": 16, "gnn_num_layers": 2, "projection_dim": 8}
        kwargs.update(overrides)
        return DualEncoderModel(DualEncoderConfig(**kwargs))

    return _make


@pytest.fixture()
def batch(tiny_tokenizer):
    return make_batch(len(tiny_tokenizer))


# ------------------------------------------------------------------------------------------------------ config
def test_config_round_trip_and_nested_text_config(tiny_bert_config, tmp_path):
    config = DualEncoderConfig(text_config=tiny_bert_config.to_dict(), gnn_type="gin", projection_dim=64)
    assert config.text_config.hidden_size == 32 and config.text_config.model_type == "bert"
    config.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model_type"] == "class_dual_encoder"
    assert data["text_config"]["model_type"] == "bert" and data["text_config"]["hidden_size"] == 32
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, DualEncoderConfig)
    assert loaded.gnn_type == "gin" and loaded.projection_dim == 64
    assert loaded.text_config.to_dict() == config.text_config.to_dict()
    # Default construction (needed by transformers internals) gives a BERT-base text config.
    assert DualEncoderConfig().text_config.hidden_size == 768


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"pooling": "max"}, "pooling"),
        ({"gnn_type": "gcn"}, "gnn_type"),
        ({"graph_pooling": "max"}, "graph_pooling"),
        ({"gnn_num_layers": 0}, "gnn_num_layers"),
        ({"logit_scale_init": 500.0}, "logit_scale_init"),
        ({"freeze_text_encoder": True, "train_text_layers": 1}, "train_text_layers"),
        ({"train_text_layers": 3}, "train_text_layers"),
        ({"text_config": {"hidden_size": 32}}, "model_type"),
        ({"use_fingerprint": "yes"}, "use_fingerprint"),
        ({"projection_dim": 2.5}, "projection_dim"),
    ],
)
def test_config_rejects_invalid_values(tiny_bert_config, overrides, match):
    kwargs = {"text_config": tiny_bert_config, **overrides}
    # Errors raised inside the config's validator reach the caller wrapped by huggingface_hub's @strict.
    with pytest.raises((ValueError, TypeError, StrictDataclassError), match=match):
        DualEncoderConfig(**kwargs)


# ------------------------------------------------------------------------------------------------ forward pass
@pytest.mark.parametrize(
    ("gnn_type", "graph_pooling", "use_fingerprint", "pooling"),
    [("gine", "mean", False, "mean"), ("gin", "sum", True, "cls"), ("gine", "attention", True, "pooler")],
)
def test_forward_backward_every_trainable_parameter_gets_a_gradient(
    make_model, batch, gnn_type, graph_pooling, use_fingerprint, pooling
):
    model = make_model(
        gnn_type=gnn_type, graph_pooling=graph_pooling, use_fingerprint=use_fingerprint, pooling=pooling
    )
    model.train()
    out = model(**batch)
    b = batch["input_ids"].shape[0]
    assert out.per_sample_loss.shape == (b,)
    assert torch.allclose(out.loss, out.per_sample_loss.mean())
    assert out.text_embeds.shape == out.mol_embeds.shape == (b, 8)
    assert torch.allclose(out.text_embeds.norm(dim=-1), torch.ones(b), atol=1e-5)
    assert set(out.loss_components) == {"t2m", "m2t"}
    assert torch.allclose((out.loss_components["t2m"] + out.loss_components["m2t"]) / 2, out.loss)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing, f"parameters without gradient: {missing}"
    assert (model.text_encoder.pooler is not None) == (pooling == "pooler")


def test_loss_matches_contrastive_loss_and_intensity_scales_logits(make_model, batch):
    model = make_model()
    model.eval()
    out = model(**batch)
    scale = math.exp(model.logit_scale.item())
    assert scale == pytest.approx(1 / 0.07, rel=1e-5)
    expected = contrastive_loss(out.text_embeds, out.mol_embeds, scale)["per_sample_loss"]
    assert torch.allclose(out.per_sample_loss, expected, atol=1e-5)
    sharp = model(**batch, intensity=2.0)
    expected_sharp = contrastive_loss(out.text_embeds, out.mol_embeds, 2.0 * scale)["per_sample_loss"]
    assert torch.allclose(sharp.per_sample_loss, expected_sharp, atol=1e-5)
    assert not torch.allclose(sharp.per_sample_loss, out.per_sample_loss)
    assert model.supports_intensity is True
    with pytest.raises(ValueError, match="intensity"):
        model(**batch, intensity=0.0)


def test_logit_scale_is_clamped_at_100_and_optionally_fixed(make_model):
    model = make_model()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
    assert model.get_logit_scale().item() == pytest.approx(100.0)
    fixed = make_model(learnable_temperature=False, logit_scale_init=20.0)
    assert not fixed.logit_scale.requires_grad
    assert fixed.get_logit_scale().item() == pytest.approx(20.0)
    assert "logit_scale" not in fixed.param_groups()["other"]


def test_return_loss_false_and_kwargs(make_model, batch):
    model = make_model()
    out = model(**batch, return_loss=False)
    assert out.loss is None and out.per_sample_loss is None and out.text_embeds is not None
    model(**batch, sample_idx=torch.arange(4), difficulty=torch.rand(4))  # collator extras are accepted
    with pytest.raises(TypeError, match="labels"):
        model(**batch, labels=torch.arange(4))
    short = dict(batch, input_ids=batch["input_ids"][:3], attention_mask=batch["attention_mask"][:3])
    with pytest.raises(ValueError, match="molecule"):
        model(**short)


def test_fingerprint_branch_on_and_off(make_model, batch):
    off = make_model(use_fingerprint=False).eval()
    assert off.graph_encoder.fingerprint_proj is None
    changed_fp = batch["graph"].clone()
    changed_fp.fp = torch.rand_like(changed_fp.fp)
    assert torch.equal(off.encode_molecule(batch["graph"]), off.encode_molecule(changed_fp))

    on = make_model(use_fingerprint=True).eval()
    assert on.graph_encoder.fingerprint_proj.in_features == 2048
    assert not torch.allclose(on.encode_molecule(batch["graph"]), on.encode_molecule(changed_fp))
    no_fp = batch["graph"].clone()
    del no_fp.fp
    with pytest.raises(ValueError, match="fingerprints=True"):
        on.encode_molecule(no_fp)


@pytest.mark.parametrize("gnn_type", ["gin", "gine"])
@pytest.mark.parametrize("graph_pooling", ["mean", "sum", "attention"])
def test_single_atom_molecules_without_bonds(make_model, tiny_tokenizer, gnn_type, graph_pooling):
    model = make_model(gnn_type=gnn_type, graph_pooling=graph_pooling).train()
    for sizes in [((1, 0), (1, 0), (1, 0)), ((1, 0),)]:
        batch = make_batch(len(tiny_tokenizer), sizes=sizes)
        assert batch["graph"].edge_index.shape == (2, 0)
        out = model(**batch)
        assert out.per_sample_loss.shape == (len(sizes),) and torch.isfinite(out.loss)
        out.loss.backward()


def test_score_is_cosine(make_model, batch):
    model = make_model(normalize=False).eval()
    text = model.encode_text(batch["input_ids"], batch["attention_mask"])
    mol = model.encode_molecule(batch["graph"])
    assert not torch.allclose(text.norm(dim=-1), torch.ones(4))  # raw embeddings when normalize=False
    expected = F.cosine_similarity(text.unsqueeze(1), mol.unsqueeze(0), dim=-1)
    assert torch.allclose(model.score(text, mol), expected, atol=1e-6)
    assert model.score(text[:2], mol).shape == (2, 4)


# --------------------------------------------------------------------------------------------------- freezing
def test_frozen_text_encoder_gets_no_gradient(make_model, batch):
    model = make_model(freeze_text_encoder=True)
    model.train()
    assert not model.text_encoder.training and model.graph_encoder.training
    assert model.param_groups()["text_encoder"] == []
    out = model(**batch)
    out.loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.text_encoder.parameters())
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.text_projection.weight.grad.any()


@pytest.mark.parametrize("pooling", ["mean", "pooler"])
def test_train_text_layers_1_trains_only_the_top_layer(make_model, batch, pooling):
    model = make_model(train_text_layers=1, pooling=pooling)
    model.train()
    model(**batch).loss.backward()
    trainable = {n for n, p in model.text_encoder.named_parameters() if p.requires_grad}
    expected = {n for n, _ in model.text_encoder.named_parameters() if n.startswith(("encoder.layer.1.", "pooler."))}
    assert trainable == expected and any(n.startswith("encoder.layer.1.") for n in trainable)
    for name, param in model.text_encoder.named_parameters():
        assert (param.grad is not None) == (name in trainable), name
    assert set(model.param_groups()["text_encoder"]) == {f"text_encoder.{n}" for n in trainable}
    assert model.text_encoder.training  # partly trained encoders keep dropout


def test_param_groups_split_by_text_encoder_prefix(make_model):
    model = make_model()
    groups = model.param_groups()
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(groups["text_encoder"]) | set(groups["other"]) == names
    assert all(n.startswith("text_encoder.") for n in groups["text_encoder"])
    assert not any(n.startswith("text_encoder.") for n in groups["other"])
    assert "logit_scale" in groups["other"] and "mol_projection.weight" in groups["other"]


# -------------------------------------------------------------------------------------------------- save / load
def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("overrides", [{}, {"gnn_type": "gin", "use_fingerprint": True, "train_text_layers": 1}])
def test_save_pretrained_auto_model_round_trip_is_bit_identical(make_model, batch, tmp_path, overrides):
    model = make_model(graph_pooling="attention", **overrides)
    model.train()
    model(**batch).loss.backward()  # updates the BatchNorm running statistics
    with torch.no_grad():
        model.logit_scale.fill_(2.5)  # differs from its init value: a re-initialisation on load would show
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "class_dual_encoder" and config["text_config"]["model_type"] == "bert"
    assert config["architectures"] == ["DualEncoderModel"]

    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is DualEncoderModel
    _assert_same_state(model, loaded)
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }
    model.eval()
    loaded.eval()
    with torch.no_grad():
        a, b = model(**batch), loaded(**batch)
    assert torch.equal(a.text_embeds, b.text_embeds) and torch.equal(a.mol_embeds, b.mol_embeds)
    assert torch.equal(a.per_sample_loss, b.per_sample_loss)


def test_text_encoder_name_or_path_loads_pretrained_weights(tiny_bert_config, tmp_path):
    torch.manual_seed(123)
    pretrained = BertModel(tiny_bert_config)
    with torch.no_grad():
        for p in pretrained.parameters():
            p.add_(0.05 * torch.randn_like(p))  # away from any init distribution's typical values
    bert_dir = tmp_path / "bert"
    pretrained.save_pretrained(bert_dir)

    config = DualEncoderConfig(
        text_encoder_name_or_path=str(bert_dir), pooling="pooler", gnn_hidden_size=16, projection_dim=8
    )
    assert config.text_config.hidden_size == 32  # read from the folder
    torch.manual_seed(0)
    model = DualEncoderModel(config)
    _assert_same_state(pretrained, model.text_encoder)
    assert model.text_encoder.training  # not left in from_pretrained's eval mode
    _assert_same_state(pretrained, AutoModel.from_config(config).text_encoder)

    # A saved class-hf checkpoint holds the (fine-tuned) text encoder: loading it never reads the original folder.
    with torch.no_grad():
        model.text_encoder.embeddings.word_embeddings.weight.add_(1.0)
    model.save_pretrained(tmp_path / "dual")
    shutil.rmtree(bert_dir)
    loaded = AutoModel.from_pretrained(tmp_path / "dual")
    _assert_same_state(model, loaded)
    assert loaded.config.text_encoder_name_or_path == str(bert_dir)


def test_from_pretrained_with_output_loading_info(make_model, tmp_path):
    model = make_model(train_text_layers=1)
    model.save_pretrained(tmp_path)
    loaded, info = DualEncoderModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is DualEncoderModel
    assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")), info
    _assert_same_state(model, loaded)
    # the freezing is re-applied on the model inside the tuple, too
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }
    assert not loaded.text_encoder.embeddings.word_embeddings.weight.requires_grad
    auto_loaded, _ = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    _assert_same_state(model, auto_loaded)


def test_curriculum_trainer_optimizer_groups(make_model, tmp_path, optimizer_settings):
    model = make_model(train_text_layers=1)
    settings = optimizer_settings(model, tmp_path)  # no rate in the config: every group at learning_rate
    assert {lr for lr, _ in settings.values()} == {1e-3}
    assert settings["logit_scale"] == (1e-3, 0.0) and settings["mol_projection.weight"] == (1e-3, 0.01)
    assert settings["graph_encoder.norms.0.module.weight"][1] == 0.0  # BatchNorm
    settings = optimizer_settings(model, tmp_path, text_encoder_learning_rate=2e-4)
    for name, (lr, _) in settings.items():
        assert lr == (2e-4 if name.startswith("text_encoder.") else 1e-3), name
    assert not any(n.startswith("text_encoder.embeddings.") for n in settings)  # frozen by train_text_layers=1
