"""Shared test fixtures: the bundled ChEBI-20 sample, a tiny WordLevel tokenizer and a tiny BERT config.

Nothing here touches the network or ``../shared``.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
CHEBI20_SAMPLE = FIXTURES / "chebi20"


def _fixture_words() -> list[str]:
    words: set[str] = set()
    with open(CHEBI20_SAMPLE / "orma_sample.csv", newline="") as f:
        for row in csv.DictReader(f):
            words.update(re.findall(r"\w+|[^\w\s]", row["Description"].lower()))
    return sorted(words)


def make_tiny_tokenizer():
    """A BERT-style ``PreTrainedTokenizerFast`` over a WordLevel vocabulary of the fixture's words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {tok: i for i, tok in enumerate(specials + _fixture_words())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def make_tiny_bert_config(vocab_size: int):
    """A 2-layer BERT with hidden size 32."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )


@pytest.fixture(scope="session", autouse=True)
def _private_datasets_cache(tmp_path_factory):
    """The datasets cache of the session in a temporary folder (cached text features of in-memory datasets go there),
    for this process and the processes it starts."""
    import datasets

    folder = str(tmp_path_factory.mktemp("hf_datasets_cache"))
    previous = (datasets.config.HF_DATASETS_CACHE, os.environ.get("HF_DATASETS_CACHE"))
    datasets.config.HF_DATASETS_CACHE = folder
    os.environ["HF_DATASETS_CACHE"] = folder
    yield
    datasets.config.HF_DATASETS_CACHE = previous[0]
    if previous[1] is None:
        os.environ.pop("HF_DATASETS_CACHE", None)
    else:
        os.environ["HF_DATASETS_CACHE"] = previous[1]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread: tiny models run faster without thread contention (2-core CI machines)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def chebi20_sample_dir() -> Path:
    """Folder holding the 300-pair ChEBI-20 sample in the ORMA CSV and MolT5 TSV layouts."""
    return CHEBI20_SAMPLE


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture()
def tiny_bert_config(tiny_tokenizer):
    return make_tiny_bert_config(len(tiny_tokenizer))


@pytest.fixture()
def optimizer_settings():
    """``f(model, tmp_path, **args)``: (learning rate, weight decay) of every parameter in the optimizer that
    ``CurriculumTrainer`` builds, checking that each trainable parameter is in exactly one group and that decay follows
    open_clip's rule (matrices and embedding tables decay; biases, norm weights and scalar temperatures never do)."""
    from class_hf.trainer import CurriculumTrainer
    from class_hf.training_args import CurriculumTrainingArguments

    def settings_of(model, tmp_path, **args) -> dict[str, tuple[float, float]]:
        values = {"learning_rate": 1e-3, "weight_decay": 0.01, "curriculum": "none", "report_to": "none"}
        values["use_cpu"] = True
        trainer = CurriculumTrainer(model=model, args=CurriculumTrainingArguments(str(tmp_path), **{**values, **args}))
        names = {id(p): n for n, p in model.named_parameters()}
        settings = {}
        for group in trainer.create_optimizer().param_groups:
            for param in group["params"]:
                assert names[id(param)] not in settings, f"{names[id(param)]} is in two groups"
                settings[names[id(param)]] = (group["lr"], group["weight_decay"])
        assert set(settings) == {n for n, p in model.named_parameters() if p.requires_grad}
        assert all((wd == 0.01) == (model.get_parameter(n).ndim >= 2) for n, (_, wd) in settings.items())
        return settings

    return settings_of
