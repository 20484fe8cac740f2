"""Tests of the AMAN-like backbone: losses and their gradients, the discriminator, edge cases, save/load."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError
from torch_geometric.data import Batch, Data
from transformers import AutoConfig, AutoModel, BertModel, Trainer, TrainingArguments

from class_hf.data.collator import MoleculeTextCollator
from class_hf.data.graphs import smiles_to_graph
from class_hf.models.losses import triplet_loss
from class_hf.models.modeling_aman import AmanConfig, AmanModel, gradient_reversal

# One single-atom molecule without bonds (methane), an ion, and ordinary molecules.
SMILES = ["C", "[Na+]", "CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "OCC(O)CO", "C#N", "CC(C)(C)C(=O)O"]


def tiny_config(text_config, **overrides) -> AmanConfig:
    kwargs = {
        "text_config": text_config,
        "text_encoder_name_or_path": None,
        "graph_hidden_size": 32,
        "graph_num_heads": 4,
        "graph_ffn_size": 48,
        "graph_num_layers": 2,
        "projection_dim": 16,
        "discriminator_hidden_sizes": [24, 12],
    }
    kwargs.update(overrides)
    return AmanConfig(**kwargs)


@pytest.fixture()
def make_model(tiny_bert_config):
    def _make(**overrides) -> AmanModel:
        torch.manual_seed(0)
        return AmanModel(tiny_config(tiny_bert_config, **overrides))

    return _make


@pytest.fixture(scope="module")
def collator(tiny_tokenizer):
    return MoleculeTextCollator(tiny_tokenizer, max_length=48)


def rows_for(smiles: list[str], texts: list[str] | None = None) -> list[dict]:
    texts = texts or [f"the molecule {s} is a small compound" for s in smiles]
    return [{**smiles_to_graph(s), "description": t} for s, t in zip(smiles, texts, strict=True)]


@pytest.fixture(scope="module")
def fixture_rows(chebi20_sample_dir) -> list[dict]:
    """The first 32 real ChEBI-20 pairs of the fixture, featurized."""
    with open(chebi20_sample_dir / "orma_sample.csv", newline="") as f:
        pairs = [(r["CanonicalSMILES"], r["Description"]) for _, r in zip(range(32), csv.DictReader(f), strict=False)]
    return rows_for([s for s, _ in pairs], [d for _, d in pairs])


@pytest.fixture()
def batch(collator) -> dict:
    return collator(rows_for(SMILES))


def trainable(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def grads(loss: torch.Tensor, params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor | None]:
    values = torch.autograd.grad(loss, list(params.values()), retain_graph=True, allow_unused=True)
    return dict(zip(params, values, strict=True))


def assert_grads_close(a: dict, b: dict, scale: float = 1.0) -> None:
    for name in a:
        ga = torch.zeros(()) if a[name] is None else a[name]
        gb = torch.zeros(()) if b[name] is None else b[name]
        torch.testing.assert_close(ga, scale * gb, atol=1e-6, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


# ------------------------------------------------------------------------------------------------------ config
def test_config_round_trip_and_validation(tiny_bert_config, tmp_path):
    config = tiny_config(tiny_bert_config, adversarial_mode="wgan_gp", discriminator_hidden_sizes=(8, 4))
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is AmanConfig
    assert loaded.text_config.hidden_size == tiny_bert_config.hidden_size
    assert loaded.discriminator_hidden_sizes == [8, 4]
    assert loaded.adversarial_mode == "wgan_gp"
    as_dict = tiny_config(tiny_bert_config).to_dict()
    assert AmanConfig(**{**as_dict, "text_config": as_dict["text_config"]}).text_config.hidden_size == 32
    assert AmanConfig().text_config is None  # resolved from the Hub name only when the model is built

    bad = {
        "adversarial_mode": ("critic", "adversarial_mode"),
        "text_pooling": ("max", "text_pooling"),
        "graph_num_heads": (5, "divisible"),
        "triplet_margin": (0.0, "triplet_margin"),
        "adversarial_weight": (-1.0, "adversarial_weight"),
        "discriminator_hidden_sizes": ([], "discriminator_hidden_sizes"),
        "graph_hidden_size": ("big", "graph_hidden_size"),
        "discriminator_learning_rate": (0.0, "discriminator_learning_rate"),
    }
    for field, (value, match) in bad.items():
        with pytest.raises(StrictDataclassError, match=match):
            tiny_config(tiny_bert_config, **{field: value})


# ------------------------------------------------------------------------------------------------ forward pass
def test_forward_backward_shapes_and_loss_decomposition(make_model, batch):
    model = make_model()
    out = model(**batch)
    size = len(SMILES)
    assert out.loss.dim() == 0 and out.per_sample_loss.shape == (size,)
    assert out.text_embeds.shape == out.mol_embeds.shape == (size, 16)
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(size))
    torch.testing.assert_close(out.mol_embeds.norm(dim=-1), torch.ones(size))
    assert set(out.loss_components) == {"triplet", "discriminator"}
    torch.testing.assert_close(out.loss, sum(out.loss_components.values()))
    # What a trainer that re-weights per_sample_loss adds back: exactly the discriminator's BCE.
    torch.testing.assert_close(out.loss - out.per_sample_loss.mean(), out.loss_components["discriminator"])
    out.loss.backward()
    missing = [n for n, p in trainable(model).items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == [], f"parameters without a finite gradient: {missing}"


def test_per_sample_loss_is_the_triplet_loss_and_intensity_scales_the_margin(make_model, batch):
    model = make_model().eval()
    with torch.no_grad():
        text = model.encode_text(batch["input_ids"], batch["attention_mask"])
        mol = model.encode_molecule(batch["graph"])
        for intensity, margin in ((None, 0.3), (1.0, 0.3), (2.5, 0.75)):
            out = model(**batch, intensity=intensity)
            expected = triplet_loss(text, mol, margin=margin)["per_sample_loss"]
            torch.testing.assert_close(out.per_sample_loss, expected)
        low = model(**batch, intensity=0.5).per_sample_loss
        high = model(**batch, intensity=3.0).per_sample_loss
    assert (high > low).all()  # per pair: relu(d+ - d- + m) grows with m once positive
    assert AmanModel.supports_intensity
    with pytest.raises(ValueError, match="intensity"):
        model(**batch, intensity=0.0)


def test_embeddings_encoders_and_score_agree(make_model, batch):
    model = make_model().eval()
    with torch.no_grad():
        out = model(**batch, return_loss=False)
        assert out.loss is None and out.per_sample_loss is None
        torch.testing.assert_close(out.text_embeds, model.encode_text(batch["input_ids"], batch["attention_mask"]))
        torch.testing.assert_close(out.mol_embeds, model.encode_molecule(batch["graph"]))
        scores = model.score(out.text_embeds * 3.0, out.mol_embeds)
    torch.testing.assert_close(scores, out.text_embeds @ out.mol_embeds.T)
    assert scores.shape == (len(SMILES), len(SMILES))


# ------------------------------------------------------------------------------------- adversarial gradients
@pytest.mark.parametrize("mode", ["gradient_reversal", "wgan_gp"])
def test_discriminator_gets_gradient_only_from_its_own_loss(make_model, batch, mode):
    model = make_model(adversarial_mode=mode).eval()  # eval: no dropout; gradients still flow
    disc = trainable(model.discriminator)
    out = model(**batch)
    own = "discriminator" if mode == "gradient_reversal" else "critic"
    from_triplet = grads(out.per_sample_loss.mean(), disc)
    assert all(g is None for g in from_triplet.values()), "the triplet loss reached the discriminator"
    from_own = grads(out.loss_components[own], disc)
    # (The WGAN critic's output bias cancels in mean D(m) - mean D(t): its gradient is exactly 0, but not None.)
    assert all(g is not None for g in from_own.values()) and sum(g.abs().sum() for g in from_own.values()) > 0
    assert_grads_close(grads(out.loss, disc), from_own)
    if mode == "wgan_gp":
        from_generator = grads(out.loss_components["generator"], disc)
        assert all(g is None for g in from_generator.values()), "the generator term reached the critic"


def test_gradient_reversal_layer():
    x = torch.randn(5, 3, requires_grad=True)
    y = gradient_reversal(x, 0.25)
    assert torch.equal(y, x)
    (y * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, -0.25 * torch.arange(3.0).expand(5, 3))


def test_encoders_receive_the_reversed_scaled_gradient(make_model, batch):
    weight = 0.4
    model = make_model(adversarial_weight=weight).eval()
    encoders = {n: p for n, p in trainable(model).items() if not n.startswith("discriminator.")}
    disc = trainable(model.discriminator)
    out = model(**batch)
    # The same discriminator loss without the reversal layer: what the encoders would follow to *help* it.
    embeds = torch.cat([out.text_embeds, out.mol_embeds])
    labels = torch.cat([torch.ones(len(SMILES)), torch.zeros(len(SMILES))])
    plain = F.binary_cross_entropy_with_logits(model.discriminator(embeds), labels)
    torch.testing.assert_close(plain, out.loss_components["discriminator"])

    # Encoders: loss gradient = triplet gradient - weight * (discriminator-loss gradient).
    from_loss, from_triplet, from_plain = (grads(t, encoders) for t in (out.loss, out.per_sample_loss.mean(), plain))
    difference = {n: from_loss[n] - (0 if from_triplet[n] is None else from_triplet[n]) for n in encoders}
    assert_grads_close(difference, from_plain, scale=-weight)
    assert any(g is not None and g.abs().sum() > 0 for g in from_plain.values())
    # Discriminator: its own, unreversed gradient.
    assert_grads_close(grads(out.loss, disc), grads(plain, disc))


def test_zero_adversarial_weight_leaves_the_encoders_to_the_triplet_loss(make_model, batch):
    model = make_model(adversarial_weight=0.0).eval()
    encoders = {n: p for n, p in trainable(model).items() if not n.startswith("discriminator.")}
    out = model(**batch)
    assert_grads_close(grads(out.loss, encoders), grads(out.per_sample_loss.mean(), encoders))
    assert all(g.abs().sum() > 0 for g in grads(out.loss, trainable(model.discriminator)).values())


def test_wgan_gp_terms(make_model, batch):
    model = make_model(adversarial_mode="wgan_gp", adversarial_weight=0.5).eval()
    out = model(**batch)
    assert set(out.loss_components) == {"triplet", "critic", "generator"}
    torch.testing.assert_close(
        out.loss - out.per_sample_loss.mean(), out.loss_components["critic"] + out.loss_components["generator"]
    )
    text = {n: p for n, p in trainable(model).items() if n.startswith(("text_encoder.", "text_projection."))}
    mol = {n: p for n, p in trainable(model).items() if n.startswith("molecule_encoder.")}
    # The generator term (-D(mol)) moves only the molecule encoder, towards the text side, as in CMTMR.
    assert all(g is None for g in grads(out.loss_components["generator"], text).values())
    assert any(g is not None and g.abs().sum() > 0 for g in grads(out.loss_components["generator"], mol).values())
    # The critic sees detached features: no encoder gradient.
    assert all(g is None for g in grads(out.loss_components["critic"], {**text, **mol}).values())
    # Without grad (evaluation) there is no gradient penalty: critic = mean D(mol) - mean D(text).
    with torch.no_grad():
        out = model(**batch)
        critic = model.discriminator(out.mol_embeds).mean() - model.discriminator(out.text_embeds).mean()
    torch.testing.assert_close(out.loss_components["critic"], critic)
    torch.testing.assert_close(out.loss_components["generator"], -0.5 * model.discriminator(out.mol_embeds).mean())


# ---------------------------------------------------------------------------------------------- edge cases
def test_single_atom_and_bondless_molecules(make_model, collator):
    model = make_model()
    for smiles in (["C"], ["[Na+]", "C"], ["C", "CCO", "[He]"]):
        out = model(**collator(rows_for(smiles)))
        assert out.per_sample_loss.shape == (len(smiles),) and torch.isfinite(out.loss)
        out.loss.backward()
    single = model(**collator(rows_for(["C"])))
    assert single.per_sample_loss.item() == 0.0  # one pair has no negative


def test_hand_built_batches_and_errors(make_model):
    model = make_model()
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    mask = (ids != 0).long()
    atom = torch.zeros(1, 9, dtype=torch.long)
    no_edges = torch.empty(2, 0, dtype=torch.long)
    # No edge_attr at all is fine when there are no bonds.
    graph = Batch.from_data_list([Data(x=atom, edge_index=no_edges), Data(x=atom.repeat(2, 1), edge_index=no_edges)])
    assert model(ids, mask, graph).per_sample_loss.shape == (2,)
    bonded = Data(x=atom.repeat(2, 1), edge_index=torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match="edge_attr"):
        model(ids, mask, Batch.from_data_list([bonded, Data(x=atom, edge_index=no_edges)]))
    empty = Data(x=torch.zeros(0, 9, dtype=torch.long), edge_index=no_edges, num_nodes=0)
    with pytest.raises(ValueError, match=r"position\(s\) \[1\] have no atoms"):
        model(ids, mask, Batch.from_data_list([Data(x=atom, edge_index=no_edges), empty]))
    with pytest.raises(ValueError, match="2 texts but `graph` 1 molecules"):
        model(ids, mask, Batch.from_data_list([Data(x=atom, edge_index=no_edges)]))
    with pytest.raises(ValueError, match=r"\[N, 9\]"):
        model(ids, mask, Batch.from_data_list([Data(x=torch.zeros(1, 4, dtype=torch.long), edge_index=no_edges)] * 2))
    with pytest.raises(TypeError, match="labels"):
        model(ids, mask, graph, labels=torch.zeros(2))
    # The collator's bookkeeping columns are accepted and ignored.
    model(ids, mask, graph, sample_idx=torch.arange(2), difficulty=torch.rand(2))


# --------------------------------------------------------------------------------------- real data, training
def test_real_collator_batch_of_32_fixture_pairs(make_model, collator, fixture_rows):
    model = make_model()
    batch = collator(fixture_rows)
    assert batch["graph"].num_graphs == 32
    out = model(**batch)
    assert out.per_sample_loss.shape == (32,) and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in trainable(model).values())


def test_adam_steps_learn_without_collapse(make_model, collator, fixture_rows):
    # From random init, batch-hard triplet on LayerNorm heads collapses every embedding to one point within ~20 such
    # steps (off-diagonal cosine -> 1, loss stuck at the margin); the BatchNorm heads must keep the batch apart.
    model = make_model()
    batch = collator(fixture_rows[:8])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = model(**batch)
        losses.append(out.loss_components["triplet"].item())
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    off_diagonal = ~torch.eye(8, dtype=torch.bool)
    assert (out.mol_embeds @ out.mol_embeds.T)[off_diagonal].mean() < 0.5, "molecule embeddings collapsed"
    assert (out.text_embeds @ out.text_embeds.T)[off_diagonal].mean() < 0.5, "text embeddings collapsed"
    assert sum(losses[-5:]) < sum(losses[:5]), losses


def test_trains_under_transformers_trainer_in_one_optimizer_step(make_model, collator, fixture_rows, tmp_path):
    model = make_model()
    before = {n: p.detach().clone() for n, p in trainable(model).items()}
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        max_steps=2,
        learning_rate=1e-3,
        report_to="none",
        use_cpu=True,
        remove_unused_columns=False,
        save_strategy="no",
        logging_strategy="no",
    )
    Trainer(model=model, args=args, data_collator=collator, train_dataset=fixture_rows[:16]).train()
    unchanged = [n for n, p in trainable(model).items() if torch.equal(before[n], p.detach())]
    # Word embeddings of tokens absent from 16 descriptions legitimately keep their values: compare whole tensors.
    assert unchanged == [], f"parameters not updated: {unchanged}"


def test_gradient_checkpointing(make_model, batch):
    model = make_model()
    model.gradient_checkpointing_enable()
    assert model.text_encoder.is_gradient_checkpointing
    model(**batch).loss.backward()
    assert model.text_encoder.embeddings.word_embeddings.weight.grad is not None


# ------------------------------------------------------------------------------------------ HF integration
def test_param_groups(make_model):
    model = make_model()
    groups = model.param_groups()
    assert set(groups) == {"text_encoder", "discriminator", "other"}
    names = [n for group in groups.values() for n in group]
    assert sorted(names) == sorted(trainable(model))
    assert all(n.startswith("text_encoder.") for n in groups["text_encoder"])
    assert all(n.startswith("discriminator.") for n in groups["discriminator"])
    assert any(n.startswith("molecule_encoder.") for n in groups["other"])
    assert model.config.text_encoder_learning_rate == 3e-5 and model.config.discriminator_learning_rate == 1e-4
    mean_pooled = make_model(text_pooling="mean")
    assert mean_pooled.text_encoder.pooler is None
    assert not any("pooler" in n for n in mean_pooled.param_groups()["text_encoder"])


def test_init_weights(make_model):
    model = make_model()
    conv_key = model.molecule_encoder.layers[0].attention.lin_key  # a PyG Linear, not an nn.Linear
    bound = (6 / (conv_key.in_channels + conv_key.out_channels)) ** 0.5
    assert conv_key.weight.abs().max() <= bound and conv_key.weight.std() > bound / 3
    assert torch.equal(conv_key.bias, torch.zeros_like(conv_key.bias))
    norm = model.molecule_encoder.projection[-1].module  # PyG BatchNorm wraps an nn.BatchNorm1d
    assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and torch.equal(norm.running_var, torch.ones(16))
    again = make_model()
    pairs = zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_pretrained_text_encoder_loaded_at_construction_not_at_from_pretrained(tiny_bert_config, tmp_path):
    torch.manual_seed(1)
    bert = BertModel(tiny_bert_config)
    with torch.no_grad():
        bert.pooler.dense.weight.fill_(0.125)
    bert.save_pretrained(tmp_path / "bert")
    config = tiny_config(None, text_encoder_name_or_path=str(tmp_path / "bert"))
    model = AmanModel(config)
    assert model.text_encoder.training
    for name, value in bert.state_dict().items():
        assert torch.equal(model.text_encoder.state_dict()[name], value), name
    model.save_pretrained(tmp_path / "aman")
    shutil.rmtree(tmp_path / "bert")  # the checkpoint must not need it any more
    loaded = AutoModel.from_pretrained(tmp_path / "aman")
    assert torch.equal(loaded.text_encoder.pooler.dense.weight, bert.pooler.dense.weight)


def test_from_pretrained_never_reads_the_named_encoder_even_off_the_meta_device(
    tiny_bert_config, tmp_path, monkeypatch
):
    """DeepSpeed ZeRO-3 loading builds the model under ``zero.Init``, not on the meta device: still no encoder read."""
    BertModel(tiny_bert_config).save_pretrained(tmp_path / "bert")
    model = AmanModel(tiny_config(None, text_encoder_name_or_path=str(tmp_path / "bert")))
    model.save_pretrained(tmp_path / "aman")
    shutil.rmtree(tmp_path / "bert")
    original = AmanModel.get_init_context.__func__

    def without_meta(cls, *args, **kwargs):
        return [c for c in original(cls, *args, **kwargs) if not isinstance(c, torch.device)]

    monkeypatch.setattr(AmanModel, "get_init_context", classmethod(without_meta))
    loaded = AmanModel.from_pretrained(tmp_path / "aman")
    assert torch.equal(loaded.text_encoder.pooler.dense.weight, model.text_encoder.pooler.dense.weight)
    with pytest.raises(OSError):  # building (not loading) does read it, and it is gone
        AmanModel(loaded.config)


def test_from_pretrained_with_output_loading_info(make_model, tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path)
    loaded, info = AmanModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is AmanModel
    assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")), info
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    auto_loaded, _ = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(auto_loaded) is AmanModel


def config_fields(config: AmanConfig) -> dict:
    """The config as a dict, without where it was loaded from and the dtype ``from_pretrained`` records."""
    fields = {k: v for k, v in config.to_dict().items() if k not in ("_name_or_path", "dtype")}
    fields["text_config"] = {k: v for k, v in fields["text_config"].items() if k not in ("_name_or_path", "dtype")}
    return fields


def test_save_pretrained_and_auto_model_round_trip(make_model, batch, tmp_path):
    model = make_model(adversarial_mode="wgan_gp", text_pooling="mean").eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is AmanModel
    assert config_fields(loaded.config) == config_fields(model.config)
    assert model.state_dict().keys() == loaded.state_dict().keys()
    with torch.no_grad():
        a, b = model(**batch), loaded(**batch)
    torch.testing.assert_close(a.text_embeds, b.text_embeds, rtol=0, atol=0)
    torch.testing.assert_close(a.mol_embeds, b.mol_embeds, rtol=0, atol=0)
    torch.testing.assert_close(a.per_sample_loss, b.per_sample_loss, rtol=0, atol=0)
    torch.testing.assert_close(a.loss_components["critic"], b.loss_components["critic"], rtol=0, atol=0)


def test_curriculum_trainer_optimizer_groups(make_model, tmp_path, optimizer_settings):
    model = make_model(adversarial_mode="wgan_gp")
    expected = {"text_encoder.": 3e-5, "discriminator.": 1e-4}  # the config's rates (CMTMR's)
    for args, text_rate in (({}, 3e-5), ({"text_encoder_learning_rate": 2e-4}, 2e-4)):
        settings = optimizer_settings(model, tmp_path, **args)
        for name, (lr, _) in settings.items():
            prefix = next((p for p in expected if name.startswith(p)), None)
            want = 1e-3 if prefix is None else text_rate if prefix == "text_encoder." else expected[prefix]
            assert lr == want, name
    assert settings["discriminator.net.0.weight"] == (1e-4, 0.01) and settings["discriminator.net.0.bias"][1] == 0
    assert settings["text_projection.1.module.weight"] == (1e-3, 0.0)  # the BatchNorm head
