"""The pipeline shared by the training recipes ``recipes/orma.py``, ``recipes/aman.py``, ``recipes/dual_encoder.py``.

A recipe is one call, ``run_recipe(backbone, defaults)``:

1. arguments: :class:`ModelArguments`, :class:`DataArguments` and
   :class:`~class_hf.training_args.CurriculumTrainingArguments`, parsed by ``HfArgumentParser`` from the recipe's
   defaults (the backbone's published settings), then ``--config <file>.yaml``, then the command line (each overriding
   the one before; see :func:`parse_recipe_args`);
2. data: ChEBI-20 from a folder, a file, a ``save_to_disk`` folder or a Hub id (:func:`load_pairs`), optionally
   re-split by CID;
3. tokenizer and model (built after ``set_seed``; ``--model_name_or_path org/name`` loads a CLASS checkpoint with
   ``AutoModel`` to continue training or to evaluate it);
4. featurization under ``main_process_first()`` (rank 0 fills the ``datasets`` cache, the others read it);
5. :class:`~class_hf.trainer.CurriculumTrainer`: it scores the difficulty when the training split has no
   ``difficulty`` column (``difficulty_source``), or uses the column as it is (``precomputed``), then trains;
6. test evaluation in both candidate pools (``split`` and ``all``, the latter optionally with a CID/SMILES table of
   further molecules), on the main process;
7. the outputs in ``output_dir``: checkpoint (``save_pretrained`` + tokenizer), ``metrics.json``, the scored dataset
   (``scored_dataset/``, ``save_to_disk`` plus a dataset card), ``README.md`` (the model card, see
   :mod:`class_hf.model_card`) and PNG plots (training-sample ratio per epoch, loss and validation MRR curves);
   with ``--push_to_hub`` everything goes to the Hub through ``Trainer.push_to_hub``.

The same script runs under ``python``, ``accelerate launch`` (one process) and ``accelerate launch --multi_gpu
--num_processes N`` (with ``--use_cpu`` on a machine without GPUs).
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import HfArgumentParser

from .runtime import configure_cpu_threads
from .trainer import CurriculumTrainer
from .training_args import CurriculumTrainingArguments
from .user_errors import debug_requested, unknown_arguments, user_errors

logger = logging.getLogger(__name__)

__all__ = [
    "BACKBONES",
    "DataArguments",
    "MoleculeFeatures",
    "ModelArguments",
    "build_model",
    "build_tokenizer",
    "evaluate_test_pools",
    "featurize",
    "load_pairs",
    "parse_recipe_args",
    "run_recipe",
    "word_level_tokenizer",
]

# Recipe name -> (config class, model class) attribute names in class_hf.models, and the checkpoint's model_type.
BACKBONES: dict[str, tuple[str, str, str]] = {
    "dual_encoder": ("DualEncoderConfig", "DualEncoderModel", "class_dual_encoder"),
    "orma": ("OrmaConfig", "OrmaModel", "class_orma"),
    "aman": ("AmanConfig", "AmanModel", "class_aman"),
}
# TrainingArguments defaults every recipe shares (a recipe's own defaults and its --config override them): evaluate
# and checkpoint every epoch, keep the checkpoint with the best mean validation MRR.
COMMON_DEFAULTS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "load_best_model_at_end": True,
    "metric_for_best_model": "eval_mrr",
    "greater_is_better": True,
    "logging_steps": 50,
    "per_device_eval_batch_size": 64,
    "report_to": "none",
}
WORD_LEVEL = "wordlevel"
SCORED_DATASET_DIR = "scored_dataset"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _mapping_argument(value: dict | str | None, name: str) -> dict | None:
    """A YAML mapping (already a dict) or a JSON object given on the command line."""
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"`{name}` must be a JSON object such as '{{\"hidden_size\": 32}}', got {value!r}."
        ) from error
    if not isinstance(parsed, dict):
        raise ValueError(f"`{name}` must be a JSON object (a mapping), got {value!r}.")
    return parsed


@dataclass
class ModelArguments:
    """Which model to train: a CLASS checkpoint, or a backbone built from its config.

    Args:
        model_name_or_path (str | None): a CLASS checkpoint (folder or Hub id) loaded with ``AutoModel`` to continue
            training or to evaluate; its tokenizer is loaded from the same place.
        text_encoder_name_or_path (str | None): pretrained text encoder (Hub id or folder) of a new model; the
            backbone's default (SciBERT for ORMA and AMAN) when None and ``text_config`` is not given.
        text_config (dict | str | None): config of a randomly initialised text encoder (a mapping with
            ``model_type``; a JSON object on the command line); ``vocab_size`` defaults to the tokenizer's size.
        model_config (dict | str | None): overrides of the backbone's config fields (e.g. ``{"emb_dim": 64}``), also
            applied to a loaded checkpoint's config.
        tokenizer_name_or_path (str | None): the tokenizer; by default the checkpoint's or the text encoder's.
            ``wordlevel`` builds a word-level tokenizer from the training texts (for tiny models without downloads;
            with ``model_name_or_path`` the checkpoint's own tokenizer is used instead).
        max_length (int): tokens per text (lowered to what the tokenizer and the text encoder allow).
        cache_dir (str | None): Hub cache folder for models and tokenizers.
        evaluate_only (bool): skip training; evaluate the model on the test split in both pools and write
            ``metrics.json`` (no checkpoint, no card: the evaluated checkpoint already has them).
    """

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A CLASS checkpoint (folder or Hub id) to continue training or to evaluate."},
    )
    text_encoder_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Pretrained text encoder of a new model (default: the backbone's, e.g. SciBERT)."},
    )
    text_config: dict | str | None = field(
        default=None,
        metadata={"help": "Config of a randomly initialised text encoder, as a JSON object with `model_type`."},
    )
    model_config: dict | str | None = field(
        default=None, metadata={"help": "Overrides of the backbone config's fields, as a JSON object."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Tokenizer (default: the checkpoint's or the text encoder's); 'wordlevel' builds one from the "
            "training texts."
        },
    )
    max_length: int = field(default=256, metadata={"help": "Tokens per text."})
    cache_dir: str | None = field(default=None, metadata={"help": "Hub cache folder for models and tokenizers."})
    evaluate_only: bool = field(
        default=False,
        metadata={"help": "Skip training: evaluate the model (e.g. --model_name_or_path) on the test split only."},
    )

    def __post_init__(self) -> None:
        self.text_config = _mapping_argument(self.text_config, "text_config")
        self.model_config = _mapping_argument(self.model_config, "model_config")
        if self.text_config is not None and "model_type" not in self.text_config:
            raise ValueError(f"`text_config` needs a `model_type` (e.g. 'bert'), got keys {sorted(self.text_config)}.")
        if self.max_length < 1:
            raise ValueError(f"`max_length` must be a positive number of tokens, got {self.max_length}.")


@dataclass
class DataArguments:
    """Which data to train and evaluate on.

    Args:
        dataset_name_or_path (str | None): ChEBI-20 as a folder (MolT5, ORMA or Text2Mol layout), a single file, a
            ``save_to_disk`` folder (e.g. a scored dataset) or a Hub dataset id.
        resplit (list[float] | None): re-split all pairs by CID hash into train/validation/test fractions.
        resplit_seed (int): seed of the re-split.
        train_split (str): the training split.
        validation_split (str): the split evaluated during training (needed unless ``eval_strategy="no"``).
        test_split (str): the split evaluated at the end (skipped when absent).
        pool_molecules (str | None): a CID/SMILES table of further candidate molecules for the ``all`` pool
            (ChEBI-20's ``cid_split_smiles.tsv``).
        max_train_samples (int | None): keep the first ``n`` training pairs.
        max_eval_samples (int | None): keep the first ``n`` validation pairs.
        max_test_samples (int | None): keep the first ``n`` test pairs.
        fingerprints (bool): add Morgan count fingerprints (always done when the model uses them).
        preprocessing_num_workers (int | None): worker processes for featurization.
        dataset_id (str | None): the dataset's Hub id in the model card (default: the source when it is a Hub id).
        save_scored_dataset (bool): write the training data with its difficulty columns to ``scored_dataset/``.
    """

    dataset_name_or_path: str | None = field(
        default=None,
        metadata={"help": "ChEBI-20: a folder, a file, a save_to_disk folder (e.g. a scored dataset) or a Hub id."},
    )
    resplit: list[float] | None = field(
        default=None, metadata={"help": "Re-split all pairs by CID into these train/validation/test fractions."}
    )
    resplit_seed: int = field(default=0, metadata={"help": "Seed of --resplit."})
    train_split: str = field(default="train", metadata={"help": "The training split."})
    validation_split: str = field(default="validation", metadata={"help": "The split evaluated during training."})
    test_split: str = field(default="test", metadata={"help": "The split evaluated at the end (skipped if absent)."})
    pool_molecules: str | None = field(
        default=None,
        metadata={"help": "A CID/SMILES table (cid_split_smiles.tsv) of further candidates for the 'all' pool."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first n training pairs."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first n validation pairs."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Keep the first n test pairs."})
    fingerprints: bool = field(default=False, metadata={"help": "Add Morgan count fingerprint columns."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Featurization processes."})
    dataset_id: str | None = field(
        default=None, metadata={"help": "Hub id of the dataset for the model card (default: the source if a Hub id)."}
    )
    save_scored_dataset: bool = field(
        default=True, metadata={"help": "Write the training data with its difficulty columns to scored_dataset/."}
    )

    def __post_init__(self) -> None:
        if self.resplit is not None and len(self.resplit) != 3:
            raise ValueError(f"`resplit` needs three fractions (train validation test), got {self.resplit}.")
        for name in ("max_train_samples", "max_eval_samples", "max_test_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"`{name}` must be a positive number of pairs, got {value}.")


# --------------------------------------------------------------------------------------------------------- arguments
def _read_config(path: str) -> dict[str, Any]:
    config_path = Path(path)
    if not config_path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file. Pass a YAML file such as recipes/configs/orma.yaml.")
    values = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(
            f"--config {path} must hold a mapping of argument names to values, got {type(values).__name__}."
        )
    return values


def make_parser() -> HfArgumentParser:
    """The recipes' ``HfArgumentParser`` over the model, data and training arguments, plus ``--config``."""
    parser = HfArgumentParser((ModelArguments, DataArguments, CurriculumTrainingArguments))
    parser.add_argument(
        "--config",
        default=None,
        help="A YAML file of argument values; the recipe's defaults < the file < the command line.",
    )
    return parser


def parse_recipe_args(
    argv: Sequence[str] | None = None, defaults: Mapping[str, Any] | None = None
) -> tuple[ModelArguments, DataArguments, CurriculumTrainingArguments]:
    """Parses the recipe's arguments: ``defaults``, then ``--config file.yaml``, then the command line.

    The values of ``defaults`` and of the YAML file become the parser's defaults (``ArgumentParser.set_defaults``),
    so every option given on the command line overrides them, and ``--help`` still lists every option.

    Args:
        argv (Sequence[str] | None): the arguments (``sys.argv[1:]`` when None).
        defaults (Mapping | None): the recipe's defaults (e.g. the backbone's published hyperparameters).

    Returns:
        tuple: ``(ModelArguments, DataArguments, CurriculumTrainingArguments)``.

    Raises:
        ValueError: a key of ``defaults`` or of the YAML file is not an argument of the recipe.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    parser = make_parser()
    values = dict(defaults or {})
    if known.config:
        values.update(_read_config(known.config))
    destinations = {action.dest for action in parser._actions}
    unknown = sorted(set(values) - destinations)
    if unknown:
        where = f"--config {known.config}" if known.config else "the recipe's defaults"
        close = {name: difflib.get_close_matches(name, sorted(destinations), n=1) for name in unknown}
        hints = ", ".join(f"{match[0]} for {name}" for name, match in close.items() if match)
        raise ValueError(
            f"{where} names unknown argument(s) {unknown}{f' (did you mean {hints}?)' if hints else ''}. Use the "
            "option names of `--help` without the dashes (e.g. `learning_rate`, `dataset_name_or_path`)."
        )
    parser.set_defaults(**values)
    # The last output is the namespace of `--config` itself (already read above).
    *outputs, _, extras = parser.parse_args_into_dataclasses(
        args=rest, look_for_args_file=False, return_remaining_strings=True
    )
    if extras:
        raise ValueError(unknown_arguments(extras, [o for action in parser._actions for o in action.option_strings]))
    model_args, data_args, training_args = outputs
    return model_args, data_args, training_args


# -------------------------------------------------------------------------------------------------------------- data
def load_pairs(data_args: DataArguments):
    """ChEBI-20 as a ``DatasetDict`` from ``data_args`` (optionally re-split by CID and truncated).

    Args:
        data_args (DataArguments): the data arguments.

    Returns:
        DatasetDict: the splits.
    """
    from datasets import Dataset, DatasetDict

    from .cli import load_data
    from .curriculum.difficulty import DIFFICULTY_COLUMNS
    from .data.chebi20 import resplit_by_cid

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


@dataclass(frozen=True)
class MoleculeFeatures:
    """Which molecule columns a backbone reads: graphs always, fingerprints and mol2vec ids when it uses them.

    Args:
        fingerprints (bool): add the Morgan count fingerprint columns.
        mol2vec_embeddings_path (str | None): the mol2vec table whose vocabulary ids ORMA's
            ``atom_features="mol2vec"`` reads from the ``mol2vec_index`` column.
    """

    fingerprints: bool = False
    mol2vec_embeddings_path: str | None = None

    @classmethod
    def for_model(cls, model: torch.nn.Module, fingerprints: bool = False) -> MoleculeFeatures:
        config = getattr(model, "config", None)
        mol2vec = None
        if getattr(config, "atom_features", None) == "mol2vec":
            mol2vec = getattr(config, "mol2vec_embeddings_path", None)
            if not mol2vec:
                raise ValueError(
                    "The model uses mol2vec atom features but its config has no `mol2vec_embeddings_path`; set it "
                    "(model_config) to the .npz the model's vocabulary comes from."
                )
        return cls(bool(fingerprints or getattr(config, "use_fingerprint", False)), mol2vec)

    @property
    def columns(self) -> list[str]:
        from .data.graphs import FINGERPRINT_COLUMNS, GRAPH_COLUMNS, MOL2VEC_COLUMN

        extra = [*(FINGERPRINT_COLUMNS if self.fingerprints else ()), *([MOL2VEC_COLUMN] if self.mol2vec else ())]
        return [*GRAPH_COLUMNS, *extra]

    @property
    def mol2vec(self) -> bool:
        return self.mol2vec_embeddings_path is not None

    def add(self, dataset, num_proc: int | None = None, desc: str | None = None):
        """``dataset`` with these columns; columns of an earlier featurization are recomputed, not duplicated."""
        from .data.graphs import FINGERPRINT_COLUMNS, GRAPH_COLUMNS, MOL2VEC_COLUMN, featurize_molecules

        if all(column in dataset.column_names for column in self.columns):
            return dataset
        stale = [c for c in (*GRAPH_COLUMNS, *FINGERPRINT_COLUMNS, MOL2VEC_COLUMN) if c in dataset.column_names]
        dataset = dataset.remove_columns(stale) if stale else dataset
        dataset = featurize_molecules(dataset, fingerprints=self.fingerprints, num_proc=num_proc, desc=desc)
        if self.mol2vec:
            from .models.orma import Mol2VecIndexer

            dataset = dataset.map(Mol2VecIndexer(self.mol2vec_embeddings_path), num_proc=num_proc, desc=desc)
        return dataset


def featurize(
    data, training_args: CurriculumTrainingArguments, features: MoleculeFeatures, num_proc: int | None = None
):
    """Adds the molecule columns to every split, rank 0 first so the other ranks read its ``datasets`` cache.

    Splits that already have the columns (e.g. ``class-hf prepare`` output) are left as they are.
    """
    from datasets import DatasetDict

    with training_args.main_process_first(desc="featurizing molecules"):
        return DatasetDict(
            {
                split: features.add(part, num_proc=num_proc, desc=f"Featurizing molecules ({split})")
                for split, part in data.items()
            }
        )


# ------------------------------------------------------------------------------------------------ tokenizer and model
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


def _default_text_encoder(backbone: str) -> str | None:
    from . import models

    # The config dataclass's field default (e.g. SciBERT for ORMA and AMAN), read without building a config.
    return getattr(getattr(models, BACKBONES[backbone][0]), "text_encoder_name_or_path", None)


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
            name = _default_text_encoder(backbone)
    if name is None:
        raise ValueError(
            "`text_config` builds a text encoder from scratch, so there is no pretrained tokenizer to load: set "
            "`tokenizer_name_or_path` (a Hub id or folder, or 'wordlevel' to build one from the training texts)."
        )
    return AutoTokenizer.from_pretrained(name, cache_dir=model_args.cache_dir)


def build_model(model_args: ModelArguments, backbone: str, tokenizer) -> torch.nn.Module:
    """The backbone: a loaded CLASS checkpoint (``AutoModel``) or a new model from its config.

    Call it after ``set_seed`` so that the seed also fixes the new model's initial weights.
    """
    from transformers import AutoModel

    from . import models  # registers the class-hf backbones with AutoModel

    config_name, model_name, model_type = BACKBONES[backbone]
    overrides = dict(model_args.model_config or {})
    if model_args.model_name_or_path:
        advice = (
            f"`model_config` {overrides} changes the architecture of the checkpoint "
            f"{model_args.model_name_or_path!r}; drop the overrides that do (a config made for a new model, e.g. a "
            "*_tiny.yaml, sets several)."
        )
        try:
            model, info = AutoModel.from_pretrained(
                model_args.model_name_or_path, cache_dir=model_args.cache_dir, output_loading_info=True, **overrides
            )
        except RuntimeError as error:  # weights of another shape
            raise ValueError(f"{advice} ({error})") from error
        changed = sorted(set(info.get("missing_keys", ())) | set(info.get("unexpected_keys", ())))
        if changed:
            raise ValueError(
                f"{advice} Weights missing or left over: {changed[:5]}{' ...' if len(changed) > 5 else ''}"
            )
        found = getattr(model.config, "model_type", None)
        if found != model_type:
            raise ValueError(
                f"{model_args.model_name_or_path!r} is a {found!r} checkpoint, but this recipe trains {model_type!r}. "
                f"Use the recipe of that backbone, or a {model_type!r} checkpoint."
            )
        logger.info("Loaded the %s checkpoint %s.", found, model_args.model_name_or_path)
        return model
    config_cls, model_cls = getattr(models, config_name), getattr(models, model_name)
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
    model = model_cls(config_cls(**overrides))
    logger.info("Built a new %s with %d parameters.", model_name, sum(p.numel() for p in model.parameters()))
    return model


# -------------------------------------------------------------------------------------------------------- evaluation
def _pair_columns(dataset, collator) -> list[str]:
    wanted = ["cid", *getattr(collator, "columns", [])]
    skip = {"sample_idx", "difficulty"}
    return [c for c in dict.fromkeys(wanted) if c in dataset.column_names and c not in skip]


def evaluate_test_pools(
    model: torch.nn.Module,
    data,
    split: str,
    collator,
    *,
    pool_molecules: str | None = None,
    batch_size: int = 64,
    chunk_size: int = 1024,
    num_proc: int | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Retrieval metrics of ``data[split]`` in both candidate pools.

    ``split``: the split's own molecules / texts. ``all``: also those of every other split (each CID once, the
    split's own CIDs not again) and the molecules of ``pool_molecules`` (a CID/SMILES table such as ChEBI-20's
    ``cid_split_smiles.tsv``; CIDs already present are skipped).

    Args:
        model (torch.nn.Module): the backbone (``encode_text``, ``encode_molecule``, ``score``).
        data (DatasetDict): featurized splits.
        split (str): the evaluated split.
        collator: the batch collator of the pairs.
        pool_molecules (str | None): further candidate molecules.
        batch_size (int): encoding batch size.
        chunk_size (int): queries scored at a time.
        num_proc (int | None): featurization processes for ``pool_molecules``.

    Returns:
        tuple[dict, dict]: ``{"split": metrics, "all": metrics}`` and the pool sizes.
    """
    import functools

    from datasets import concatenate_datasets

    from .data.chebi20 import load_chebi20_molecules
    from .data.graphs import FINGERPRINT_DIM, rows_to_batch
    from .evaluation.encoding import embed_molecules, embed_pairs
    from .evaluation.retrieval import retrieval_metrics

    queries = data[split]
    scorer = getattr(model, "score", None)
    text, mol = embed_pairs(model, queries, collator, batch_size=batch_size, show_progress=False)
    results = {"split": retrieval_metrics(text, mol, scorer=scorer, chunk_size=chunk_size)}
    known = {str(c) for c in queries["cid"]}
    others = [part.select_columns(_pair_columns(part, collator)) for name, part in data.items() if name != split]
    extra_text = extra_mol = None
    if others:
        other = concatenate_datasets(others)
        keep = []
        for i, cid in enumerate(other["cid"]):
            if str(cid) not in known:
                known.add(str(cid))
                keep.append(i)
        if keep:
            other = other.select(keep)
            extra_text, extra_mol = embed_pairs(model, other, collator, batch_size=batch_size, show_progress=False)
    if pool_molecules:
        pool = load_chebi20_molecules(pool_molecules)
        pool = pool.filter(lambda cid: str(cid) not in known, input_columns="cid")
        logger.info("%d further candidate molecules from %s.", len(pool), pool_molecules)
        if len(pool):
            pool = MoleculeFeatures.for_model(model).add(pool, num_proc=num_proc, desc="Featurizing the pool")
            fingerprint_dim = getattr(collator, "fingerprint_dim", FINGERPRINT_DIM)
            graphs_only = functools.partial(rows_to_batch, fingerprint_dim=fingerprint_dim)
            pool_mol = embed_molecules(model, pool, graphs_only, batch_size=batch_size, show_progress=False)
            extra_mol = pool_mol if extra_mol is None else torch.cat([extra_mol, pool_mol])
    sizes = {
        "num_queries": len(queries),
        "all_num_candidate_molecules": len(queries) + (0 if extra_mol is None else len(extra_mol)),
        "all_num_candidate_texts": len(queries) + (0 if extra_text is None else len(extra_text)),
    }
    if extra_mol is not None or extra_text is not None:
        results["all"] = retrieval_metrics(
            text, mol, scorer=scorer, extra_mol_embeds=extra_mol, extra_text_embeds=extra_text, chunk_size=chunk_size
        )
    else:
        logger.warning("No other split and no `pool_molecules`: the 'all' pool equals the 'split' pool; not reported.")
    return results, sizes


# ----------------------------------------------------------------------------------------------------------- outputs
class RecipeTrainer(CurriculumTrainer):
    """:class:`CurriculumTrainer` whose ``create_model_card`` writes the class-hf card of the run.

    ``Trainer.push_to_hub`` calls ``create_model_card`` before uploading ``output_dir``; the recipe sets
    :attr:`card_kwargs` (test metrics, dataset, command) once the run is evaluated.
    """

    card_kwargs: dict[str, Any] | None = None

    def create_model_card(self, **kwargs: Any) -> None:
        if self.card_kwargs is None:
            return super().create_model_card(**kwargs)
        if not self.is_world_process_zero():
            return None
        from .model_card import model_card_from_trainer

        card = model_card_from_trainer(self, **self.card_kwargs)
        card.save(os.path.join(self.args.output_dir, "README.md"))
        return None


def _save_scored_dataset(trainer: CurriculumTrainer, data, data_args: DataArguments, command: str) -> str | None:
    """Writes the training split with its difficulty columns (and the other splits) to ``scored_dataset/``."""
    from datasets import DatasetDict

    from .curriculum.difficulty import DIFFICULTY_COLUMN, difficulty_summary
    from .data.graphs import FINGERPRINT_COLUMNS, GRAPH_COLUMNS
    from .hub import save_scored_dataset, scored_dataset_card
    from .trainer import SAMPLE_IDX

    train = trainer.train_dataset
    if train is None or DIFFICULTY_COLUMN not in train.column_names:
        logger.info("The run used no difficulty column; no scored dataset is written.")
        return None
    drop = {SAMPLE_IDX, *GRAPH_COLUMNS, *FINGERPRINT_COLUMNS}

    def lean(part):
        return part.remove_columns([c for c in part.column_names if c in drop])

    splits = {name: lean(part) for name, part in data.items() if name != data_args.train_split}
    scored = DatasetDict({data_args.train_split: lean(train), **splits})
    info = {**(trainer.scoring_info or {"source": "precomputed column"}), **difficulty_summary(train)}
    model = trainer.accelerator.unwrap_model(trainer.model)
    scorer = None
    if info.get("source") == "warmup":
        scorer = f"a warm-up copy of the {getattr(model.config, 'model_type', type(model).__name__)} being trained"
    card = scored_dataset_card(
        info, split=data_args.train_split, command=command, source=data_args.dataset_name_or_path, scorer=scorer
    )
    return save_scored_dataset(scored, os.path.join(trainer.args.output_dir, SCORED_DATASET_DIR), card)


def _write_plots(trainer: CurriculumTrainer, backbone: str) -> list[str]:
    from .evaluation.plots import plot_curves, plot_sample_ratio
    from .model_card import BACKBONE_CITATIONS

    out = Path(trainer.args.output_dir)
    name = BACKBONE_CITATIONS.get(BACKBONES[backbone][2], (backbone,))[0]
    written = []
    history = trainer.curriculum_history
    if history:
        fractions = [float(r["fraction"]) for r in history]
        arms = {f"CLASS ({name})": fractions} if trainer.args.curriculum_enabled else {f"{name} (all data)": fractions}
        if trainer.args.curriculum_enabled:
            arms[f"{name} alone"] = [1.0] * len(fractions)
        written.append(plot_sample_ratio(arms, out / "sample_ratio.png", title="Training samples used per epoch"))
    logs = trainer.state.log_history
    loss = [(h["step"], h["loss"]) for h in logs if "loss" in h and "step" in h]
    if loss:
        written.append(
            plot_curves({"training loss": loss}, out / "loss.png", "optimizer step", "loss", "Training loss")
        )
    curves = {
        label: [(h["epoch"], h[key]) for h in logs if key in h and "epoch" in h]
        for label, key in (("text→molecule", "eval_t2m_mrr"), ("molecule→text", "eval_m2t_mrr"))
    }
    curves = {label: points for label, points in curves.items() if points}
    if curves:
        written.append(plot_curves(curves, out / "validation_mrr.png", "epoch", "MRR", "Validation MRR (pool: split)"))
    return [str(p) for p in written]


def _check_launch(training_args: CurriculumTrainingArguments) -> None:
    """Fails early on a multi-process CPU launch without ``use_cpu``, warns when fp16 would run in fp32 on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cpu = training_args.use_cpu or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if world > 1 and not torch.cuda.is_available() and not use_cpu:
        raise ValueError(
            f"{world} processes were launched on a machine without a GPU, but `use_cpu` is off: every process would "
            "train alone on all the data. Add `--use_cpu` (and never `accelerate launch --cpu` with "
            "--num_processes: it starts a single process)."
        )
    if training_args.fp16 and training_args.device.type == "cpu":
        logger.warning(
            "`fp16=True` on CPU silently runs in fp32 (no CPU autocast for float16); use `--bf16` for mixed precision "
            "on CPU."
        )


def _dataset_id(data_args: DataArguments) -> str:
    if data_args.dataset_id:
        return data_args.dataset_id
    source = data_args.dataset_name_or_path or ""
    return source if _HUB_ID.match(source) and not os.path.exists(source) else "chebi-20"


def _command(backbone: str, argv: Sequence[str]) -> str:
    """The run's command line, with the launcher told apart by the environment it sets."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "ACCELERATE_MIXED_PRECISION" in os.environ:  # set by `accelerate launch`
        launcher = "accelerate launch" + (f" --multi_gpu --num_processes {world}" if world > 1 else "")
    elif "TORCHELASTIC_RUN_ID" in os.environ:
        launcher = f"torchrun --nproc_per_node {world}"
    else:
        launcher = "python"
    return " ".join([launcher, f"recipes/{backbone}.py", *(shlex.quote(a) for a in argv)])


def _setup_logging(training_args: CurriculumTrainingArguments) -> None:
    import datasets
    import transformers

    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    logging.getLogger("class_hf").setLevel(level)
    process_level = training_args.get_process_log_level()
    transformers.utils.logging.set_verbosity(process_level)
    datasets.utils.logging.set_verbosity(max(process_level, logging.WARNING))


def train_and_evaluate(
    backbone: str,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: CurriculumTrainingArguments,
    command: str | None = None,
) -> dict[str, Any] | None:
    """Runs the recipe (see the module docstring) and returns its results on the main process (None elsewhere).

    Args:
        backbone (str): ``dual_encoder``, ``orma`` or ``aman``.
        model_args (ModelArguments): the model arguments.
        data_args (DataArguments): the data arguments.
        training_args (CurriculumTrainingArguments): the training arguments.
        command (str | None): the command line, recorded in the model and dataset cards.

    Returns:
        dict | None: what ``metrics.json`` holds.
    """
    from transformers import set_seed

    from .curriculum.difficulty import collator_for_model

    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}.")
    _check_launch(training_args)
    _setup_logging(training_args)
    start = time.perf_counter()
    # 1. Seed first: the new model's weights and the warm-up scorer follow it.
    set_seed(training_args.seed)
    # 2. Data (ChEBI-20 from a path or the Hub, optional re-split by CID).
    data = load_pairs(data_args)
    # 3. Tokenizer and model.
    train_texts = data[data_args.train_split]["description"]
    tokenizer = build_tokenizer(model_args, backbone, train_texts)
    model = build_model(model_args, backbone, tokenizer)
    # 4. Graph columns, rank 0 first (the others read the datasets cache).
    features = MoleculeFeatures.for_model(model, fingerprints=data_args.fingerprints)
    data = featurize(data, training_args, features, num_proc=data_args.preprocessing_num_workers)
    train_dataset = data[data_args.train_split]
    if training_args.difficulty_column in train_dataset.column_names:
        logger.info(
            "The training split carries the difficulty column `%s`: it is used as it is (no scoring).",
            training_args.difficulty_column,
        )
    eval_dataset = data.get(data_args.validation_split)
    if eval_dataset is None and training_args.eval_strategy != "no":
        raise ValueError(
            f"`eval_strategy={training_args.eval_strategy.value!r}` needs the {data_args.validation_split!r} split, "
            f"but the data has {list(data)}. Set `validation_split`, `--resplit 0.8 0.1 0.1`, or `--eval_strategy no`."
        )
    collator = collator_for_model(tokenizer, model, max_length=model_args.max_length)
    command = command or _command(backbone, sys.argv[1:])
    if model_args.evaluate_only:
        return _evaluate_only(backbone, model, data, collator, model_args, data_args, training_args, command, start)
    # 5. The CLASS trainer: scores the difficulty if needed (difficulty_source), then trains.
    trainer = RecipeTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
    )
    train_start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    train_wall = time.perf_counter() - train_start
    trainer.save_state()
    # 6. Test metrics in both pools, on the main process (every rank holds the same weights).
    results: dict[str, Any] | None = None
    model = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.is_world_process_zero():
        results = _test_results(backbone, model, data, collator, model_args, data_args, training_args, command)
        test, sizes = results["test"], results["test_pool_sizes"]
        results.update(
            {
                "train": train_result.metrics,
                "curriculum": trainer.curriculum_summary(),
                "curriculum_history": trainer.curriculum_history,
                "difficulty": trainer.scoring_info
                or {"source": "precomputed column" if trainer.difficulty is not None else None},
                "seconds": {"train_wall": train_wall},
            }
        )
        results["scored_dataset"] = (
            _save_scored_dataset(trainer, data, data_args, command) if data_args.save_scored_dataset else None
        )
        results["plots"] = _write_plots(trainer, backbone)
        if test:
            trainer.card_kwargs = {
                "test_metrics": test,
                "model_id": training_args.hub_model_id if training_args.push_to_hub else training_args.output_dir,
                "base_model": model_args.model_name_or_path
                or getattr(model.config, "text_encoder_name_or_path", None),
                "dataset_id": _dataset_id(data_args),
                "dataset_name": f"ChEBI-20 ({data_args.dataset_name_or_path})",
                "split": data_args.test_split,
                "num_test_pairs": sizes.get("num_queries"),
                "data_sizes": results["data_sizes"],
                "pool_molecules": data_args.pool_molecules,
                "recipe_command": command,
            }
        _write_metrics(results, training_args.output_dir, start)
    # 7. Checkpoint (+ tokenizer) and model card; pushed to the Hub with --push_to_hub. All ranks take part.
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="CLASS training run (class-hf recipe)")
    else:
        trainer.save_model()
        if trainer.card_kwargs is not None:
            trainer.create_model_card()
    trainer.accelerator.wait_for_everyone()
    return results


