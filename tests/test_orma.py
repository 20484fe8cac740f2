"""Tests of the ORMA backbone (class_hf.models.modeling_orma) and the batched OT solvers (class_hf.models.sinkhorn)."""

from __future__ import annotations

import csv
import logging
import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, BertConfig, BertModel

from class_hf.data.collator import MoleculeTextCollator
from class_hf.data.graphs import rows_to_batch, smiles_to_graph
from class_hf.data.mol2vec import Mol2VecIndexer, mol2vec_atom_identifiers, mol2vec_atom_indices
from class_hf.models.modeling_orma import OrmaConfig, OrmaModel, sparc_grouping
from class_hf.models.sinkhorn import ipot, sinkhorn, transport_plan, uniform_marginals

SMILES = ["CCO", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "C1CC2CCC1C2", "CCN(CC)CC", "O=C(O)c1ccncc1"]
TEXTS = [
    "ethanol is a primary alcohol",
    "benzene is an aromatic hydrocarbon",
    "aspirin is a benzoic acid and an acetate ester",
    "a bridged bicyclic alkane",
    "triethylamine is a tertiary amine",
    "isonicotinic acid is a pyridinemonocarboxylic acid",
]


# ----------------------------------------------------------------------------------------------------- helpers
def _batch(tokenizer, smiles=SMILES, texts=TEXTS) -> dict:
    """A batch from the real featurizer and collator."""
    rows = [{"description": text, **smiles_to_graph(s)} for s, text in zip(smiles, texts, strict=True)]
    return MoleculeTextCollator(tokenizer, max_length=64)(rows)  # the tiny BERT has 128 positions


def _model(tiny_bert_config, **kwargs) -> OrmaModel:
    torch.manual_seed(0)
    return OrmaModel(OrmaConfig(text_config=tiny_bert_config, text_encoder_name_or_path=None, **kwargs))


def _orma_ipot_reference(cost: torch.Tensor, beta: float = 0.5, iters: int = 50) -> torch.Tensor:
    """ORMA's linear-space loop (``get_phrase_rep``), uniform marginals over all rows and columns."""
    batch, n, m = cost.shape
    sigma = torch.full((batch, m, 1), 1.0 / m, dtype=cost.dtype)
    plan = torch.ones_like(cost)
    kernel = torch.exp(-cost / beta)
    for _ in range(iters):
        q = kernel * plan
        delta = 1.0 / (n * (q @ sigma))
        sigma = 1.0 / (m * (q.transpose(1, 2) @ delta))
        plan = delta * q * sigma.transpose(1, 2)
    return plan


# ----------------------------------------------------------------------------------------------------- OT
@pytest.mark.parametrize(("method", "row_rtol"), [("ipot", 1e-2), ("sinkhorn", 1e-5)])
def test_transport_plan_meets_marginals_and_ignores_padding(method, row_rtol):
    # the last half-step fits the columns exactly; the rows converge (IPOT more slowly: it approaches exact OT)
    torch.manual_seed(0)
    x = F.normalize(torch.randn(4, 20, 8), dim=-1)
    y = F.normalize(torch.randn(4, 7, 8), dim=-1)
    cost = 1 - x @ y.transpose(1, 2)
    x_mask = torch.ones(4, 20, dtype=torch.bool)
    y_mask = torch.ones(4, 7, dtype=torch.bool)
    x_mask[1, 12:] = False
    y_mask[2, 3:] = False
    y_mask[3] = False  # a problem without any column
    a, b = uniform_marginals(x_mask, y_mask)
    plan = transport_plan(cost, a, b, method=method, reg=0.5, num_iters=50)
    assert plan.shape == (4, 20, 7) and torch.isfinite(plan).all() and (plan >= 0).all()
    torch.testing.assert_close(plan[:3].sum(-1), a[:3], atol=0.0, rtol=row_rtol, equal_nan=False)
    torch.testing.assert_close(plan[:3].sum(-2), b[:3], atol=1e-6, rtol=1e-5)
    assert plan[1, 12:].abs().max() == 0 and plan[2, :, 3:].abs().max() == 0 and plan[3].abs().max() == 0
    # the padded rows and columns do not change the plan of the real ones
    alone = transport_plan(cost[1:2, :12], a[1:2, :12] * 1, b[1:2], method=method, reg=0.5, num_iters=50)
    torch.testing.assert_close(plan[1:2, :12], alone, atol=1e-7, rtol=1e-5)


