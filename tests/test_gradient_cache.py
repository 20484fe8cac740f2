"""Gradient caching of a fine-tuned text encoder (``text_chunk_size``): the whole batch's loss and gradients, one chunk
of text-encoder activations at a time."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from class_hf.data import MoleculeTextCollator, featurize_molecules, load_chebi20
from class_hf.models.configuration_aman import AmanConfig
from class_hf.models.configuration_dual_encoder import DualEncoderConfig
from class_hf.models.configuration_orma import OrmaConfig
from class_hf.models.losses import enable_gradient_cache
from class_hf.models.modeling_aman import AmanModel
from class_hf.models.modeling_dual_encoder import DualEncoderModel
from class_hf.models.modeling_orma import OrmaModel
from class_hf.trainer import CurriculumTrainer
from class_hf.training_args import CurriculumTrainingArguments


@pytest.fixture(scope="module")
def pairs(chebi20_sample_dir):
    rows = load_chebi20(chebi20_sample_dir / "orma_sample.csv", splits="test")["test"].select(range(24))
    return featurize_molecules(rows, fingerprints=True, desc=None)


def _model(backbone: str, text_config, **overrides):
    torch.manual_seed(0)
    if backbone == "dual_encoder":
        config = DualEncoderConfig(
            text_config=text_config, gnn_hidden_size=16, gnn_num_layers=2, projection_dim=8, use_fingerprint=True,
            text_pooling_layers=2, **overrides,
        )  # fmt: skip
        return DualEncoderModel(config)
    if backbone == "aman":
        config = AmanConfig(
            text_config=text_config, text_encoder_name_or_path=None, text_pooling="mean", graph_hidden_size=16,
            graph_num_layers=1, graph_ffn_size=16, graph_num_heads=2, projection_dim=8,
            retrieval_loss="triplet+infonce", **overrides,
        )  # fmt: skip
        return AmanModel(config)
    settings = {"pooling": "mean", **overrides}
    config = OrmaConfig(
        text_config=text_config, text_encoder_name_or_path=None, emb_dim=16, num_gnn_layers=2, **settings
    )
    return OrmaModel(config)


def _no_dropout(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def _loss_and_grads(model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), grads


@pytest.mark.parametrize("backbone", ["dual_encoder", "aman", "orma"])
def test_chunks_give_the_whole_batch_loss_and_gradients(backbone, pairs, tiny_tokenizer, tiny_bert_config):
    model = _no_dropout(_model(backbone, tiny_bert_config)).train()
    batch = MoleculeTextCollator(tiny_tokenizer, max_length=64)([pairs[i] for i in range(10)])
    batch.pop("sample_idx", None)
    loss, grads = _loss_and_grads(model, batch)
    model.enable_gradient_cache(3)  # chunks of 3, 3, 3 and 1 texts
    chunked_loss, chunked_grads = _loss_and_grads(model, batch)
    torch.testing.assert_close(chunked_loss, loss)
    text_encoder_grads = [n for n in grads if n.startswith("text_encoder.")]
    assert text_encoder_grads and set(chunked_grads) == set(grads)
    # Summation order differs (float32): tolerances relative to the largest gradient.
    scale = max(g.abs().max().item() for g in grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, atol=2e-5 * scale, rtol=1e-4, msg=name)


def test_recomputed_chunks_see_the_same_dropout(pairs, tiny_tokenizer, tiny_bert_config):
    """With dropout the chunked run's gradient is the gradient of its own loss: each chunk is recomputed with the
    random state of its first pass (the reference below keeps every chunk's graph instead of recomputing it)."""
    model = _model("dual_encoder", tiny_bert_config).train()
    batch = MoleculeTextCollator(tiny_tokenizer, max_length=64)([pairs[i] for i in range(8)])
    batch.pop("sample_idx", None)
    model.enable_gradient_cache(3)
    loss, grads = _loss_and_grads(model, batch)

    model.enable_gradient_cache(None)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    features = torch.cat(
        [model.text_features(i, m) for i, m in zip(ids.split(3), mask.split(3), strict=True)]
    )  # the same chunks, kept in the graph
    reference = model(text_features=features, attention_mask=mask, graph=batch["graph"])
    reference.loss.backward()
    torch.testing.assert_close(loss, reference.loss.detach())
    scale = max(g.abs().max().item() for g in grads.values())
    for name, param in model.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(grads[name], param.grad, atol=2e-5 * scale, rtol=1e-4, msg=name)
    torch.manual_seed(1)
    assert not torch.allclose(model(**batch).loss, loss)  # dropout is on: one pass of all 8 texts differs


def test_chunking_only_in_training_with_a_trainable_encoder(pairs, tiny_tokenizer, tiny_bert_config, monkeypatch):
    calls = []
    batch = MoleculeTextCollator(tiny_tokenizer, max_length=64)([pairs[i] for i in range(8)])
    batch.pop("sample_idx", None)
    for frozen in (False, True):
        model = _model("dual_encoder", tiny_bert_config, freeze_text_encoder=frozen)
        model.enable_gradient_cache(2)
        original = model.chunked_text_features
        monkeypatch.setattr(model, "chunked_text_features", lambda *a, _f=original: calls.append(1) or _f(*a))
        model.train()(**batch)
        with torch.no_grad():
            model(**batch)
        model.eval()(**batch)
        assert len(calls) == (0 if frozen else 1)
        calls.clear()


def test_bad_settings_are_refused(tiny_bert_config):
    model = _model("dual_encoder", tiny_bert_config)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="text_chunk_size"):
            model.enable_gradient_cache(bad)
    with pytest.raises(ValueError, match="pooling='pooler'"):
        _model("orma", tiny_bert_config, pooling="pooler").enable_gradient_cache(4)
    with pytest.raises(ValueError, match="has no `enable_gradient_cache"):
        enable_gradient_cache(nn.Linear(2, 2), 4)
    enable_gradient_cache(nn.Linear(2, 2), None)  # nothing to do


def test_the_trainer_trains_a_curriculum_with_chunks(pairs, tiny_tokenizer, tiny_bert_config, tmp_path):
    model = _model("dual_encoder", tiny_bert_config)
    args = CurriculumTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=2, text_chunk_size=3,
        difficulty_source="warmup", save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = CurriculumTrainer(
        model=model, args=args, train_dataset=pairs.select(range(16)),
        data_collator=MoleculeTextCollator(tiny_tokenizer, max_length=64), processing_class=tiny_tokenizer,
    )  # fmt: skip
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("text_encoder.")}
    trainer.train()
    assert model.text_chunk_size == 3
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.state.log_history if "loss" in h)