def _test_results(
    backbone: str,
    model: torch.nn.Module,
    data,
    collator,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: CurriculumTrainingArguments,
    command: str,
) -> dict[str, Any]:
    """What every run reports: the setting and the test metrics in both pools (empty without a test split)."""
    test, sizes = {}, {}
    if data_args.test_split in data:
        test, sizes = evaluate_test_pools(
            model,
            data,
            data_args.test_split,
            collator,
            pool_molecules=data_args.pool_molecules,
            batch_size=training_args.per_device_eval_batch_size,
            chunk_size=training_args.eval_chunk_size,
            num_proc=data_args.preprocessing_num_workers,
        )
    else:
        logger.warning("The data has no %r split: no test metrics.", data_args.test_split)
    return {
        "backbone": backbone,
        "model_type": getattr(model.config, "model_type", None),
        "model_name_or_path": model_args.model_name_or_path,
        "dataset": data_args.dataset_name_or_path,
        "data_sizes": {split: len(part) for split, part in data.items()},
        "test_split": data_args.test_split,
        "test": test,
        "test_pool_sizes": sizes,
        "num_processes": training_args.world_size,
        "mixed_precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "no",
        "command": command,
    }


def _write_metrics(results: dict[str, Any], output_dir: str, start: float) -> None:
    results.setdefault("seconds", {})["total"] = time.perf_counter() - start
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=_json_default)


