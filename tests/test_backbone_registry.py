"""The backbone contract (a Protocol), the one registry of backbones, annotation-checked configs, and which molecule
features each configuration reads."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import make_tiny_bert_config
from datasets import Dataset
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, AutoModel, BertConfig

from class_hf.data.features import MoleculeFeatures, collator_for_model
from class_hf.data.graphs import FINGERPRINT_COLUMNS, GRAPH_COLUMNS, MOL2VEC_COLUMN
from class_hf.models import AmanConfig, DualEncoderConfig, OrmaConfig, RetrievalOutput
from class_hf.models.base import RetrievalBackbone, RetrievalPreTrainedModel
from class_hf.models.registry import BACKBONES, DEFAULT_BACKBONE, backbone_for_model_type, get_backbone

TEXT = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
TINY = {
    "dual_encoder": {"gnn_hidden_size": 16, "gnn_num_layers": 1, "projection_dim": 8},
    "orma": {"text_encoder_name_or_path": None, "emb_dim": 16, "num_gnn_layers": 1, "ot_iterations": 3},
    "aman": {
        "text_encoder_name_or_path": None,
        "graph_hidden_size": 16,
        "graph_num_heads": 2,
        "graph_ffn_size": 16,
        "graph_num_layers": 1,
        "projection_dim": 8,
        "discriminator_hidden_sizes": [8],
    },
}


# ------------------------------------------------------------------------------------------------------ registry
def test_the_registry_lists_every_shipped_backbone_with_its_classes():
    assert list(BACKBONES) == ["dual_encoder", "orma", "aman"] and DEFAULT_BACKBONE in BACKBONES
    for name, spec in BACKBONES.items():
        assert spec.name == name and spec.config_class.model_type == spec.model_type
        assert spec.model_class.config_class is spec.config_class
        assert AutoConfig.for_model(spec.model_type).__class__ is spec.config_class  # registered with AutoConfig
        assert backbone_for_model_type(spec.model_type) is spec and spec.citation.startswith("@")
    assert get_backbone("orma").default_text_encoder == OrmaConfig().text_encoder_name_or_path
    assert get_backbone("dual_encoder").default_text_encoder is None
    assert backbone_for_model_type("bert") is None
    with pytest.raises(ValueError, match=r"Unknown backbone 'clip'; choose one of \['aman', 'dual_encoder', 'orma'\]"):
        get_backbone("clip")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_follows_the_contract_and_round_trips_through_automodel(name, tmp_path):
    torch.manual_seed(0)
    model = get_backbone(name).build(text_config=TEXT, **TINY[name])
    assert isinstance(model, RetrievalBackbone) and isinstance(model, RetrievalPreTrainedModel)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is get_backbone(name).model_class
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_models_load_with_automodel_after_import_class_hf(tmp_path):
    """A fresh process: ``import class_hf`` is all it takes for ``AutoModel`` to know the three backbones."""
    for name in BACKBONES:
        torch.manual_seed(0)
        get_backbone(name).build(text_config=TEXT, **TINY[name]).save_pretrained(tmp_path / name)
    script = (
        "import sys, class_hf\n"
        "from transformers import AutoModel\n"
        "print(' '.join(type(AutoModel.from_pretrained(p)).__name__ for p in sys.argv[1:]))\n"
    )
    paths = [str(tmp_path / name) for name in BACKBONES]
    out = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == [spec.model_class_name for spec in BACKBONES.values()]


@pytest.mark.parametrize("first", ["config_module", "modeling_module"])
def test_importing_one_backbone_module_first_registers_every_backbone(first):
    """Importing a configuration module imports ``AutoConfig``, which fires the registration hook before that
    module's class exists; the module registers itself when it ends, and nothing is logged."""
    for spec in BACKBONES.values():
        script = (
            f"import {getattr(spec, first)}\n"
            "from transformers import AutoConfig\n"
            "from transformers.models.auto.modeling_auto import MODEL_MAPPING\n"
            f"types = {[s.model_type for s in BACKBONES.values()]!r}\n"
            "print(' '.join(MODEL_MAPPING[type(AutoConfig.for_model(t))].__name__ for t in types))\n"
        )
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.split() == [s.model_class_name for s in BACKBONES.values()]
        assert "Could not register" not in out.stderr, out.stderr