def test_ipot_reproduces_ormas_loop():
    torch.manual_seed(1)
    cost = (1 - F.normalize(torch.randn(3, 25, 6), dim=-1) @ F.normalize(torch.randn(3, 6, 6), dim=-1)).double()
    cost = cost[:, :, :6]
    a, b = uniform_marginals(torch.ones(3, 25, dtype=torch.bool), torch.ones(3, 6, dtype=torch.bool))
    for domain in ("auto", "log", "linear"):
        torch.testing.assert_close(ipot(cost, a, b, beta=0.5, num_iters=50, domain=domain), _orma_ipot_reference(cost))
    # entropic Sinkhorn is a different (blurrier) plan: the two solvers are not interchangeable
    assert (sinkhorn(cost, a, b, reg=0.5) - ipot(cost, a, b, beta=0.5)).abs().max() > 1e-3


def _padded_problem(seed: int = 3):
    torch.manual_seed(seed)
    x = F.normalize(torch.randn(5, 30, 8), dim=-1)
    y = F.normalize(torch.randn(5, 9, 8), dim=-1)
    x_mask = torch.rand(5, 30) < 0.7
    y_mask = torch.rand(5, 9) < 0.6
    x_mask[:, 0] = y_mask[:, 0] = True
    y_mask[4] = False  # a problem without any column
    return 1 - x @ y.transpose(1, 2), *uniform_marginals(x_mask, y_mask)


def test_ipot_linear_loop_matches_the_log_domain_where_it_cannot_underflow():
    cost, a, b = _padded_problem()
    log_plan = ipot(cost, a, b, beta=0.5, num_iters=10, domain="log")
    linear_plan = ipot(cost, a, b, beta=0.5, num_iters=10, domain="linear")
    torch.testing.assert_close(linear_plan, log_plan, atol=1e-7, rtol=1e-4)
    assert linear_plan[4].abs().max() == 0 and (linear_plan[a == 0].abs().max() == 0)
    # the same argmin assignment as ORMA's (the quirk the model reproduces)
    masked = [p.masked_fill(b.unsqueeze(1) == 0, float("inf")).argmin(-1)[a > 0] for p in (log_plan, linear_plan)]
    assert torch.equal(*masked)
    # auto: 10 steps over a cost span <= 2 at beta 0.5 stay in float32's range -> the linear loop
    assert torch.equal(ipot(cost, a, b, beta=0.5, num_iters=10), linear_plan)
    plan, log = ipot(cost, a, b, beta=0.5, num_iters=10, return_log=True)
    torch.testing.assert_close(log.exp(), plan)
    # 50 steps could underflow in float32 -> the log domain, and asking for the linear loop is refused
    assert torch.equal(ipot(cost, a, b, beta=0.5, num_iters=50), ipot(cost, a, b, 0.5, 50, domain="log"))
    with pytest.raises(ValueError, match="underflow"):
        ipot(cost, a, b, beta=0.5, num_iters=50, domain="linear")
    with pytest.raises(ValueError, match="domain"):
        ipot(cost, a, b, domain="exp")
    # float64 has the range for ORMA's 50 steps: linear there, and still ORMA's plan
    cost64 = cost.double()
    torch.testing.assert_close(
        ipot(cost64, a, b, num_iters=50, domain="linear"), ipot(cost64, a, b, num_iters=50, domain="log")
    )


@pytest.mark.parametrize(
    "solver",
    [partial(ipot, domain="log"), partial(ipot, domain="linear"), sinkhorn],
    ids=["ipot-log", "ipot-linear", "sinkhorn"],
)
def test_transport_plan_is_differentiable(solver):
    torch.manual_seed(2)
    cost = torch.rand(2, 5, 4, dtype=torch.float64, requires_grad=True)
    a, b = uniform_marginals(torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]).bool(), torch.ones(2, 4).bool())

    def transport_cost(c):
        return (solver(c, a.double(), b.double(), 0.5, 10) * c).sum()

    assert torch.autograd.gradcheck(transport_cost, (cost,))
    transport_cost(cost).backward()
    assert cost.grad.abs().sum() > 0 and cost.grad[0, 4].abs().max() == 0  # padded row: no gradient


def test_transport_plan_rejects_bad_inputs():
    a, b = uniform_marginals(torch.ones(1, 3).bool(), torch.ones(1, 2).bool())
    with pytest.raises(ValueError, match="marginals"):
        ipot(torch.rand(1, 3, 3), a, b)
    with pytest.raises(ValueError, match="method"):
        transport_plan(torch.rand(1, 3, 2), a, b, method="emd")