def _evaluate_only(
    backbone: str,
    model: torch.nn.Module,
    data,
    collator,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: CurriculumTrainingArguments,
    command: str,
    start: float,
) -> dict[str, Any] | None:
    """``--evaluate_only``: the test metrics of ``model`` in both pools, on the main process, into metrics.json."""
    if training_args.process_index != 0:
        return None
    model = model.to(training_args.device)
    results = _test_results(backbone, model, data, collator, model_args, data_args, training_args, command)
    results["evaluate_only"] = True
    _write_metrics(results, training_args.output_dir, start)
    return results


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def format_summary(results: Mapping[str, Any]) -> str:
    """A few lines with the test MRR of both directions and pools, for the recipes to print."""
    lines = [f"{results['backbone']} ({results['mixed_precision']}, {results['num_processes']} process(es))"]
    for pool, metrics in results.get("test", {}).items():
        lines.append(
            f"test {pool:>5} pool: t2m MRR {metrics['t2m_mrr']:.4f}  Hits@1 {metrics['t2m_hits@1']:.4f} | "
            f"m2t MRR {metrics['m2t_mrr']:.4f}  Hits@1 {metrics['m2t_hits@1']:.4f}"
        )
    curriculum = results.get("curriculum") or {}
    if curriculum.get("full_sample_passes"):
        lines.append(
            f"sample passes {curriculum['samples_seen']} of {curriculum['full_sample_passes']}; "
            f"{results['seconds']['total']:.1f} s in all"
        )
    return "\n".join(lines)


