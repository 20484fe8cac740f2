"""Frozen text-encoder features, computed once per description and stored as a dataset column.

When a backbone's text encoder is frozen, its output for a description never changes. :func:`add_text_features`
computes it once with the backbone itself (``model.text_features``) and stores it in a ``text_features`` column;
the collator then passes the column instead of token ids, and the backbone's ``encode_text`` skips the encoder.
Every epoch, every evaluation and every difficulty-scoring pass becomes a lookup: on a CPU the text side costs
nothing and only the molecule side and the projections train.

Two layouts, chosen by the backbone:

- ``pooled``: one ``float32`` vector per description (the dual encoder, AMAN: e.g. the masked means of the encoder's
  layers, concatenated);
- ``tokens``: a ``[tokens, dim]`` ``float16`` matrix per description, real tokens only (ORMA's token and phrase
  states); the collator pads a batch and rebuilds its attention mask.

The column is computed with ``Dataset.map`` under a fingerprint made of the dataset's and of the features' key
(:func:`text_features_key`: the backbone's :meth:`text_feature_key` (encoder, its configuration, the layers, the
pooling), the tokenizer (:func:`tokenizer_key`), the effective token limit and the text column), so ``datasets``
reloads it from its cache when the same data meets the same frozen encoder and tokenizer again, in this process or a
later one (an in-memory dataset's features are cached under ``<datasets cache>/class_hf/text_features/``).

The key is also recorded in the column's feature type (the ``id`` of its ``Value`` / ``Array2D``), which ``datasets``
keeps through ``select``, ``filter``, ``map`` of other columns, ``with_format`` and ``save_to_disk``:
:func:`holds_text_features_of` compares keys instead of encoding rows again. Splits whose columns were computed with
different keys cannot be concatenated (``datasets`` refuses to align their features).

Descriptions are encoded padded on the right whatever the tokenizer's ``padding_side``, so a row's features do not
depend on the rows it is batched with.

Backbone side (optional part of the contract): ``text_features(input_ids, attention_mask) -> Tensor`` (``[B, D]``
pooled, or ``[B, L, D]`` token states), ``text_feature_key() -> str``, ``text_feature_layout`` (``"pooled"`` or
``"tokens"``) and ``encode_text(..., text_features=...)``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Array2D, Dataset, DatasetDict, Features, Sequence, Value

from ..runtime import inference_threads

logger = logging.getLogger(__name__)

TEXT_FEATURES_COLUMN = "text_features"
_KEY_PREFIX = "class_hf.text_features:"  # the `id` of the column's feature type: this prefix, then the features' key


def supports_text_features(model: Any) -> bool:
    """Whether ``model`` can compute and consume cached text features."""
    return callable(getattr(model, "text_features", None)) and callable(getattr(model, "text_feature_key", None))


def _check_model(model: Any) -> str:
    if not supports_text_features(model):
        raise ValueError(
            f"{type(model).__name__} cannot cache its text features: it needs `text_features(input_ids, "
            "attention_mask)` and `text_feature_key()` (the class-hf backbones have them)."
        )
    if not getattr(model, "text_encoder_frozen", False):
        raise ValueError(
            f"Caching text features needs a frozen text encoder, but {type(model).__name__}'s text encoder trains "
            "(set `freeze_text_encoder=True` in its config, or do not cache the text features)."
        )
    layout = getattr(model, "text_feature_layout", "pooled")
    if layout not in ("pooled", "tokens"):
        raise ValueError(f"`text_feature_layout` must be 'pooled' or 'tokens', got {layout!r}.")
    return layout


def _position_limit(model: Any) -> int | None:
    text_config = getattr(getattr(model, "config", None), "text_config", None)
    return getattr(text_config, "max_position_embeddings", None)


def _effective_max_length(model: Any, tokenizer: Any, max_length: int) -> int:
    """``max_length`` lowered to the tokenizer's and the encoder's limits."""
    limits = (getattr(tokenizer, "model_max_length", None), _position_limit(model))
    return min([max_length, *(limit for limit in limits if isinstance(limit, int) and limit > 0)])


def _feature_type(layout: str, dim: int, key: str) -> Any:
    """The column's feature type, carrying ``key`` as its ``id`` (``datasets`` keeps the ``id`` of a ``List``'s
    ``Value`` and of an ``Array2D``, not that of the ``List`` itself)."""
    if layout == "pooled":
        return Sequence(Value("float32", id=_KEY_PREFIX + key), length=dim)
    return Array2D(shape=(None, dim), dtype="float16", id=_KEY_PREFIX + key)


def _encode(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.text_features`` of ``texts`` (on the CPU, float32) and their attention mask (bool), padded on the right
    whatever the tokenizer's ``padding_side``: the real tokens are the first ones and keep their positions."""
    encoded = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, padding_side="right", return_tensors="pt"
    )
    device = next(model.parameters()).device
    with torch.no_grad():
        features = model.text_features(encoded["input_ids"].to(device), encoded["attention_mask"].to(device))
    return features.float().cpu(), encoded["attention_mask"].bool()