def test_a_plain_module_with_the_four_methods_follows_the_contract():
    class Minimal(torch.nn.Module):
        def forward(self, input_ids, attention_mask, graph, **kwargs):
            text, mol = self.encode_text(input_ids, attention_mask), self.encode_molecule(graph)
            return RetrievalOutput(text_embeds=text, mol_embeds=mol)

        def encode_text(self, input_ids, attention_mask):
            return (input_ids * attention_mask).float()

        def encode_molecule(self, graph):
            return graph

        def score(self, text_embeds, mol_embeds):
            return text_embeds @ mol_embeds.T

    class NoScore(torch.nn.Module):
        def encode_text(self, input_ids, attention_mask):
            return input_ids * attention_mask

    assert isinstance(Minimal(), RetrievalBackbone)
    assert not isinstance(NoScore(), RetrievalBackbone)
    ids = torch.ones(2, 3)
    assert Minimal()(ids, ids, ids).text_embeds.shape == (2, 3)


# ------------------------------------------------------------------------------------------------------ forward
class _Tiny(RetrievalPreTrainedModel):
    """A backbone written as the base class asks: two encoders and the loss hook, nothing else."""

    config_class = DualEncoderConfig
    base_model_prefix = "tiny"

    def __init__(self, config):
        super().__init__(config)
        self.text = torch.nn.Embedding(64, 4)
        self.post_init()

    def encode_text(self, input_ids, attention_mask):
        return (self.text(input_ids) * attention_mask.unsqueeze(-1)).mean(1)

    def encode_molecule(self, graph):
        return torch.ones(int(graph.num_graphs), 4)

    def pair_loss(self, text, mol, intensity):
        per_sample = (text - mol).pow(2).sum(-1) * (intensity or 1.0)
        return RetrievalOutput(loss=per_sample.mean(), per_sample_loss=per_sample, text_embeds=text, mol_embeds=mol)


class _Graphs:
    def __init__(self, num_graphs: int) -> None:
        self.num_graphs = num_graphs


def test_the_shared_forward_checks_then_encodes_then_calls_the_loss_hook():
    model = _Tiny(DualEncoderConfig(text_config=TEXT))
    ids, mask = torch.ones(3, 5, dtype=torch.long), torch.ones(3, 5, dtype=torch.long)
    out = model(ids, mask, _Graphs(3), intensity=2.0, sample_idx=torch.arange(3))
    assert out.per_sample_loss.shape == (3,) and torch.allclose(out.loss, out.per_sample_loss.mean())
    only = model(ids, mask, _Graphs(3), return_loss=False)
    assert only.loss is None and only.text_embeds.shape == (3, 4)
    with pytest.raises(ValueError, match="holds 3 texts but `graph` 2 molecules"):
        model(ids, mask, _Graphs(2))
    with pytest.raises(ValueError, match="`intensity` multiplies the logits and must be positive, got -1"):
        model(ids, mask, _Graphs(3), intensity=-1)
    with pytest.raises(TypeError, match=r"unexpected arguments \['labels'\]"):
        model(ids, mask, _Graphs(3), labels=torch.zeros(3))
    with pytest.raises(NotImplementedError, match="pair_loss"):
        RetrievalPreTrainedModel.pair_loss(model, None, None, None)


# ------------------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize(
    ("config_class", "overrides", "match"),
    [
        # Checked by the annotations (@strict): choices, types.
        (DualEncoderConfig, {"gnn_type": "gcn"}, r"Field 'gnn_type' expected one of \('gin', 'gine'\), got gcn"),
        (DualEncoderConfig, {"use_fingerprint": "yes"}, r"Field 'use_fingerprint' expected bool, got str"),
        (DualEncoderConfig, {"projection_dim": 2.5}, r"Field 'projection_dim' expected int, got float"),
        (DualEncoderConfig, {"gnn_num_layers": True}, r"Field 'gnn_num_layers' expected int, got bool"),
        (OrmaConfig, {"ot_method": "emd"}, r"Field 'ot_method' expected one of \('ipot', 'sinkhorn'\), got emd"),
        (OrmaConfig, {"atom_features": "ecfp"}, r"Field 'atom_features' expected one of \('rdkit', 'mol2vec'\)"),
        (OrmaConfig, {"emb_dim": "300"}, r"Field 'emb_dim' expected int, got str"),
        (AmanConfig, {"adversarial_mode": "critic"}, r"Field 'adversarial_mode' expected one of"),
        (AmanConfig, {"discriminator_hidden_sizes": [8, 2.5]}, r"discriminator_hidden_sizes"),
        # Checked by the validators: ranges and rules across fields.
        (DualEncoderConfig, {"gnn_dropout": 1.0}, r"`gnn_dropout` must be in \[0, 1\), got 1.0"),
        (DualEncoderConfig, {"projection_dim": 0}, r"`projection_dim` must be a positive integer, got 0"),
        (DualEncoderConfig, {"freeze_text_encoder": True, "train_text_layers": 1}, r"both set"),
        (OrmaConfig, {"mol2vec_dim": 0}, r"`mol2vec_dim` must be >= 1, got 0"),
        (OrmaConfig, {"global_weight": -0.1}, r"must be >= 0 with a positive sum"),
        (AmanConfig, {"graph_hidden_size": 30, "graph_num_heads": 4}, r"must be divisible by `graph_num_heads`"),
        (AmanConfig, {"discriminator_hidden_sizes": []}, r"non-empty list of positive integers"),
    ],
)
def test_configs_reject_bad_values_with_a_message_naming_the_field(config_class, overrides, match):
    with pytest.raises(StrictDataclassError, match=match):
        config_class(text_config=TEXT, **overrides)