# ----------------------------------------------------------------------------------------------------- config
def test_config_defaults_follow_orma_and_validate():
    config = OrmaConfig()
    assert config.text_encoder_name_or_path == "allenai/scibert_scivocab_uncased"
    assert (config.emb_dim, config.num_gnn_layers, config.dropout) == (300, 3, 0.1)
    assert (config.max_atoms, config.max_motifs, config.temperature_init) == (580, 140, 0.07)
    assert (config.global_weight, config.mid_weight, config.local_weight) == (0.3, 0.2, 0.5)
    assert (config.ot_method, config.ot_beta, config.ot_iterations, config.motif_assignment) == (
        "ipot",
        0.5,
        50,
        "argmin",
    )
    assert (config.multi_token_layer, config.token_layer, config.score_mode) == (-2, -3, "global")
    assert config.global_similarity == "dot"  # ORMA's exp(temp)**2-scaled dot product
    with pytest.raises(Exception, match="score_mode"):
        OrmaConfig(score_mode="clever")
    with pytest.raises(Exception, match="dropout"):
        OrmaConfig(dropout=1.5)
    assert config.grain_group_size == 16 and OrmaConfig(grain_group_size=None).grain_group_size is None
    with pytest.raises(Exception, match="grain_group_size"):
        OrmaConfig(grain_group_size=0)