def run_recipe(
    backbone: str,
    defaults: Mapping[str, Any] | None = None,
    argv: Sequence[str] | None = None,
    report: Callable[[str], Any] | None = None,
) -> dict[str, Any] | None:
    """Parses the arguments (``defaults`` < ``--config`` < command line) and runs :func:`train_and_evaluate`.

    Args:
        backbone (str): ``dual_encoder``, ``orma`` or ``aman``.
        defaults (Mapping | None): the recipe's default argument values, over :data:`COMMON_DEFAULTS`.
        argv (Sequence[str] | None): the arguments (``sys.argv[1:]`` when None).
        report (Callable | None): called on the main process with :func:`format_summary` of the results (the
            recipes pass ``print``; the library itself never prints).

    Returns:
        dict | None: the results on the main process (None elsewhere).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested("--debug" in argv)
    argv = [arg for arg in argv if arg != "--debug"]
    defaults = {**COMMON_DEFAULTS, "output_dir": f"runs/{backbone}", **(defaults or {})}
    # A user error (unknown YAML key, bad value, missing data) is one line and exit status 2; --debug: traceback.
    with user_errors(f"recipes/{backbone}.py", debug=debug):
        configure_cpu_threads()  # class-hf's CPU thread default, unless OMP_NUM_THREADS or torch's is set
        model_args, data_args, training_args = parse_recipe_args(argv, defaults)
        results = train_and_evaluate(backbone, model_args, data_args, training_args, command=_command(backbone, argv))
    if results is not None and report is not None:
        report(format_summary(results))
    _end_distributed()
    return results


def _end_distributed() -> None:
    """Tears down the process group a multi-process launch created, once every rank is done.

    Leaving it to interpreter exit intermittently aborted a gloo rank after a finished run ("terminate called
    without an active exception").
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
