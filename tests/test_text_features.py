"""Frozen text features cached as a dataset column: the same embeddings as running the encoder, for every backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import load_from_disk

from class_hf.data import MoleculeTextCollator, featurize_molecules, load_chebi20
from class_hf.data.text_features import TEXT_FEATURES_COLUMN, add_text_features
from class_hf.evaluation.encoding import embed_pairs
from class_hf.models.configuration_aman import AmanConfig
from class_hf.models.configuration_dual_encoder import DualEncoderConfig
from class_hf.models.configuration_orma import OrmaConfig
from class_hf.models.modeling_aman import AmanModel
from class_hf.models.modeling_dual_encoder import DualEncoderModel
from class_hf.models.modeling_orma import OrmaModel
from class_hf.trainer import CurriculumTrainer
from class_hf.training_args import CurriculumTrainingArguments


@pytest.fixture(scope="module")
def pairs(chebi20_sample_dir):
    rows = load_chebi20(chebi20_sample_dir / "orma_sample.csv", splits="test")["test"].select(range(40))
    return featurize_molecules(rows, fingerprints=True, desc=None)


def _models(config):
    frozen = {"freeze_text_encoder": True}
    return {
        "dual_encoder": DualEncoderModel(
            DualEncoderConfig(
                text_config=config, gnn_hidden_size=16, gnn_num_layers=2, projection_dim=8, use_fingerprint=True,
                fingerprint_fusion="output", text_pooling_layers=2, text_input_norm=True, text_head="mlp",
                text_head_hidden_size=16, **frozen,
            )
        ),
        "aman": AmanModel(
            AmanConfig(
                text_config=config, text_encoder_name_or_path=None, text_pooling="mean", graph_hidden_size=16,
                graph_num_layers=1, graph_ffn_size=16, graph_num_heads=2, projection_dim=8, text_pooling_layers=2,
                **frozen,
            )
        ),
        "orma": OrmaModel(
            OrmaConfig(
                text_config=config, text_encoder_name_or_path=None, pooling="mean", emb_dim=16, num_gnn_layers=2,
                **frozen,
            )
        ),
    }  # fmt: skip


@pytest.mark.parametrize("backbone", ["dual_encoder", "aman", "orma"])
def test_cached_features_give_the_encoders_embeddings(backbone, pairs, tiny_tokenizer, tiny_bert_config):
    torch.manual_seed(0)
    model = _models(tiny_bert_config)[backbone].eval()
    assert model.text_encoder_frozen and not any(p.requires_grad for p in model.text_encoder.parameters())
    collator = MoleculeTextCollator(tiny_tokenizer, max_length=64)
    cached = add_text_features(pairs, model, tiny_tokenizer, max_length=64, batch_size=16, desc=None)
    assert TEXT_FEATURES_COLUMN in cached.column_names
    batch = collator([cached[i] for i in range(8)])
    assert "input_ids" not in batch and batch[TEXT_FEATURES_COLUMN].shape[0] == 8
    text, mol = embed_pairs(model, pairs, collator, batch_size=16, show_progress=False)
    text_cached, mol_cached = embed_pairs(model, cached, collator, batch_size=16, show_progress=False)
    torch.testing.assert_close(text_cached, text, atol=2e-3, rtol=1e-3)  # ORMA stores token states in float16
    torch.testing.assert_close(mol_cached, mol)
    out = model(**{k: v for k, v in batch.items()})
    assert out.per_sample_loss.shape == (8,) and torch.isfinite(out.loss)


def test_the_column_is_reloaded_from_the_datasets_cache(pairs, tiny_tokenizer, tiny_bert_config, tmp_path):
    pairs.save_to_disk(str(tmp_path / "pairs"))
    on_disk = load_from_disk(str(tmp_path / "pairs"))
    model = _models(tiny_bert_config)["dual_encoder"]
    first = add_text_features(on_disk, model, tiny_tokenizer, desc=None)
    second = add_text_features(on_disk, model, tiny_tokenizer, desc=None)
    assert first._fingerprint == second._fingerprint
    assert {f["filename"] for f in first.cache_files} == {f["filename"] for f in second.cache_files}
    other = _models(tiny_bert_config)["aman"]
    assert add_text_features(on_disk, other, tiny_tokenizer, desc=None)._fingerprint != first._fingerprint


def test_a_trainable_text_encoder_is_refused(pairs, tiny_tokenizer, tiny_bert_config):
    model = DualEncoderModel(DualEncoderConfig(text_config=tiny_bert_config, gnn_hidden_size=8, projection_dim=4))
    with pytest.raises(ValueError, match="needs a frozen text encoder"):
        add_text_features(pairs, model, tiny_tokenizer)


def test_the_trainer_caches_the_features_and_trains_on_them(pairs, tiny_tokenizer, tiny_bert_config, tmp_path):
    model = _models(tiny_bert_config)["dual_encoder"]
    args = CurriculumTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=2, cache_text_features=True,
        difficulty_source="warmup", eval_strategy="epoch", save_strategy="no", report_to="none", use_cpu=True,
        disable_tqdm=True, logging_steps=1,
    )  # fmt: skip
    trainer = CurriculumTrainer(
        model=model, args=args, train_dataset=pairs.select(range(32)), eval_dataset=pairs.select(range(32, 40)),
        data_collator=MoleculeTextCollator(tiny_tokenizer, max_length=64), processing_class=tiny_tokenizer,
    )  # fmt: skip
    trainer.train()
    assert TEXT_FEATURES_COLUMN in trainer.train_dataset.column_names
    assert TEXT_FEATURES_COLUMN in trainer.eval_dataset.column_names
    assert [round(h["epoch"]) for h in trainer.state.log_history if "eval_mrr" in h] == [1, 2]


def test_in_memory_datasets_are_cached_on_disk_and_not_encoded_twice(pairs, tiny_tokenizer, tiny_bert_config):
    """An in-memory dataset (e.g. ChEBI-20 read from CSV) has no cache files of its own: its features go to the
    datasets cache folder, so the next process reloads them; a dataset already holding a model's features is kept."""
    import datasets

    from class_hf.data.text_features import cache_text_features, holds_text_features_of

    assert not pairs.cache_files
    model = _models(tiny_bert_config)["dual_encoder"]
    collator = MoleculeTextCollator(tiny_tokenizer, max_length=64)
    (first,) = cache_text_features(model, tiny_tokenizer, collator, pairs)
    folder = Path(datasets.config.HF_DATASETS_CACHE) / "class_hf" / "text_features"
    assert first.cache_files and all(Path(f["filename"]).parent == folder for f in first.cache_files)
    assert holds_text_features_of(first, model, tiny_tokenizer, max_length=64)
    assert not holds_text_features_of(first, _models(tiny_bert_config)["aman"], tiny_tokenizer, max_length=64)
    assert not holds_text_features_of(pairs, model, tiny_tokenizer)
    (kept,) = cache_text_features(model, tiny_tokenizer, collator, first)
    assert kept is first  # nothing recomputed
    # Another process meets the same rows (the same fingerprint) and the same model: the column comes from the file.
    with pytest.MonkeyPatch.context() as patched:
        from class_hf.data import text_features

        patched.setattr(text_features, "_encode_batch", lambda *_a, **_k: pytest.fail("the texts were encoded again"))
        again = add_text_features(pairs, model, tiny_tokenizer, max_length=64, desc=None)
    np.testing.assert_array_equal(np.asarray(again[TEXT_FEATURES_COLUMN]), np.asarray(first[TEXT_FEATURES_COLUMN]))