# ----------------------------------------------------------------------------------------------------- model
def test_forward_backward_per_sample_loss(tiny_bert_config, tiny_tokenizer):
    model = _model(tiny_bert_config)
    batch = _batch(tiny_tokenizer)
    out = model(**batch)
    assert out.per_sample_loss.shape == (len(SMILES),)
    assert out.text_embeds.shape == out.mol_embeds.shape == (len(SMILES), 300)
    torch.testing.assert_close(out.loss, out.per_sample_loss.mean())
    parts = out.loss_components
    assert set(parts) == {"loss_global", "loss_mid", "loss_local"}
    torch.testing.assert_close(
        out.loss.detach(), 0.3 * parts["loss_global"] + 0.2 * parts["loss_mid"] + 0.5 * parts["loss_local"]
    )
    out.loss.backward()
    missing = [
        name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert missing == []


def test_fixture_batch(tiny_bert_config, tiny_tokenizer, chebi20_sample_dir):
    with open(chebi20_sample_dir / "orma_sample.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:16]
    model = _model(tiny_bert_config)
    batch = _batch(tiny_tokenizer, [r["CanonicalSMILES"] for r in rows], [r["Description"] for r in rows])
    out = model(**batch)
    assert out.per_sample_loss.shape == (16,) and torch.isfinite(out.per_sample_loss).all()
    out.loss.backward()
    assert model.gcn.convs[0].lin.weight.grad.abs().sum() > 0 and model.temp.grad is not None


def test_fingerprint_branch_changes_only_the_global_molecule_embedding(tiny_bert_config, tiny_tokenizer):
    from class_hf.data.features import MoleculeFeatures

    batch = _batch(tiny_tokenizer)
    graph = batch["graph"]
    graph.fp = torch.rand(len(SMILES), 2048, generator=torch.Generator().manual_seed(0))
    changed = graph.clone()
    changed.fp = torch.rand_like(graph.fp)
    off = _model(tiny_bert_config).eval()
    assert off.fingerprint_projection is None and not MoleculeFeatures.for_model(off).fingerprints
    assert torch.equal(off.encode_molecule(graph), off.encode_molecule(changed))

    on = _model(tiny_bert_config, use_fingerprint=True, fingerprint_dim=2048).eval()
    assert MoleculeFeatures.for_model(on).fingerprints
    with torch.no_grad():
        a, b = on.molecule_features(graph), on.molecule_features(changed)
    assert not torch.allclose(a.molecule, b.molecule)
    torch.testing.assert_close(a.atom, b.atom)
    torch.testing.assert_close(a.motif, b.motif)
    out = on.train()(**batch)
    out.loss.backward()
    assert on.fingerprint_projection.weight.grad.abs().sum() > 0
    del graph.fp
    with pytest.raises(ValueError, match="fingerprints=True"):
        on.encode_molecule(graph)
    with pytest.raises(Exception, match="fingerprint_dim"):  # huggingface_hub wraps the validator's ValueError
        OrmaConfig(text_encoder_name_or_path=None, fingerprint_dim=0)


def test_sentence_from_several_layers_standardised_same_from_ids_and_cache(tiny_bert_config, tiny_tokenizer):
    batch = _batch(tiny_tokenizer)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    model = _model(tiny_bert_config, pooling="mean", sentence_layers=3, text_input_norm=True)
    hidden = tiny_bert_config.hidden_size
    assert model.sent_proj.in_features == 3 * hidden and model.sentence_norm is not None
    model.train()(**batch)  # one training step's forward moves the running statistics away from (0, 1)
    model.eval()
    with torch.no_grad():
        from_ids = model.encode_text(ids, mask)
        cached = model.text_features(ids, mask)
        from_cache = model.encode_text(attention_mask=mask, text_features=cached)
        grains = model.text_grains(attention_mask=mask, text_features=cached)
        states = model.text_encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        weights = mask.unsqueeze(-1).float()
        means = [(states[i] * weights).sum(1) / weights.sum(1) for i in (-1, -2, -3)]
        norm = model.sentence_norm.module
        pooled = (torch.cat(means, -1) - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
        expected = model.sent_norm(model.sent_proj(pooled))
    assert not torch.allclose(norm.running_mean, torch.zeros_like(norm.running_mean))
    torch.testing.assert_close(from_ids, expected)
    torch.testing.assert_close(from_cache, expected)
    torch.testing.assert_close(grains.sentence, expected)
    one = _model(tiny_bert_config, pooling="mean").eval()  # ORMA's default: the last layer only
    assert one.sent_proj.in_features == hidden and one.sentence_norm is None
    with pytest.raises(Exception, match="sentence_layers"):
        OrmaConfig(text_encoder_name_or_path=None, sentence_layers=2)  # with ORMA's pooler
    with pytest.raises(Exception, match="sentence_layers"):
        OrmaConfig(text_encoder_name_or_path=None, pooling="mean", sentence_layers=4)


def test_per_sample_loss_is_the_weighted_symmetric_infonce(tiny_bert_config, tiny_tokenizer):
    model = _model(tiny_bert_config, global_weight=0.1, mid_weight=0.6, local_weight=0.3).eval()
    batch = _batch(tiny_tokenizer)
    out = model(**batch)
    text = model.text_grains(batch["input_ids"], batch["attention_mask"])
    grains = model.grain_embeddings(text, model.molecule_features(batch["graph"]))
    labels = torch.arange(len(SMILES))
    expected = 0.0
    for name, weight in (("global", 0.1), ("mid", 0.6), ("local", 0.3)):
        logits = grains[name][0] @ grains[name][1].T
        if name == "global":
            logits = logits * math.exp(2 * 0.07)
        ce = F.cross_entropy(logits, labels, reduction="none") + F.cross_entropy(logits.T, labels, reduction="none")
        expected = expected + weight * ce / 2
    torch.testing.assert_close(out.per_sample_loss, expected, rtol=1e-4, atol=1e-5)
    doubled = model(**batch, intensity=2.0)
    assert not torch.allclose(doubled.per_sample_loss, out.per_sample_loss)
    with pytest.raises(ValueError, match="intensity"):
        model(**batch, intensity=0.0)
    with pytest.raises(TypeError, match="unexpected"):
        model(**batch, labels=labels)


def test_cosine_global_grain_uses_normalised_embeddings_and_a_learnable_scale(
    tiny_bert_config, tiny_tokenizer, tmp_path
):
    grains = {"global_weight": 1.0, "mid_weight": 0.0, "local_weight": 0.0}
    model = _model(tiny_bert_config, global_similarity="cosine", logit_scale_init=20.0, **grains).eval()
    assert model.temp is None and "logit_scale" in dict(model.named_parameters())
    batch = _batch(tiny_tokenizer)
    out = model(**batch)
    text, mol = model.encode_text(batch["input_ids"], batch["attention_mask"]), model.encode_molecule(batch["graph"])
    logits = 20.0 * F.normalize(text, dim=-1) @ F.normalize(mol, dim=-1).T
    labels = torch.arange(len(SMILES))
    expected = F.cross_entropy(logits, labels, reduction="none") + F.cross_entropy(logits.T, labels, reduction="none")
    torch.testing.assert_close(out.per_sample_loss, expected / 2, rtol=1e-4, atol=1e-5)
    # the loss scales the same cosine that retrieval ranks by
    torch.testing.assert_close(model.score(text, mol) * 20.0, logits, rtol=1e-4, atol=1e-5)
    out.loss.backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad.abs() > 0
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # exp(10) is clamped at 100
    assert float(model.grain_scales()["global"]) == pytest.approx(100.0)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert loaded.config.global_similarity == "cosine" and loaded.temp is None
    torch.testing.assert_close(loaded.logit_scale, model.logit_scale)
    with pytest.raises(Exception, match="logit_scale_init"):  # @strict wraps the ValueError
        OrmaConfig(text_config=tiny_bert_config, text_encoder_name_or_path=None, logit_scale_init=0.0)
    with pytest.raises(Exception, match="global_similarity"):
        OrmaConfig(global_similarity="euclidean")


def test_padding_does_not_change_the_loss(tiny_bert_config, tiny_tokenizer):
    model = _model(tiny_bert_config).eval()
    batch = _batch(tiny_tokenizer)
    padded = dict(batch)
    extra = 7
    padded["input_ids"] = F.pad(batch["input_ids"], (0, extra), value=tiny_tokenizer.pad_token_id)
    padded["attention_mask"] = F.pad(batch["attention_mask"], (0, extra), value=0)
    torch.testing.assert_close(model(**padded).per_sample_loss, model(**batch).per_sample_loss, rtol=1e-4, atol=1e-5)


def test_edge_case_molecules(tiny_bert_config, tiny_tokenizer, caplog):
    # single atom, no bonds (a salt), no BRICS bond, and one molecule larger than max_atoms / max_motifs
    smiles = ["C", "[Na+].[Cl-]", "c1ccccc1", "CCCCCCCCCCCCOc1ccc(NC(=O)CCC(=O)O)cc1"]
    assert smiles_to_graph("c1ccccc1")["num_motifs"] == 1 and smiles_to_graph("[Na+].[Cl-]")["edge_index"] == [[], []]
    model = _model(tiny_bert_config, max_atoms=8, max_motifs=2)
    batch = _batch(tiny_tokenizer, smiles, TEXTS[: len(smiles)])
    with caplog.at_level(logging.WARNING, logger="class_hf.models.modeling_orma"):
        out = model(**batch)
        model(**batch)
    assert torch.isfinite(out.per_sample_loss).all()
    out.loss.backward()
    assert torch.isfinite(model.atom_proj.weight.grad).all()
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("max_atoms=8" in w for w in warnings) == 1 and sum("max_motifs=2" in w for w in warnings) == 1
    mol = model.molecule_features(batch["graph"])
    assert mol.atom.shape[:2] == (4, 8) and mol.motif.shape[:2] == (4, 2)
    assert mol.atom_mask.sum(1).tolist() == [1, 2, 6, 8]


def test_graph_without_motifs_links_atoms_to_the_molecule(tiny_bert_config, tiny_tokenizer):
    # ORMA's own decomposition leaves e.g. benzene without motifs; such a graph (num_motifs == 0) must work too
    rows = [smiles_to_graph("CCO"), smiles_to_graph("c1ccccc1")]
    rows[1].update(num_motifs=0, atom2motif=[-1] * 6)  # atom2motif is ignored: the molecule has no motif
    batch = _batch(tiny_tokenizer, ["CCO", "c1ccccc1"], TEXTS[:2])
    batch["graph"] = rows_to_batch(rows)
    model = _model(tiny_bert_config)
    out = model(**batch)
    assert torch.isfinite(out.per_sample_loss).all()
    mol = model.molecule_features(batch["graph"])
    assert mol.motif_mask.tolist() == [[True], [False]]


def test_bad_graph_inputs_raise_clear_errors(tiny_bert_config, tiny_tokenizer):
    model = _model(tiny_bert_config)
    batch = _batch(tiny_tokenizer, SMILES[:2], TEXTS[:2])
    batch["graph"].atom2motif = torch.zeros_like(batch["graph"].atom2motif)  # not offset: molecule 1 -> motif 0
    with pytest.raises(ValueError, match="atom2motif` of molecule 1"):
        model(**batch)
    batch = _batch(tiny_tokenizer, SMILES[:2], TEXTS[:2])
    batch.update({k: v for k, v in _batch(tiny_tokenizer, SMILES[:3], TEXTS[:3]).items() if k != "graph"})
    with pytest.raises(ValueError, match="same batch size"):
        model(**batch)


def test_text_encoder_with_fewer_layers_falls_back(tiny_tokenizer, caplog):
    config = BertConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
    )
    model = _model(config)
    with caplog.at_level(logging.WARNING, logger="class_hf.models.modeling_orma"):
        out = model(**_batch(tiny_tokenizer))
    assert torch.isfinite(out.loss)
    assert any("token_layer=-3" in r.getMessage() for r in caplog.records)


def test_motif_assignment_argmin_vs_argmax(tiny_bert_config):
    model = _model(tiny_bert_config)
    motifs = torch.eye(4).unsqueeze(0) * 3.0  # four orthogonal motifs
    tokens = torch.eye(4)[[2, 0, 3, 1]].unsqueeze(0)  # token t is motif perm[t]
    text = type("T", (), {})()
    text.multi_token, text.mask = tokens, torch.ones(1, 4, dtype=torch.bool)
    mol = type("M", (), {})()
    mol.motif, mol.motif_mask = motifs, torch.ones(1, 4, dtype=torch.bool)
    model.config.motif_assignment = "argmax"
    phrases, mask = model._phrases(text, mol)
    torch.testing.assert_close(F.normalize(phrases[0], dim=-1), torch.eye(4))  # each motif gets its own token
    model.config.motif_assignment = "argmin"
    phrases, _ = model._phrases(text, mol)
    assert (F.normalize(phrases[0], dim=-1) * torch.eye(4)).sum() < 1e-6  # never its own token


def test_sparc_grouping_single_key_and_masks():
    queries = torch.randn(2, 3, 5)
    keys = torch.randn(2, 4, 5)
    key_mask = torch.tensor([[True, False, False, False], [True, True, True, False]])
    query_mask = torch.tensor([[True, True, False], [True, True, True]])
    text, mol = sparc_grouping(queries, keys, query_mask, key_mask)
    # one real key: every query groups exactly that key
    expected = F.layer_norm(2 * F.normalize(keys[0, 0], dim=-1), (5,))
    torch.testing.assert_close(mol[0], expected)
    torch.testing.assert_close(text[0], F.layer_norm(F.normalize(queries[0, :2], dim=-1).sum(0), (5,)))
    moved = keys.clone()
    moved[1, 3] = 100.0  # a padded key changes nothing
    torch.testing.assert_close(sparc_grouping(queries, moved, query_mask, key_mask)[1], mol)


def test_sparc_grouping_in_size_sorted_groups_equals_one_batch():
    torch.manual_seed(0)
    counts = torch.tensor([3, 40, 1, 7, 0, 12, 40, 2, 5, 9, 1])  # very different molecules, one without keys
    key_mask = torch.arange(40) < counts[:, None]  # left-aligned, as to_dense_batch puts atoms
    query_mask = torch.arange(6) < torch.tensor([6, 2, 4, 6, 1, 5, 3, 6, 6, 2, 4])[:, None]
    queries = torch.randn(11, 6, 8, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(11, 40, 8, dtype=torch.float64, requires_grad=True)
    whole = sparc_grouping(queries, keys, query_mask, key_mask)
    for group_size in (1, 3, 4, 11, 50):
        grouped = sparc_grouping(queries, keys, query_mask, key_mask, group_size=group_size)
        for ours, reference in zip(grouped, whole, strict=True):
            torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    # the gradients reach the same entries, in the original order of the pairs
    weights = torch.randn(11, 8, dtype=torch.float64)
    grad_whole = torch.autograd.grad((whole[1] * weights).sum() + whole[0].sum(), (queries, keys))
    grouped = sparc_grouping(queries, keys, query_mask, key_mask, group_size=4)
    grad_grouped = torch.autograd.grad((grouped[1] * weights).sum() + grouped[0].sum(), (queries, keys))
    for ours, reference in zip(grad_grouped, grad_whole, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    # keys that are not left-aligned cannot be cut per group: computed as one batch
    scattered = key_mask.flip(-1)
    torch.testing.assert_close(
        sparc_grouping(queries, keys, query_mask, scattered, group_size=4)[1],
        sparc_grouping(queries, keys, query_mask, scattered)[1],
        rtol=0,
        atol=0,
    )


def test_grouped_fine_grains_give_the_loss_of_one_batch(tiny_bert_config, tiny_tokenizer):
    smiles = ["CCO", "CCOC(=O)c1ccccc1", "[Na+].[Cl-]", "CC(=O)Nc1ccc(O)cc1", "O", "CCCCCC"]
    batch = _batch(tiny_tokenizer, smiles, [f"The molecule number {i} is a compound." for i in range(6)])
    losses = []
    for group_size in (None, 2):
        torch.manual_seed(0)
        model = _model(tiny_bert_config, grain_group_size=group_size).eval()
        losses.append(model(**batch, return_loss=True).per_sample_loss)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)


def test_scores_global_and_faithful(tiny_bert_config, tiny_tokenizer):
    model = _model(tiny_bert_config).eval()
    batch = _batch(tiny_tokenizer)
    text_embeds = model.encode_text(batch["input_ids"], batch["attention_mask"])
    mol_embeds = model.encode_molecule(batch["graph"])
    global_scores = model.score_pairs(batch)
    assert global_scores.shape == (6, 6)
    torch.testing.assert_close(global_scores, model.score(text_embeds, mol_embeds))
    model.config.score_mode = "faithful"
    faithful = model.score_pairs(batch)
    assert faithful.shape == (6, 6)
    # diagonal block = the weighted sum of the logits of the training loss
    text = model.text_grains(batch["input_ids"], batch["attention_mask"])
    grains = model.grain_embeddings(text, model.molecule_features(batch["graph"]))
    expected = sum(
        w * s * (grains[g][0] @ grains[g][1].T)
        for g, w, s in (("global", 0.3, math.exp(0.14)), ("mid", 0.2, 1.0), ("local", 0.5, 1.0))
    )
    torch.testing.assert_close(faithful, expected, rtol=1e-4, atol=1e-4)
    # batch-position dependence: column j depends on the text at position j, not only on molecule j
    swapped = dict(batch)
    swapped["input_ids"] = batch["input_ids"].clone()
    swapped["attention_mask"] = batch["attention_mask"].clone()
    swapped["input_ids"][5], swapped["attention_mask"][5] = batch["input_ids"][0], batch["attention_mask"][0]
    changed = model.score_pairs(swapped)
    torch.testing.assert_close(changed[:5, :5], faithful[:5, :5])  # texts 0-4 and molecules 0-4 untouched
    assert not torch.allclose(changed[:5, 5], faithful[:5, 5])  # molecule 5 now seen through another text


def test_score_blocks_drops_uneven_batches_in_faithful_mode(tiny_bert_config, tiny_tokenizer, caplog):
    model = _model(tiny_bert_config).eval()
    blocks = [
        _batch(tiny_tokenizer, SMILES[:3], TEXTS[:3]),
        _batch(tiny_tokenizer, SMILES[3:], TEXTS[3:]),
        _batch(tiny_tokenizer, SMILES[:2], TEXTS[:2]),
    ]
    assert model.score_blocks(blocks).shape == (8, 8)
    model.config.score_mode = "faithful"
    with caplog.at_level(logging.WARNING, logger="class_hf.models.modeling_orma"):
        scores = model.score_blocks(blocks)
    assert scores.shape == (6, 6)
    assert any("skipped 2 rows" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(scores[3:, :3], model.score_pairs(blocks[1], blocks[0]))


def test_param_groups_and_initialisation(tiny_bert_config):
    model = _model(tiny_bert_config, temperature_init=0.3)
    assert model.temp.item() == pytest.approx(0.3) and model.gcn.norm.weight.eq(1).all()
    assert model.gcn.convs[0].bias.eq(0).all() and model.sent_norm.bias.eq(0).all()
    bound = 1 / math.sqrt(300)  # PyTorch's default Linear init, as ORMA
    assert model.mol_proj.weight.abs().max() <= bound and model.mol_proj.weight.std() > bound / 3
    groups = model.param_groups()
    assert groups["text_encoder"] and all(n.startswith("text_encoder.") for n in groups["text_encoder"])
    assert "temp" in groups["other"] and not any(n.startswith("text_encoder.") for n in groups["other"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(groups["text_encoder"]) | set(groups["other"]) == trainable


def test_save_and_load_roundtrip(tiny_bert_config, tiny_tokenizer, tmp_path):
    model = _model(tiny_bert_config, score_mode="faithful").eval()
    batch = _batch(tiny_tokenizer)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is OrmaModel and isinstance(AutoConfig.from_pretrained(tmp_path), OrmaConfig)
    assert loaded.config.score_mode == "faithful"
    torch.testing.assert_close(loaded.temp, model.temp)
    with torch.no_grad():
        a, b = model(**batch), loaded(**batch)
    torch.testing.assert_close(a.per_sample_loss, b.per_sample_loss)
    torch.testing.assert_close(a.mol_embeds, b.mol_embeds)
    torch.testing.assert_close(model.score_pairs(batch), loaded.score_pairs(batch))


def test_pretrained_text_encoder_is_loaded_once(tiny_bert_config, tmp_path):
    torch.manual_seed(3)
    bert = BertModel(tiny_bert_config)
    bert.save_pretrained(tmp_path / "bert")
    model = OrmaModel(OrmaConfig(text_encoder_name_or_path=str(tmp_path / "bert")))
    for name, param in bert.state_dict().items():
        torch.testing.assert_close(model.text_encoder.state_dict()[name], param, msg=name)
    assert model.config.text_config.hidden_size == tiny_bert_config.hidden_size
    model.save_pretrained(tmp_path / "orma")
    (tmp_path / "bert" / "model.safetensors").unlink()  # from_pretrained must not need it
    loaded = OrmaModel.from_pretrained(tmp_path / "orma")
    torch.testing.assert_close(loaded.text_encoder.pooler.dense.weight, bert.pooler.dense.weight)


def test_from_pretrained_with_output_loading_info(tiny_bert_config, tmp_path):
    model = _model(tiny_bert_config)
    model.save_pretrained(tmp_path)
    loaded, info = OrmaModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is OrmaModel
    assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")), info
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    auto_loaded, _ = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(auto_loaded) is OrmaModel


# ----------------------------------------------------------------------------------------------------- mol2vec
def test_mol2vec_identifiers_match_text2mol():
    from rdkit import Chem

    # Text2Mol's README shows a 4-atom graph whose two methyls carry 3537119515 (methyl on a carbon, radius 1)
    identifiers = mol2vec_atom_identifiers(Chem.MolFromSmiles("CC(C)O"))
    assert identifiers[0] == identifiers[2] == "3537119515"
    assert len(set(identifiers)) == 3
    # an isolated atom has no radius-1 environment: its radius-0 identifier is used
    assert mol2vec_atom_identifiers(Chem.MolFromSmiles("[Na+]"))[0].isdigit()


def test_mol2vec_atom_features(tiny_bert_config, tiny_tokenizer, tmp_path):
    from datasets import Dataset

    tokens = ["UNK", "3537119515", "2246728737"]
    vectors = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    path = tmp_path / "tokens.npz"
    np.savez(path, tokens=np.array(tokens), vectors=vectors)
    indexer = Mol2VecIndexer(path)
    assert mol2vec_atom_indices("CC(C)O", indexer.vocabulary) == [1, 0, 1, 0]
    dataset = Dataset.from_dict({"smiles": SMILES[:2]}).map(indexer)
    assert [len(v) for v in dataset["mol2vec_index"]] == [3, 6]
    batched = Dataset.from_dict({"smiles": SMILES[:2]}).map(indexer, batched=True)
    assert list(batched["mol2vec_index"]) == list(dataset["mol2vec_index"])
    with pytest.raises(ValueError, match="parse"):
        indexer({"smiles": "not a smiles"})

    config = dict(atom_features="mol2vec", mol2vec_embeddings_path=str(path), mol2vec_vocab_size=3, mol2vec_dim=16)
    model = _model(tiny_bert_config, **config)
    np.testing.assert_array_equal(model.mol2vec.weight.detach().numpy(), vectors)
    batch = _batch(tiny_tokenizer, SMILES[:2], TEXTS[:2])
    with pytest.raises(ValueError, match="mol2vec_index"):
        model(**batch)
    batch["graph"].mol2vec_index = torch.tensor([i for row in dataset["mol2vec_index"] for i in row])
    out = model(**batch)
    out.loss.backward()
    assert model.mol2vec.weight.grad is None and "mol2vec.weight" not in model.param_groups()["other"]
    model.save_pretrained(tmp_path / "orma")
    path.unlink()
    loaded = OrmaModel.from_pretrained(tmp_path / "orma")
    assert not loaded.mol2vec.weight.requires_grad
    np.testing.assert_array_equal(loaded.mol2vec.weight.detach().numpy(), vectors)
    with_info, _ = OrmaModel.from_pretrained(tmp_path / "orma", output_loading_info=True)
    assert not with_info.mol2vec.weight.requires_grad  # re-frozen on the model inside the tuple too


def test_curriculum_trainer_optimizer_groups(tiny_bert_config, tmp_path, optimizer_settings):
    model = _model(tiny_bert_config)
    assert model.config.text_encoder_learning_rate == 3e-5  # ORMA's SciBERT rate
    settings = optimizer_settings(model, tmp_path)
    for name, (lr, _) in settings.items():
        assert lr == (3e-5 if name.startswith("text_encoder.") else 1e-3), name
    assert settings["temp"] == (1e-3, 0.0) and settings["gcn.norm.weight"] == (1e-3, 0.0)
    assert settings["mol_proj.weight"] == (1e-3, 0.01) and settings["mol_proj.bias"] == (1e-3, 0.0)
    settings = optimizer_settings(model, tmp_path, text_encoder_learning_rate=2e-4)  # the arguments win
    assert settings["text_encoder.embeddings.word_embeddings.weight"] == (2e-4, 0.01)
    model = _model(tiny_bert_config, text_encoder_learning_rate=None)
    assert {lr for lr, _ in optimizer_settings(model, tmp_path).values()} == {1e-3}