def test_configs_keep_accepting_whole_numbers_for_float_fields(tmp_path):
    config = DualEncoderConfig(text_config=TEXT, gnn_dropout=0, logit_scale_init=20)
    config.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).logit_scale_init == 20
    assert OrmaConfig(ot_beta=1, text_encoder_learning_rate=None).ot_beta == 1
    assert AmanConfig(discriminator_hidden_sizes=(16, 8)).discriminator_hidden_sizes == [16, 8]


# ------------------------------------------------------------------------------------------------------ features
def test_which_molecule_features_each_configuration_reads(tmp_path):
    plain = MoleculeFeatures.for_model(DualEncoderConfig(text_config=TEXT))
    assert plain == MoleculeFeatures() and plain.columns == list(GRAPH_COLUMNS)
    config = DualEncoderConfig(text_config=TEXT, use_fingerprint=True, fingerprint_dim=4096)
    with_fp = MoleculeFeatures.for_model(config)
    assert with_fp.fingerprints and with_fp.fingerprint_dim == 4096
    assert with_fp.columns == [*GRAPH_COLUMNS, *FINGERPRINT_COLUMNS]
    assert MoleculeFeatures.for_model(AmanConfig()) == MoleculeFeatures()
    assert MoleculeFeatures.for_model(None, fingerprints=True).fingerprints
    table = tmp_path / "mol2vec.npz"
    np.savez(table, tokens=np.array(["UNK"]), vectors=np.zeros((1, 2), dtype=np.float32))
    orma = MoleculeFeatures.for_model(OrmaConfig(atom_features="mol2vec", mol2vec_embeddings_path=str(table)))
    assert orma.mol2vec and orma.columns[-1] == MOL2VEC_COLUMN
    with pytest.raises(ValueError, match="has no `mol2vec_embeddings_path`"):
        MoleculeFeatures.for_model(OrmaConfig(atom_features="mol2vec"))


def test_featurize_adds_what_is_missing_and_leaves_other_data_alone(tiny_tokenizer):
    rows = Dataset.from_dict({"cid": ["1", "2"], "smiles": ["CCO", "c1ccccc1O"], "description": ["a", "b"]})
    graphs = MoleculeFeatures().featurize(rows, desc=None)
    assert MoleculeFeatures().featurize(graphs) is graphs  # nothing missing: the same dataset
    with_fp = MoleculeFeatures(fingerprints=True).featurize(graphs, desc=None)
    assert set(FINGERPRINT_COLUMNS) <= set(with_fp.column_names)
    assert with_fp.column_names.count("x") == 1  # recomputed, not duplicated
    custom = Dataset.from_dict({"input_ids": [[1, 2]], "atoms": [[3]]})  # a custom collator's own columns
    assert MoleculeFeatures(fingerprints=True).complete(custom) is custom
    config = DualEncoderConfig(text_config=make_tiny_bert_config(len(tiny_tokenizer)), use_fingerprint=True)
    collator = collator_for_model(tiny_tokenizer, config, max_length=1000)
    assert collator.fingerprint_dim == 2048 and collator.max_length == 64  # the tokenizer's limit
    batch = collator([with_fp[0], with_fp[1]])
    assert batch["graph"].fp.shape == (2, 2048)
