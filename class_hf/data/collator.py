"""Batch collator: dataset rows -> tokenized text + a PyG ``Batch`` of molecule graphs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .graphs import BATCH_COLUMNS, FINGERPRINT_COLUMNS, FINGERPRINT_DIM, MOL2VEC_COLUMN, rows_to_batch
from .text_features import TEXT_FEATURES_COLUMN, collate_text_features

logger = logging.getLogger(__name__)

OPTIONAL_COLUMNS: tuple[str, ...] = ("sample_idx", "difficulty")


@dataclass
class MoleculeTextCollator:
    """Collates featurized text-molecule rows into model inputs.

    Rows come from a dataset passed through :func:`~class_hf.data.graphs.featurize_molecules`. The returned dict
    holds:

    - ``input_ids``, ``attention_mask``: ``LongTensor [B, L]`` from the tokenizer (any Hugging Face tokenizer;
      truncated to ``max_length``); or, when the rows hold cached frozen text features
      (:func:`~class_hf.data.text_features.add_text_features`), ``text_features`` (``[B, D]``, or ``[B, L, D]`` with
      its ``attention_mask``) instead;
    - ``graph``: a :class:`torch_geometric.data.Batch` of :class:`~class_hf.data.graphs.MoleculeGraph` with ``x``
      ``[N, 9]``, ``edge_index``, ``edge_attr`` ``[E, 3]``, ``atom2motif`` ``[N]`` (offset so that it indexes the
      batch's motifs), ``num_motifs`` ``[B]``, ``batch`` ``[N]``, and ``fp`` float ``[B, fingerprint_dim]`` (``log1p``
      Morgan counts) when the rows have ``fp_index`` / ``fp_count``;
    - ``sample_idx`` (``LongTensor [B]``) and ``difficulty`` (``FloatTensor [B]``) when the rows have those columns.

    Device placement: a PyG ``Batch`` is not a ``Mapping``, so ``Trainer._prepare_input`` does not move it; models
    move ``graph`` themselves (``graph.to(self.device)``). Accelerate's ``send_to_device`` does move it, and the
    model's ``.to`` is then a no-op.

    Args:
        tokenizer: a Hugging Face tokenizer (``PreTrainedTokenizerBase``) with a padding token.
        max_length (int, optional): maximum number of tokens; longer texts are truncated. (default: ``256``)
        text_column (str, optional): the column holding the text. (default: ``"description"``)
        padding (str | bool, optional): the tokenizer's ``padding`` argument (``"longest"``, ``"max_length"``).
            (default: ``"longest"``)
        fingerprint_dim (int, optional): size of ``graph.fp``. (default: ``2048``)

    Example:
        >>> collator = MoleculeTextCollator(tokenizer)
        >>> batch = collator([dataset[0], dataset[1]])
        >>> batch["graph"].num_graphs
        2
    """

    tokenizer: Any
    max_length: int = 256
    text_column: str = "description"
    padding: str | bool = "longest"
    fingerprint_dim: int = FINGERPRINT_DIM

    def __post_init__(self) -> None:
        if self.max_length < 1:
            raise ValueError(f"`max_length` must be a positive number of tokens, got {self.max_length}.")
        if getattr(self.tokenizer, "pad_token", "") is None:
            raise ValueError(
                "The tokenizer has no padding token; set one (e.g. `tokenizer.pad_token = tokenizer.eos_token`) "
                "before building the collator."
            )

    @property
    def columns(self) -> list[str]:
        """Dataset columns the collator reads; a trainer should keep exactly these.

        The text column (or cached ``text_features``) and the graph columns (``num_nodes`` aside: ``x`` implies it)
        are required; the fingerprint columns, ``mol2vec_index``, ``sample_idx`` and ``difficulty`` are read when
        present.
        """
        return [
            self.text_column,
            TEXT_FEATURES_COLUMN,
            *BATCH_COLUMNS,
            *FINGERPRINT_COLUMNS,
            MOL2VEC_COLUMN,
            *OPTIONAL_COLUMNS,
        ]

    def _texts(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        texts = []
        for position, row in enumerate(rows):
            if self.text_column not in row:
                raise ValueError(
                    f"Row {position} of the batch has no {self.text_column!r} column (it has {sorted(row)}). Set "
                    "`text_column` to the column holding the text, and keep `collator.columns` in the dataset."
                )
            text = row[self.text_column]
            if not isinstance(text, str) or not text.strip():
                raise ValueError(
                    f"Row {position} of the batch has an empty {self.text_column!r} ({text!r}); every molecule needs "
                    "a description. Drop or fix this row (load_chebi20 validates this)."
                )
            texts.append(text)
        return texts

    @staticmethod
    def _optional(rows: Sequence[Mapping[str, Any]], column: str, dtype: torch.dtype) -> torch.Tensor | None:
        present = [column in row for row in rows]
        if not any(present):
            return None
        if not all(present):
            raise ValueError(
                f"Row {present.index(False)} of the batch has no {column!r} column while other rows have it; "
                "every row of a dataset must have the same columns."
            )
        missing = [row[column] is None for row in rows]
        if all(missing):
            # a null column means "not computed for this split" (e.g. the evaluation splits of a scored dataset
            # read back from parquet or the Hub, where only train has difficulty): the batch simply lacks it
            return None
        if any(missing):
            raise ValueError(
                f"Row {missing.index(True)} of the batch has no value in {column!r} while other rows have one; "
                f"fill the column for every row (e.g. re-score the split) or drop it with `remove_columns`."
            )
        return torch.as_tensor(
            [float(row[column]) if dtype.is_floating_point else int(row[column]) for row in rows], dtype=dtype
        )

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Collates ``rows`` (dicts as returned by ``dataset[i]``).

        Raises:
            ValueError: if ``rows`` is empty, a row lacks a column the collator reads, or a text is empty (the
                message names the column and the row's position in the batch).
        """
        if len(rows) == 0:
            raise ValueError("Cannot collate an empty list of rows.")
        if TEXT_FEATURES_COLUMN in rows[0]:  # frozen text features cached in the dataset: no tokenization
            batch: dict[str, Any] = collate_text_features(rows)
        else:
            encoded = self.tokenizer(
                self._texts(rows),
                padding=self.padding,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            batch = {"input_ids": encoded["input_ids"].long(), "attention_mask": encoded["attention_mask"].long()}
        batch["graph"] = rows_to_batch(rows, fingerprint_dim=self.fingerprint_dim)
        sample_idx = self._optional(rows, "sample_idx", torch.long)
        if sample_idx is not None:
            batch["sample_idx"] = sample_idx
        difficulty = self._optional(rows, "difficulty", torch.float32)
        if difficulty is not None:
            batch["difficulty"] = difficulty
        return batch
