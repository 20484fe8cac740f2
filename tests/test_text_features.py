"""Frozen text features cached as a dataset column: the same embeddings as running the encoder, for every backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict, load_from_disk

from class_hf.data import MoleculeTextCollator, featurize_molecules, load_chebi20
from class_hf.data.text_features import (
    TEXT_FEATURES_COLUMN,
    add_text_features,
    cache_text_features,
    holds_text_features_of,
)
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


# ---------------------------------------------------------------------------------------------- keys, padding, input
_TEXTS = [
    "the acid .",  # row 0: short, the same features at any token limit >= 5
    "the molecule is a member of the class of benzoic acids that is benzoic acid substituted by a hydroxy group .",
    "it is a conjugate acid of a benzoate .",
    "the molecule is an amino acid .",
]


def test_the_encoder_is_hashed_once_per_call(pairs, tiny_tokenizer, tiny_bert_config, monkeypatch):
    """The features' key hashes every weight of the text encoder, a cost that grows with the encoder:
    caching several splits, or checking then adding a column, computes it once."""
    from class_hf.data import text_features

    model = _models(tiny_bert_config)["dual_encoder"]
    collator = MoleculeTextCollator(tiny_tokenizer, max_length=64)
    hashed = []
    real = text_features.encoder_feature_key
    monkeypatch.setattr(text_features, "encoder_feature_key", lambda *a: hashed.append(1) or real(*a))
    train, evals = pairs.select(range(20)), {"a": pairs.select(range(20, 30)), "b": pairs.select(range(30, 40))}
    train, evals = cache_text_features(model, tiny_tokenizer, collator, train, evals)
    assert len(hashed) == 1
    hashed.clear()
    (kept,) = cache_text_features(model, tiny_tokenizer, collator, train)  # holds the features: checked, kept
    assert kept is train and len(hashed) == 1
    hashed.clear()
    both = add_text_features(DatasetDict(evals), model, tiny_tokenizer, max_length=64, desc=None)
    assert len(hashed) == 1
    for name, part in evals.items():
        assert holds_text_features_of(both[name], model, tiny_tokenizer, max_length=64)
        np.testing.assert_array_equal(
            np.asarray(both[name][TEXT_FEATURES_COLUMN]), np.asarray(part[TEXT_FEATURES_COLUMN])
        )


def _texts(texts=_TEXTS) -> Dataset:
    return Dataset.from_dict({"cid": [str(i) for i in range(len(texts))], "description": list(texts)})


def _direct(model, tokenizer, text: str, max_length: int) -> np.ndarray:
    """``model.text_features`` of one text, alone (no padding): what its cached row must hold."""
    encoded = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return model.text_features(encoded["input_ids"], encoded["attention_mask"])[0].float().numpy()


def _permuted_tokenizer(tokenizer, swap=("acid", "the")):
    """``tokenizer`` with the ids of two words swapped: the same texts, other token ids."""
    import json

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = state["model"]["vocab"]
    vocab[swap[0]], vocab[swap[1]] = vocab[swap[1]], vocab[swap[0]]
    specials = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(state)), model_max_length=64, mask_token="[MASK]", **specials
    )


def test_holds_compares_the_recorded_key_not_the_first_row(tiny_tokenizer, tiny_bert_config, tmp_path):
    """Features at another token limit are equal on a short first row: the recorded key tells them apart."""
    from class_hf.data.text_features import holds_text_features_of, recorded_text_features_key, text_features_key

    model = _models(tiny_bert_config)["dual_encoder"].eval()
    short = add_text_features(_texts(), model, tiny_tokenizer, max_length=8, desc=None)
    key = text_features_key(model, tiny_tokenizer, 8, "description")
    assert recorded_text_features_key(short) == key != text_features_key(model, tiny_tokenizer, 64, "description")
    assert holds_text_features_of(short, model, tiny_tokenizer, max_length=8)
    assert not holds_text_features_of(short, model, tiny_tokenizer, max_length=64)
    # The key travels with the column: select, filter, formats, other columns' maps, save_to_disk.
    short.select([2, 0, 1]).save_to_disk(str(tmp_path / "short"))
    reloaded = load_from_disk(str(tmp_path / "short")).filter(lambda text: text != "x", input_columns="description")
    reloaded = reloaded.map(lambda row: {"cid": row["cid"] + "!"}).with_format("numpy")
    assert recorded_text_features_key(reloaded) == key
    assert not holds_text_features_of(reloaded, model, tiny_tokenizer, max_length=64)
    # A column made elsewhere (no key): the first row agrees at both limits, the longest text's row does not.
    made_elsewhere = _texts().add_column(TEXT_FEATURES_COLUMN, [row.tolist() for row in short[TEXT_FEATURES_COLUMN]])
    assert recorded_text_features_key(made_elsewhere) is None
    assert holds_text_features_of(made_elsewhere, model, tiny_tokenizer, max_length=8)
    assert not holds_text_features_of(made_elsewhere, model, tiny_tokenizer, max_length=64)


def test_the_tokenizer_is_part_of_the_key(tiny_tokenizer, tiny_bert_config):
    """Same model and texts, another tokenizer (other ids, or truncating on the left): new features, not the
    earlier tokenizer's from the cache; the key does not move when a call changes the backend's truncation."""
    import copy

    from class_hf.data.text_features import holds_text_features_of, text_features_fingerprint, tokenizer_key

    model = _models(tiny_bert_config)["dual_encoder"].eval()
    texts = _texts()
    permuted = _permuted_tokenizer(tiny_tokenizer)
    left = copy.deepcopy(tiny_tokenizer)
    left.truncation_side = "left"
    before = tokenizer_key(tiny_tokenizer)
    tiny_tokenizer(["the acid"], truncation=True, max_length=3)  # sets the backend's truncation
    assert tokenizer_key(tiny_tokenizer) == before
    assert len({before, tokenizer_key(permuted), tokenizer_key(left)}) == 3
    assert text_features_fingerprint(texts, model, permuted, 8, "description") != text_features_fingerprint(
        texts, model, tiny_tokenizer, 8, "description"
    )
    first = add_text_features(texts, model, tiny_tokenizer, max_length=8, desc=None)
    for other in (permuted, left):
        again = add_text_features(texts, model, other, max_length=8, desc=None)
        assert not holds_text_features_of(first, model, other, max_length=8)
        for row, text in enumerate(_TEXTS):
            np.testing.assert_allclose(again[row][TEXT_FEATURES_COLUMN], _direct(model, other, text, 8), atol=1e-4)
        assert not np.allclose(np.asarray(again[TEXT_FEATURES_COLUMN]), np.asarray(first[TEXT_FEATURES_COLUMN]))


def test_token_states_of_a_left_padding_tokenizer_hold_the_real_tokens_only(tiny_tokenizer, tiny_bert_config):
    import copy

    model = _models(tiny_bert_config)["orma"].eval()
    left = copy.deepcopy(tiny_tokenizer)
    left.padding_side = "left"
    cached = add_text_features(_texts(), model, left, max_length=64, batch_size=4, desc=None)
    for row, text in enumerate(_TEXTS):
        expected = _direct(model, tiny_tokenizer, text, 64)
        stored = np.asarray(cached[row][TEXT_FEATURES_COLUMN], dtype=np.float32)
        assert stored.shape == expected.shape
        np.testing.assert_allclose(stored, expected, atol=2e-3, rtol=1e-2)


@pytest.mark.parametrize(
    ("descriptions", "match"),
    [
        (["the acid .", "   ", None], r"Row 1 \(cid '1'\) of `description` is empty or blank \('   '\); 1 more row"),
        ([None, "the acid ."], r"Row 0 \(cid '0'\) of `description` is missing \(None\)"),
        (["the acid .", ""], r"Row 1 \(cid '1'\) of `description` is empty"),
    ],
)
def test_missing_or_blank_descriptions_are_named(descriptions, match, tiny_tokenizer, tiny_bert_config):
    model = _models(tiny_bert_config)["dual_encoder"]
    with pytest.raises(ValueError, match=match):
        add_text_features(_texts(descriptions), model, tiny_tokenizer, desc=None)
    without_cid = _texts(descriptions).remove_columns("cid")
    with pytest.raises(ValueError, match=r"Row \d of `description`"):
        add_text_features(without_cid, model, tiny_tokenizer, desc=None)
