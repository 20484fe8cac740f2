"""Encode texts and molecules once with a backbone, for retrieval evaluation, difficulty scoring and search indexes.

Any model that follows the backbone contract works: ``model.encode_text(input_ids, attention_mask) -> [B, D]`` and
``model.encode_molecule(graph) -> [B, D]``. Encoding runs under ``torch.no_grad()`` with every module in eval mode
(dropout off); each module's previous train/eval flag is restored afterwards, whatever it was. Embeddings come back
as float32 CPU tensors in the order of the input rows.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.text_features import TEXT_FEATURES_COLUMN, text_inputs

logger = logging.getLogger(__name__)

__all__ = ["embed_molecules", "embed_pairs", "embed_texts"]

PAIR_KEYS = ("input_ids", "attention_mask", "graph")


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put every module in eval mode, then restore each module's own flag (not just the top-level one)."""
    previous = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in previous:
            module.training = training


def _resolve_device(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    model_device = getattr(model, "device", None)
    if isinstance(model_device, torch.device):
        return model_device
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _row_batches(rows: Any, batch_size: int) -> Iterator[list[dict]]:
    """Consecutive lists of row dicts from a ``datasets.Dataset`` (read a slice at a time) or a sequence of dicts."""
    import datasets

    for start in range(0, len(rows), batch_size):
        stop = min(start + batch_size, len(rows))
        if isinstance(rows, datasets.Dataset):
            columns = rows[start:stop]
            yield [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        else:
            yield [rows[i] for i in range(start, stop)]


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")


def _collate(collator: Callable[[list[dict]], Mapping], rows: list[dict], keys: Sequence[str]) -> Mapping:
    batch = collator(rows)
    if TEXT_FEATURES_COLUMN in batch:  # cached frozen text features stand for the token ids
        keys = [TEXT_FEATURES_COLUMN if key == "input_ids" else key for key in keys if key != "attention_mask"]
    missing = [key for key in keys if key not in batch]
    if missing:
        raise KeyError(
            f"The collator returned keys {sorted(batch)}, but encoding needs {list(keys)} (missing {missing}); "
            "use `MoleculeTextCollator` or a collator that returns them."
        )
    return batch


def _encode(
    model: torch.nn.Module,
    batches: Iterable[tuple[int, Callable[[], dict[str, torch.Tensor]]]],
    num_rows: int,
    desc: str,
    show_progress: bool,
) -> dict[str, torch.Tensor]:
    """Run ``encode()`` for each ``(batch_rows, encode)`` under no_grad/eval mode and concatenate the outputs.

    Every output must be ``[batch_rows, dim]``: a collator or encoder that drops or adds rows is an error, never a
    silent misalignment of texts and molecules.
    """
    outputs: dict[str, list[torch.Tensor]] = {}
    with (
        _eval_mode(model),
        torch.no_grad(),
        tqdm(total=num_rows, desc=desc, unit="row", disable=not show_progress) as bar,
    ):
        start = 0
        for batch_rows, encode in batches:
            for name, embeds in encode().items():
                if not isinstance(embeds, torch.Tensor) or embeds.ndim != 2 or embeds.shape[0] != batch_rows:
                    shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
                    raise ValueError(
                        f"`model.{name}` returned {shape} for rows {start}..{start + batch_rows - 1} "
                        f"({batch_rows} rows); it must return one embedding per row, shape [{batch_rows}, dim]."
                    )
                outputs.setdefault(name, []).append(embeds.detach().float().cpu())
            start += batch_rows
            bar.update(batch_rows)
    return {name: torch.cat(parts) for name, parts in outputs.items()}


def _check_not_empty(rows: Any, name: str) -> int:
    n = len(rows)
    if n == 0:
        raise ValueError(f"`{name}` is empty: there is nothing to encode.")
    return n


def _embed_rows(
    model: torch.nn.Module,
    rows: Any,
    name: str,
    collator: Callable[[list[dict]], Mapping],
    keys: Sequence[str],
    encode_batch: Callable[[Mapping], dict[str, torch.Tensor]],
    batch_size: int,
    what: str,
    show_progress: bool,
) -> dict[str, torch.Tensor]:
    """Collate ``rows`` ``batch_size`` at a time and encode each collated batch with ``encode_batch``."""
    _check_batch_size(batch_size)
    num_rows = _check_not_empty(rows, name)

    def batches() -> Iterator[tuple[int, Callable[[], dict[str, torch.Tensor]]]]:
        for chunk in _row_batches(rows, batch_size):
            yield len(chunk), functools.partial(lambda c: encode_batch(_collate(collator, c, keys)), chunk)

    out = _encode(model, batches(), num_rows, f"Encoding {what}", show_progress)
    logger.debug("Encoded %d %s.", num_rows, what)
    return out


def embed_pairs(
    model: torch.nn.Module,
    dataset: Any,
    collator: Callable[[list[dict]], Mapping],
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    show_progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every text and molecule of a paired dataset, row ``i`` of both outputs being pair ``i``.

    Args:
        model: a backbone with ``encode_text(input_ids, attention_mask)`` and ``encode_molecule(graph)``.
        dataset: a ``datasets.Dataset`` (read a slice at a time) or any sequence of row dicts, with the columns the
            collator reads (for ``MoleculeTextCollator``: the text column and the graph columns of
            ``featurize_molecules``).
        collator: ``collator(rows) -> {"input_ids", "attention_mask", "graph", ...}``, e.g. ``MoleculeTextCollator``.
        batch_size: rows per forward pass.
        device: where batches are moved (the model must already be there); defaults to the model's device.
        show_progress: show a tqdm progress bar.

    Returns:
        ``(text_embeds [N, D_t], mol_embeds [N, D_m])``: float32 CPU tensors.

    Raises:
        ValueError: the dataset is empty, or the collator/model returned a different number of rows than it was given.
        KeyError: the collator's batch lacks one of ``input_ids``, ``attention_mask``, ``graph``.
    """
    device = _resolve_device(model, device)

    def encode_batch(batch: Mapping) -> dict[str, torch.Tensor]:
        return {
            "encode_text": model.encode_text(**text_inputs(batch, device)),
            "encode_molecule": model.encode_molecule(batch["graph"].to(device)),
        }

    out = _embed_rows(model, dataset, "dataset", collator, PAIR_KEYS, encode_batch, batch_size, "pairs", show_progress)
    return out["encode_text"], out["encode_molecule"]


def embed_texts(
    model: torch.nn.Module,
    texts: Sequence[str],
    tokenizer: Any,
    *,
    batch_size: int = 64,
    max_length: int = 256,
    device: str | torch.device | None = None,
    show_progress: bool = True,
) -> torch.Tensor:
    """Encode free texts (e.g. search queries) with ``model.encode_text``.

    Args:
        model: a backbone with ``encode_text(input_ids, attention_mask)``.
        texts: the texts, in order.
        tokenizer: the Hugging Face tokenizer the model was trained with.
        batch_size: texts per forward pass.
        max_length: truncation length in tokens; use the collator's ``max_length`` so that texts are cut the same
            way as in training.
        device: where batches are moved; defaults to the model's device.
        show_progress: show a tqdm progress bar.

    Returns:
        ``[len(texts), D]`` float32 CPU tensor.
    """
    if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
        raise TypeError("`texts` must be a sequence of strings (wrap a single query in a list).")
    _check_batch_size(batch_size)
    num_rows = _check_not_empty(texts, "texts")
    device = _resolve_device(model, device)

    def batches() -> Iterator[tuple[int, Callable[[], dict[str, torch.Tensor]]]]:
        for start in range(0, num_rows, batch_size):
            chunk = list(texts[start : start + batch_size])

            def encode(chunk: list[str] = chunk) -> dict[str, torch.Tensor]:
                tokens = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                return {
                    "encode_text": model.encode_text(
                        tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
                    )
                }

            yield len(chunk), encode

    return _encode(model, batches(), num_rows, "Encoding texts", show_progress)["encode_text"]


def embed_molecules(
    model: torch.nn.Module,
    rows: Any,
    collator: Callable[[list[dict]], Any] | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    show_progress: bool = True,
) -> torch.Tensor:
    """Encode molecules (e.g. a search index) with ``model.encode_molecule``.

    Args:
        model: a backbone with ``encode_molecule(graph)``.
        rows: a ``datasets.Dataset`` or a sequence of row dicts with the graph columns of ``featurize_molecules``
            (and whatever else ``collator`` reads).
        collator: ``collator(rows)`` returning a dict with ``graph`` (e.g. ``MoleculeTextCollator``, which also
            needs the text column) or a ``torch_geometric`` ``Batch`` itself. Default:
            ``class_hf.data.graphs.rows_to_batch``, which reads only the graph (and fingerprint) columns, so rows
            without any text work.
        batch_size: molecules per forward pass.
        device: where batches are moved; defaults to the model's device.
        show_progress: show a tqdm progress bar.

    Returns:
        ``[len(rows), D]`` float32 CPU tensor.
    """
    if collator is None:
        from ..data.graphs import rows_to_batch

        collator = rows_to_batch
    device = _resolve_device(model, device)

    def graph_batch(chunk: list[dict]) -> Mapping:
        out = collator(chunk)
        return out if isinstance(out, Mapping) else {"graph": out}

    def encode_batch(batch: Mapping) -> dict[str, torch.Tensor]:
        return {"encode_molecule": model.encode_molecule(batch["graph"].to(device))}

    out = _embed_rows(
        model, rows, "rows", graph_batch, ("graph",), encode_batch, batch_size, "molecules", show_progress
    )
    return out["encode_molecule"]
