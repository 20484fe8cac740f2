"""The recipes' arguments: :class:`ModelArguments`, :class:`DataArguments` and their parsing.

``parse_recipe_args`` reads three layers, each overriding the one before: the recipe's defaults (the backbone's
published settings, over :data:`COMMON_DEFAULTS`), then ``--config <file>.yaml``, then the command line; the
training arguments are :class:`~class_hf.training_args.CurriculumTrainingArguments`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from ..training_args import CurriculumTrainingArguments
from ..user_errors import unknown_arguments

__all__ = [
    "COMMON_DEFAULTS",
    "WORD_LEVEL",
    "DataArguments",
    "ModelArguments",
    "make_parser",
    "parse_recipe_args",
]

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
        linear_anchor (bool): also fit the frozen-feature linear anchor (:mod:`class_hf.recipe.anchor`) on the same
            split and report its test metrics next to the model's (``metrics.json``, the summary, the model card).
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
    linear_anchor: bool = field(
        default=False,
        metadata={
            "help": "Also fit the frozen-feature linear anchor (frozen text features + Morgan fingerprints, linear "
            "maps) on the same split and report its test metrics next to the model's."
        },
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
    # The last outputs are the namespace of `--config` itself (already read above) and the unknown options.
    *outputs, _, extras = parser.parse_args_into_dataclasses(
        args=rest, look_for_args_file=False, return_remaining_strings=True
    )
    if extras:
        raise ValueError(unknown_arguments(extras, [o for action in parser._actions for o in action.option_strings]))
    model_args, data_args, training_args = outputs
    return model_args, data_args, training_args
