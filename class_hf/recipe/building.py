"""Building a recipe run: the data (loaded, re-split, featurized), the tokenizer and the model."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from ..data.features import MoleculeFeatures
from ..data.sources import load_data, resolve_pretrained
from ..models.registry import Backbone, get_backbone, register_backbones
from ..training_args import CurriculumTrainingArguments
from .arguments import WORD_LEVEL, DataArguments, ModelArguments

logger = logging.getLogger(__name__)

__all__ = ["build_model", "build_tokenizer", "featurize", "load_pairs", "word_level_tokenizer"]


def load_pairs(data_args: DataArguments):
    """ChEBI-20 as a ``DatasetDict`` from ``data_args`` (optionally re-split by CID and truncated).

    Args:
        data_args (DataArguments): the data arguments.

    Returns:
        DatasetDict: the splits.
    """
    from datasets import Dataset, DatasetDict

    from ..curriculum.difficulty import DIFFICULTY_COLUMNS
    from ..data.chebi20 import resplit_by_cid

    source = data_args.dataset_name_or_path
    if not source:
        raise ValueError(
            "No data: set `dataset_name_or_path` (a ChEBI-20 folder or file, a save_to_disk folder or a Hub id), "
            "e.g. `--dataset_name_or_path tests/fixtures/chebi20/orma_sample.csv --resplit 0.8 0.1 0.1`."
        )
    data = load_data(source)  # a missing local path is named with the folder it was resolved from
    if isinstance(data, Dataset):
        data = DatasetDict({data_args.train_split: data})
    if data_args.resplit is not None:
        scored = [name for name, part in data.items() if set(DIFFICULTY_COLUMNS) & set(part.column_names)]
        if scored:
            raise ValueError(
                f"`resplit` would mix scored and unscored pairs: the split(s) {scored} already carry difficulty "
                "columns, which only hold for the pairs they were scored on. Drop `--resplit` to keep the scored "
                "dataset's own splits."
            )
        data = resplit_by_cid(data, data_args.resplit, seed=data_args.resplit_seed)
    for split in [name for name in data if name != data_args.train_split]:
        # Only the training split's difficulty is used. Parquet/Hub copies give every split one schema, so the
        # unscored splits come back with empty difficulty columns (which the collator could not batch): drop them.
        present = [c for c in DIFFICULTY_COLUMNS if c in data[split].column_names]
        if present:
            logger.info("Ignoring the difficulty columns %s of the %r split (used in training only).", present, split)
            data[split] = data[split].remove_columns(present)
    if data_args.train_split not in data:
        raise ValueError(
            f"The data has no {data_args.train_split!r} split (it has {list(data)}); set `train_split`, or "
            "`--resplit 0.8 0.1 0.1` to split the pairs by CID."
        )
    limits = {
        data_args.train_split: data_args.max_train_samples,
        data_args.validation_split: data_args.max_eval_samples,
        data_args.test_split: data_args.max_test_samples,
    }
    for split, limit in limits.items():
        if limit is not None and split in data and len(data[split]) > limit:
            logger.info("Keeping the first %d of %d %s pairs.", limit, len(data[split]), split)
            data[split] = data[split].select(range(limit))
    logger.info("Data from %s: %s", source, {split: len(part) for split, part in data.items()})
    return data


def featurize(
    data, training_args: CurriculumTrainingArguments, features: MoleculeFeatures, num_proc: int | None = None
):
    """Adds the molecule columns ``features`` names to every split, rank 0 first (the other ranks then read its
    ``datasets`` cache). Splits that already have them (e.g. ``class-hf prepare`` output) are left as they are.

    Args:
        data (DatasetDict): the splits.
        training_args (CurriculumTrainingArguments): for ``main_process_first``.
        features (MoleculeFeatures): what the model reads (:meth:`MoleculeFeatures.for_model`).
        num_proc (int | None): featurization processes.

    Returns:
        DatasetDict: the featurized splits.
    """
    with training_args.main_process_first(desc="featurizing molecules"):
        return features.featurize(data, num_proc=num_proc)


def word_level_tokenizer(texts: Sequence[str], model_max_length: int = 256):
    """A BERT-style word-level ``PreTrainedTokenizerFast`` whose vocabulary is the words of ``texts``.

    For tiny models trained from scratch without downloads (the ``*_tiny`` recipe configs and the demo): lower-cased
    words and punctuation, ``[CLS] text [SEP]``, ``[UNK]`` for words not seen in ``texts``.

    Args:
        texts (Sequence[str]): the training texts.
        model_max_length (int): the tokenizer's length limit.

    Returns:
        PreTrainedTokenizerFast: the tokenizer (save it with ``save_pretrained``).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    splitter = pre_tokenizers.BertPreTokenizer()
    words = sorted({word for text in texts for word, _ in splitter.pre_tokenize_str(text.lower())})
    vocab = {token: i for i, token in enumerate(specials + [w for w in words if w not in specials])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = splitter
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def build_tokenizer(model_args: ModelArguments, backbone: str, train_texts: Sequence[str] | None = None):
    """The tokenizer: ``wordlevel`` from the training texts, or ``AutoTokenizer`` from the checkpoint / encoder."""
    from transformers import AutoTokenizer

    name = model_args.tokenizer_name_or_path
    if name == WORD_LEVEL and model_args.model_name_or_path:
        logger.info("Using the tokenizer of %s (its vocabulary matches its weights).", model_args.model_name_or_path)
        name = model_args.model_name_or_path
    if name == WORD_LEVEL:
        if not train_texts:
            raise ValueError("`tokenizer_name_or_path='wordlevel'` builds the vocabulary from the training texts.")
        tokenizer = word_level_tokenizer(train_texts, model_max_length=model_args.max_length)
        logger.info(
            "Built a word-level tokenizer of %d tokens from %d training texts.", len(tokenizer), len(train_texts)
        )
        return tokenizer
    if name is None:
        name = model_args.model_name_or_path or model_args.text_encoder_name_or_path
        if name is None and model_args.text_config is None:
            name = get_backbone(backbone).default_text_encoder
    if name is None:
        raise ValueError(
            "`text_config` builds a text encoder from scratch, so there is no pretrained tokenizer to load: set "
            "`tokenizer_name_or_path` (a Hub id or folder, or 'wordlevel' to build one from the training texts)."
        )
    return AutoTokenizer.from_pretrained(resolve_pretrained(name), cache_dir=model_args.cache_dir)


def build_model(model_args: ModelArguments, backbone: str, tokenizer) -> torch.nn.Module:
    """The backbone: a loaded CLASS checkpoint (``AutoModel``) or a new model from its config.

    Call it after ``set_seed`` so that the seed also fixes the new model's initial weights.

    Args:
        model_args (ModelArguments): the model arguments.
        backbone (str): the recipe's backbone (a name of :data:`~class_hf.models.registry.BACKBONES`).
        tokenizer: the tokenizer (its size is the default ``vocab_size`` of a ``text_config``).

    Returns:
        torch.nn.Module: the model.

    Raises:
        ValueError: a checkpoint of another backbone, ``model_config`` overrides that change a checkpoint's
            architecture, or a ``text_config`` vocabulary smaller than the tokenizer.
    """
    spec = get_backbone(backbone)
    if model_args.model_name_or_path:
        return _load_checkpoint(model_args, spec)
    overrides = dict(model_args.model_config or {})
    if model_args.text_config is not None:
        text_config = dict(model_args.text_config)
        text_config.setdefault("vocab_size", len(tokenizer))
        if text_config["vocab_size"] < len(tokenizer):
            raise ValueError(
                f"`text_config.vocab_size` is {text_config['vocab_size']} but the tokenizer has {len(tokenizer)} "
                "tokens; raise it or leave it out (it defaults to the tokenizer's size)."
            )
        overrides.update(text_config=text_config, text_encoder_name_or_path=model_args.text_encoder_name_or_path)
    elif model_args.text_encoder_name_or_path is not None:
        overrides["text_encoder_name_or_path"] = model_args.text_encoder_name_or_path
    model = spec.build(**overrides)
    logger.info(
        "Built a new %s with %d parameters.", spec.model_class_name, sum(p.numel() for p in model.parameters())
    )
    return model


def _load_checkpoint(model_args: ModelArguments, spec: Backbone) -> torch.nn.Module:
    """``--model_name_or_path``: the checkpoint, checked to be of the recipe's backbone and architecture."""
    from transformers import AutoModel

    register_backbones()
    overrides = dict(model_args.model_config or {})
    advice = (
        f"`model_config` {overrides} changes the architecture of the checkpoint {model_args.model_name_or_path!r}; "
        "drop the overrides that do (a config made for a new model, e.g. a *_tiny.yaml, sets several)."
    )
    try:
        model, info = AutoModel.from_pretrained(
            model_args.model_name_or_path, cache_dir=model_args.cache_dir, output_loading_info=True, **overrides
        )
    except RuntimeError as error:  # weights of another shape
        raise ValueError(f"{advice} ({error})") from error
    changed = sorted(set(info.get("missing_keys", ())) | set(info.get("unexpected_keys", ())))
    if changed:
        raise ValueError(f"{advice} Weights missing or left over: {changed[:5]}{' ...' if len(changed) > 5 else ''}")
    found = getattr(model.config, "model_type", None)
    if found != spec.model_type:
        raise ValueError(
            f"{model_args.model_name_or_path!r} is a {found!r} checkpoint, but this recipe trains "
            f"{spec.model_type!r}. Use the recipe of that backbone, or a {spec.model_type!r} checkpoint."
        )
    logger.info("Loaded the %s checkpoint %s.", found, model_args.model_name_or_path)
    return model