def _encode_batch(batch: dict[str, list], *, model, tokenizer, text_column: str, max_length: int, layout: str):
    texts = [str(text) for text in batch[text_column]]  # a list also when the dataset is formatted (numpy arrays)
    features, mask = _encode(model, tokenizer, texts, max_length)
    if layout == "pooled":
        return {TEXT_FEATURES_COLUMN: features.numpy()}
    return {TEXT_FEATURES_COLUMN: [f[m].half().numpy() for f, m in zip(features, mask, strict=True)]}


def encoder_feature_key(encoder: Any, config: Any, settings: dict[str, Any]) -> str:
    """A 16-hex-digit key of the features an encoder computes: its configuration (``None`` to leave out), the
    feature ``settings`` (layout, layers, pooling, ...) and its weights. Equal keys mean equal features."""
    import json

    digest = hashlib.sha256()
    if config is not None:
        digest.update(config.to_json_string(use_diff=False).encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def tokenizer_key(tokenizer: Any) -> str:
    """A 16-hex-digit key of how ``tokenizer`` turns texts into token ids: equal keys mean equal ids.

    A fast tokenizer is keyed by its ``tokenizers`` state (``backend_tokenizer.to_str()``: vocabulary, normalizer,
    pre-tokenizer, post-processor, added tokens) without the truncation and padding settings each call overwrites;
    any other tokenizer by ``datasets``' hash of the object (or, when it cannot be pickled, by its vocabulary). Its
    ``truncation_side`` is added. Its ``padding_side`` is not: the features are always computed padded on the right.

    Args:
        tokenizer: a Hugging Face tokenizer.

    Returns:
        str: the key.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)  # set by the last call (its max_length), not a property of the tokenizer
        state.pop("padding", None)
        identity = json.dumps(state, sort_keys=True)
    else:
        from datasets.fingerprint import Hasher

        try:
            identity = Hasher.hash(tokenizer)
        except Exception:  # an object dill cannot pickle: its vocabulary
            identity = json.dumps(sorted(tokenizer.get_vocab().items()))
    parts = [identity, str(getattr(tokenizer, "truncation_side", "right"))]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def text_features_key(model: Any, tokenizer: Any, max_length: int, text_column: str) -> str:
    """A 16-hex-digit key of the text features ``model`` computes from ``text_column`` tokenized by ``tokenizer``.

    Made of ``model.text_feature_key()``, :func:`tokenizer_key`, the effective token limit (``max_length`` lowered to
    the tokenizer's and the encoder's limits) and ``text_column``; :func:`add_text_features` records it with the
    column, and :func:`holds_text_features_of` compares it.

    Args:
        model: a backbone with ``text_feature_key()``.
        tokenizer: the tokenizer the texts are encoded with.
        max_length (int): the token limit asked for.
        text_column (str): the column holding the descriptions.

    Returns:
        str: the key.
    """
    max_length = _effective_max_length(model, tokenizer, max_length)
    parts = [model.text_feature_key(), tokenizer_key(tokenizer), str(max_length), text_column]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def recorded_text_features_key(dataset: Dataset) -> str | None:
    """The :func:`text_features_key` recorded with ``dataset``'s ``text_features`` column by
    :func:`add_text_features`; None when the dataset has no such column or the column was made elsewhere."""
    feature = dataset.features.get(TEXT_FEATURES_COLUMN)
    marker = getattr(feature, "id", None) or getattr(getattr(feature, "feature", None), "id", None)
    if isinstance(marker, str) and marker.startswith(_KEY_PREFIX):
        return marker[len(_KEY_PREFIX) :]
    return None


def text_features_fingerprint(dataset: Dataset, model: Any, tokenizer: Any, max_length: int, text_column: str) -> str:
    """The fingerprint of ``dataset`` with the text features of ``model`` added: the dataset's own fingerprint and
    :func:`text_features_key` (the backbone, the tokenizer, the effective token limit and the text column)."""
    return _fingerprint_with(dataset, text_features_key(model, tokenizer, max_length, text_column))


def _fingerprint_with(dataset: Dataset, key: str) -> str:
    # `_fingerprint` is how `datasets` names a dataset's content; every transform derives the next one from it.
    parts = [getattr(dataset, "_fingerprint", None) or "", key]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def _check_texts(dataset: Dataset, texts: list[Any], text_column: str) -> None:
    """A missing (None), empty or blank description is an error naming the first such row (and its CID)."""
    bad = [row for row, text in enumerate(texts) if text is None or not str(text).strip()]
    if not bad:
        return
    cid = f" (cid {dataset[bad[0]]['cid']!r})" if "cid" in dataset.column_names else ""
    more = f"; {len(bad) - 1} more row(s) too" if len(bad) > 1 else ""
    what = "missing (None)" if texts[bad[0]] is None else f"empty or blank ({texts[bad[0]]!r})"
    raise ValueError(
        f"Row {bad[0]}{cid} of `{text_column}` is {what}{more}: every row needs a description to encode. Drop or "
        "fill these rows first (load_chebi20's validation drops them)."
    )


def _cache_file(dataset: Dataset, fingerprint: str) -> str | None:
    """Where the features of an in-memory dataset are cached: ``<datasets cache>/class_hf/text_features/``.

    A dataset read from Arrow files gets its cache file next to them from ``datasets`` itself; an in-memory one (e.g.
    ChEBI-20 read from CSV) would have none, and every run would encode its texts again.
    """
    import datasets

    if dataset.cache_files or not datasets.is_caching_enabled():
        return None
    folder = Path(datasets.config.HF_DATASETS_CACHE) / "class_hf" / "text_features"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{fingerprint}.arrow")


def add_text_features(
    dataset: Dataset | DatasetDict,
    model: Any,
    tokenizer: Any,
    *,
    max_length: int = 256,
    text_column: str = "description",
    batch_size: int = 64,
    desc: str | None = "Caching frozen text features",
) -> Dataset | DatasetDict:
    """Adds the ``text_features`` column: the frozen part of ``model``'s text tower, once per row.

    Args:
        dataset (Dataset | DatasetDict): rows with a text column (a ``DatasetDict`` is done split by split).
        model: a backbone with a frozen text encoder and ``text_features`` / ``text_feature_key`` (see the module
            docstring); it is used in eval mode and left in the mode it was in.
        tokenizer: the backbone's tokenizer.
        max_length (int): token limit (the collator's ``max_length`` when training on token ids); lowered to the
            tokenizer's and the encoder's limits.
        text_column (str): the column holding the descriptions.
        batch_size (int): descriptions per forward pass.
        desc (str | None): progress-bar description (None: no bar).

    Returns:
        Dataset | DatasetDict: ``dataset`` plus ``text_features`` (an existing column is replaced), its feature type
        recording the :func:`text_features_key` it was computed with.

    Raises:
        ValueError: a model without the methods, with a text encoder that trains, a missing text column, or a
            description that is missing (None), empty or blank (the first such row is named, with its ``cid``).
    """
    layout = _check_model(model)
    key = text_features_key(model, tokenizer, max_length, text_column)  # hashes the encoder's weights: once per call
    kwargs = {"max_length": max_length, "text_column": text_column, "batch_size": batch_size, "layout": layout}
    if isinstance(dataset, DatasetDict):
        return DatasetDict(
            {
                split: _add_text_features(part, model, tokenizer, key, **kwargs, desc=desc and f"{desc} ({split})")
                for split, part in dataset.items()
            }
        )
    return _add_text_features(dataset, model, tokenizer, key, **kwargs, desc=desc)


def _add_text_features(
    dataset: Dataset,
    model: Any,
    tokenizer: Any,
    key: str,
    *,
    max_length: int,
    text_column: str,
    batch_size: int,
    layout: str,
    desc: str | None,
) -> Dataset:
    """:func:`add_text_features` of one split, whose :func:`text_features_key` is ``key`` (``model`` checked, its
    ``text_feature_layout`` is ``layout``)."""
    max_length = _effective_max_length(model, tokenizer, max_length)
    if text_column not in dataset.column_names:
        raise ValueError(
            f"`text_column` {text_column!r} is not a column of the dataset (columns: {dataset.column_names})."
        )
    texts = list(dataset[text_column])
    _check_texts(dataset, texts, text_column)
    if TEXT_FEATURES_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(TEXT_FEATURES_COLUMN)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probe = tokenizer(["probe"], return_tensors="pt")
            device = next(model.parameters()).device
            dim = int(model.text_features(probe["input_ids"].to(device), probe["attention_mask"].to(device)).shape[-1])
        features = dataset.features.copy()
        features[TEXT_FEATURES_COLUMN] = _feature_type(layout, dim, key)
        # Encoded shortest first, so that a batch pads to similar lengths (several times faster than in row order),
        # then put back in row order.
        order = np.argsort([len(str(text)) for text in texts], kind="stable")
        fingerprint = _fingerprint_with(dataset, key)  # = text_features_fingerprint(...)
        cache_file = _cache_file(dataset, fingerprint)
        if cache_file is not None and os.path.exists(cache_file):
            logger.info("Frozen text features of %d descriptions reloaded from %s.", len(dataset), cache_file)
        elif desc:
            logger.info(
                "Caching the frozen text features of %d descriptions (once: later runs reload them).", len(dataset)
            )
        with inference_threads():
            encoded = dataset.select(order, new_fingerprint=f"{fingerprint}-by-length").map(
                _encode_batch,
                batched=True,
                batch_size=batch_size,
                fn_kwargs={
                    "model": model,
                    "tokenizer": tokenizer,
                    "text_column": text_column,
                    "max_length": max_length,
                    "layout": layout,
                },
                features=Features(features),
                new_fingerprint=f"{fingerprint}-encoded",
                cache_file_name=cache_file,
                desc=desc,
            )
        restored = encoded.select(np.argsort(order, kind="stable"), new_fingerprint=fingerprint)
        return as_numpy_features(restored)
    finally:
        model.train(was_training)


def holds_text_features_of(
    dataset: Dataset, model: Any, tokenizer: Any, *, max_length: int = 256, text_column: str = "description"
) -> bool:
    """Whether ``dataset`` already holds the text features ``model`` computes from ``text_column`` with ``tokenizer``
    and ``max_length``.

    A column made by :func:`add_text_features` records its :func:`text_features_key`, and the keys are compared
    (nothing is encoded). A column made elsewhere (no key) is checked on two rows, the first one and the one with the
    longest text (where a different token limit shows): their stored features must match what ``model`` computes
    (one forward pass).
    """
    return _holds_text_features(
        dataset,
        model,
        tokenizer,
        lambda: text_features_key(model, tokenizer, max_length, text_column),
        max_length,
        text_column,
    )


def _holds_text_features(
    dataset: Dataset, model: Any, tokenizer: Any, key: Callable[[], str], max_length: int, text_column: str
) -> bool:
    """:func:`holds_text_features_of`, with ``key()`` giving the :func:`text_features_key` (called only when the
    column records one)."""
    if TEXT_FEATURES_COLUMN not in dataset.column_names or len(dataset) == 0 or not supports_text_features(model):
        return False
    recorded = recorded_text_features_key(dataset)
    if recorded is not None:
        return recorded == key()
    if text_column not in dataset.column_names:
        return False
    max_length = _effective_max_length(model, tokenizer, max_length)
    texts = [str(text) for text in dataset[text_column]]
    rows = sorted({0, int(np.argmax([len(text) for text in texts]))})
    was_training = model.training
    model.eval()
    try:
        fresh, mask = _encode(model, tokenizer, [texts[row] for row in rows], max_length)
    finally:
        model.train(was_training)
    for i, row in enumerate(rows):
        stored = torch.as_tensor(np.asarray(dataset[row][TEXT_FEATURES_COLUMN], dtype=np.float32))
        expected = fresh[i][mask[i]] if fresh.dim() == 3 else fresh[i]  # token states: the real tokens only
        if expected.shape != stored.shape or not torch.allclose(expected, stored, atol=2e-3, rtol=1e-2):
            return False
    return True


def as_numpy_features(dataset: Dataset) -> Dataset:
    """``dataset`` reading its ``text_features`` as numpy arrays (the other columns as they are): rows of token states
    then reach the collator without a Python float per value (about 4x faster to fetch and collate).

    The rows are first written in order (``flatten_indices``): ``datasets`` cannot add a column to a formatted
    dataset that still reads its rows through an index mapping (e.g. after ``select``).
    """
    plain = dataset.with_format(None).flatten_indices()
    return plain.with_format("numpy", columns=[TEXT_FEATURES_COLUMN], output_all_columns=True)


def cache_text_features(model: Any, tokenizer: Any, collator: Any, *datasets: Any, batch_size: int = 64) -> list[Any]:
    """:func:`add_text_features` for each of ``datasets`` (a ``Dataset``, a dict of them, or None), with the token
    limit and text column of ``collator`` (a ``MoleculeTextCollator``) and its tokenizer when ``tokenizer`` is None.

    A dataset that already holds ``model``'s features (:func:`holds_text_features_of`, e.g. cached by a recipe for
    every split up front) is returned as it is.

    Returns:
        list: the datasets in the same order, each with the ``text_features`` column.
    """
    layout = _check_model(model)
    tokenizer = tokenizer if tokenizer is not None else getattr(collator, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(
            "Caching text features needs the tokenizer: pass `processing_class` (or a collator with one)."
        )
    kwargs = {
        "max_length": getattr(collator, "max_length", 256),
        "text_column": getattr(collator, "text_column", "description"),
        "batch_size": batch_size,
    }
    key = functools.cache(lambda: text_features_key(model, tokenizer, kwargs["max_length"], kwargs["text_column"]))

    def add(part: Dataset) -> Dataset:
        if _holds_text_features(part, model, tokenizer, key, kwargs["max_length"], kwargs["text_column"]):
            return part
        return _add_text_features(
            part, model, tokenizer, key(), **kwargs, layout=layout, desc="Caching frozen text features"
        )

    out = []
    for dataset in datasets:
        if isinstance(dataset, dict):
            dataset = type(dataset)({name: add(part) for name, part in dataset.items()})
        elif dataset is not None:
            dataset = add(dataset)
        out.append(dataset)
    return out


def collate_text_features(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """``text_features`` of a batch: ``[B, D]`` (pooled), or ``[B, L, D]`` padded plus its ``attention_mask``."""
    values = [row[TEXT_FEATURES_COLUMN] for row in rows]
    first = np.asarray(values[0])
    if first.ndim == 1:
        return {TEXT_FEATURES_COLUMN: torch.as_tensor(np.asarray(values, dtype=np.float32))}
    # padded in the stored dtype (float16 for token states), then widened in one vectorised pass
    arrays = [np.asarray(v) for v in values]
    lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
    padded = np.zeros((len(arrays), int(lengths.max()), first.shape[-1]), dtype=np.result_type(*arrays))
    for i, array in enumerate(arrays):
        padded[i, : array.shape[0]] = array
    mask = torch.arange(padded.shape[1]) < torch.from_numpy(lengths)[:, None]
    return {TEXT_FEATURES_COLUMN: torch.from_numpy(padded).float(), "attention_mask": mask.long()}


def text_inputs(batch: dict[str, Any], device: Any = None) -> dict[str, torch.Tensor]:
    """The keyword arguments of a backbone's ``encode_text`` from a collated batch, moved to ``device``:
    ``input_ids`` and ``attention_mask``, or the cached ``text_features`` (and their ``attention_mask``).

    Raises:
        KeyError: when the batch holds neither token ids nor text features.
    """
    if TEXT_FEATURES_COLUMN in batch:
        keys = [TEXT_FEATURES_COLUMN] + (["attention_mask"] if "attention_mask" in batch else [])
    elif "input_ids" in batch:
        keys = ["input_ids", "attention_mask"]
    else:
        raise KeyError(f"The batch holds neither `input_ids` nor `{TEXT_FEATURES_COLUMN}` (it has {sorted(batch)}).")
    return {key: batch[key].to(device) if device is not None else batch[key] for key in keys}


__all__ = [
    "TEXT_FEATURES_COLUMN",
    "add_text_features",
    "as_numpy_features",
    "cache_text_features",
    "collate_text_features",
    "holds_text_features_of",
    "recorded_text_features_key",
    "supports_text_features",
    "text_features_fingerprint",
    "text_features_key",
    "text_inputs",
    "tokenizer_key",
]
