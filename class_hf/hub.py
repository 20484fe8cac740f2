"""Difficulty-scored ChEBI-20 on disk and on the Hub: the dataset card that says how the pairs were scored.

A scored dataset carries, on its training split, the CLASS columns ``n_confusing_t2m``, ``n_confusing_m2t`` (int64)
and ``difficulty`` (float32 in [0, 1]). It is written by ``class-hf score --out ... [--push-to-hub org/name]`` and
by the recipes (``<output_dir>/scored_dataset``); training on it with ``difficulty_source="precomputed"`` uses the
columns as they are. Loading it back::

    from datasets import load_dataset, load_from_disk

    data = load_from_disk("runs/orma/scored_dataset")  # save_to_disk folder
    data = load_dataset("org/chebi20-class-difficulty")  # pushed with `class-hf score --push-to-hub`
    # offline, from the Hub cache: load_dataset(huggingface_hub.snapshot_download(repo_id, repo_type="dataset"))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from .data.sources import is_hub_id

logger = logging.getLogger(__name__)

__all__ = ["dataset_card_text", "save_scored_dataset", "scored_dataset_card"]

DATASET_TAGS = ("class-hf", "curriculum-learning", "chemistry", "molecule-retrieval", "text-to-molecule", "chebi-20")


def _scorer_lines(info: Mapping[str, Any]) -> list[str]:
    """What scored the pairs and what it cost."""
    scorer = f"- scored by: `{info.get('source')}`"
    if "fingerprint_text_encoder" in info:
        scorer += f" (text encoder `{info['fingerprint_text_encoder']}`)"
    if info.get("fingerprint_cross_fit_folds", 0) > 1:
        scorer += f", out of fold ({info['fingerprint_cross_fit_folds']} folds)"
    return [scorer, f"- pairs: {info.get('num_pairs')}; scoring time: {info.get('seconds', float('nan')):.1f} s"]


def dataset_card_text(
    info: Mapping[str, Any], *, split: str, command: str, extra_lines: list[str] | None = None
) -> str:
    """Markdown body of the dataset card of a scored dataset: which scorer, its cost and quality, the command.

    Args:
        info (Mapping): what :func:`~class_hf.curriculum.difficulty.compute_difficulty` reported.
        split (str): the scored split.
        command (str): the command that produced the data.
        extra_lines (list[str] | None): Markdown lines put after the scorer's summary, before the command.

    Returns:
        str: the card's body (no YAML header).
    """
    quality = {k: v for k, v in info.items() if k.endswith("_mrr") or k in ("zero_confusion_share", "mean_confusing")}
    lines = [
        "# CLASS difficulty scores",
        "",
        f"The `{split}` split carries the CLASS curriculum columns `n_confusing_t2m`, `n_confusing_m2t` (int64: how "
        "many other molecules / texts score at least as high as the true partner) and `difficulty` (float32, the "
        "percentile rank of their sum in [0, 1], ties sharing their average rank).",
        "",
        *_scorer_lines(info),
    ]
    lines += [f"- {key}: {value:.4f}" for key, value in sorted(quality.items())]
    lines += [*(extra_lines or []), "", "Produced with class-hf:", "", "```", command, "```", ""]
    return "\n".join(lines)


def scored_dataset_card(
    info: Mapping[str, Any],
    *,
    split: str = "train",
    command: str = "",
    source: str | None = None,
    scorer: str | None = None,
    license: str = "cc-by-4.0",
) -> DatasetCard:
    """The dataset card of a difficulty-scored ChEBI-20: which source and model scored it, at what cost.

    Args:
        info (Mapping): what :func:`~class_hf.curriculum.difficulty.compute_difficulty` reported (``source``,
            ``seconds``, ``num_pairs``, the scorer's MRR, ...).
        split (str): the scored split.
        command (str): the command that produced it.
        source (str | None): the data it was made from (a Hub id becomes ``source_datasets``).
        scorer (str | None): the model that scored it, when ``info`` does not say (e.g. the backbone a warm-up copy
            was made of).
        license (str): the data license (ChEBI descriptions are CC BY 4.0).

    Returns:
        DatasetCard: the card (``card.save(folder / "README.md")`` or ``card.push_to_hub(repo_id)``).
    """
    card_data = DatasetCardData(
        language="en",
        license=license,
        pretty_name="ChEBI-20 with CLASS difficulty scores",
        tags=list(DATASET_TAGS),
        task_categories=["feature-extraction"],
        source_datasets=[source] if is_hub_id(source) else None,
    )
    extra = []
    if scorer:
        extra.append(f"- scoring model: `{scorer}`")
    if source:
        extra.append(f"- made from: `{source}`")
    extra += [
        "",
        "Train on it with `difficulty_source=precomputed`: the columns are used as they are, nothing is re-scored.",
        "Data: ChEBI-20 (Edwards, Zhai & Ji, EMNLP 2021); descriptions from ChEBI (CC BY 4.0), molecules from "
        "PubChem. Difficulty as defined by CLASS (Wu et al., arXiv:2502.11633) and reconstructed by class-hf.",
    ]
    text = dataset_card_text(info, split=split, command=command, extra_lines=extra)
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{text}")


def save_scored_dataset(data, path: str | os.PathLike, card: DatasetCard) -> str:
    """``save_to_disk`` of a scored ``Dataset`` / ``DatasetDict`` with its card as ``README.md``.

    Args:
        data (Dataset | DatasetDict): the scored data.
        path (str | os.PathLike): the folder.
        card (DatasetCard): from :func:`scored_dataset_card`.

    Returns:
        str: the folder.
    """
    data.save_to_disk(os.fspath(path))
    card.save(os.path.join(os.fspath(path), "README.md"))
    logger.info("Saved the scored dataset and its card to %s.", path)
    return os.fspath(path)
