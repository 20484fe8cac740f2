"""Publishing on the Hub: a trained run with its model card (:func:`publish_run`, ``class-hf push``), and
difficulty-scored ChEBI-20 with the dataset card that says how the pairs were scored.

A recipe run writes its checkpoint and its model card (``README.md``) into ``output_dir``; one command publishes
them once the user has a token (``hf auth login`` or ``HF_TOKEN``)::

    class-hf push runs/demo --repo-id ORG/NAME            # add --dry-run to list what would be uploaded

(``--push_to_hub --hub_model_id ORG/NAME`` on the recipe does the same at the end of training, through
``Trainer.push_to_hub``.) The card is re-targeted to the repository first: its usage snippet, title and
``model-index`` name ``ORG/NAME`` instead of the local folder.

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

__all__ = [
    "PUBLISH_IGNORE",
    "dataset_card_text",
    "publish_run",
    "push_scored_dataset",
    "retarget_model_card",
    "save_scored_dataset",
    "scored_dataset_card",
]

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


def push_scored_dataset(data, repo_id: str, card: DatasetCard, *, private: bool = False) -> None:
    """Pushes a scored ``Dataset`` / ``DatasetDict`` to the Hub, then its card.

    ``datasets`` writes the repository's ``README.md`` YAML header (files, splits, features) and keeps the body the
    repository had; the card pushed after it keeps that header with ``card``'s metadata added and puts ``card``'s
    body in place of the old one, so pushing again does not repeat it.

    Args:
        data (Dataset | DatasetDict): the scored data.
        repo_id (str): the dataset repository, ``org/name``.
        card (DatasetCard): from :func:`scored_dataset_card`.
        private (bool): create the repository private.
    """
    data.push_to_hub(repo_id, private=private or None)
    pushed = DatasetCard.load(repo_id, repo_type="dataset")
    for key, value in card.data.to_dict().items():
        pushed.data[key] = value
    pushed.text = card.text
    pushed.push_to_hub(repo_id, repo_type="dataset")
    logger.info("Pushed the scored dataset and its card to %s", repo_id)


# What `publish_run` leaves out of a run folder: intermediate checkpoints, the scored dataset (a dataset, published
# with `class-hf score --push-to-hub`), and private/hidden files (as `Trainer.push_to_hub` skips `_*`).
PUBLISH_IGNORE = ("checkpoint-*", "scored_dataset", "runs", "_*", ".*")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def retarget_model_card(card_text: str, repo_id: str) -> str:
    """The model card of a run with its model id (the local ``output_dir``) replaced by the Hub id ``repo_id``: the
    ``model-index`` name, the title, the usage snippet and the "continue training" hint.

    Args:
        card_text (str): the ``README.md`` a recipe wrote.
        repo_id (str): ``org/name``.

    Returns:
        str: the card to upload.
    """
    from huggingface_hub import ModelCard

    card = ModelCard(card_text)
    old = card.data.model_name
    card.data.model_name = repo_id
    text = card.text
    if old:
        for before, after in (
            (f'"{old}"', f'"{repo_id}"'),
            (f"--model_name_or_path {old}", f"--model_name_or_path {repo_id}"),
            (f"): {old}\n", f"): {repo_id}\n"),
        ):
            text = text.replace(before, after)
    return f"---\n{card.data.to_yaml()}\n---\n{text}"


def _files_to_publish(run_dir: str) -> list[str]:
    """The files of ``run_dir`` that :func:`publish_run` uploads (relative paths, sorted)."""
    import fnmatch

    files = []
    for root, dirs, names in os.walk(run_dir):
        dirs[:] = [d for d in dirs if not any(fnmatch.fnmatch(d, pattern) for pattern in PUBLISH_IGNORE)]
        for name in names:
            if not any(fnmatch.fnmatch(name, pattern) for pattern in PUBLISH_IGNORE):
                files.append(os.path.relpath(os.path.join(root, name), run_dir))
    return sorted(files)


def publish_run(
    run_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "CLASS checkpoint and model card (class-hf)",
    dry_run: bool = False,
) -> dict[str, Any]:
    """Uploads a trained run (the checkpoint in ``run_dir``, its model card re-targeted to ``repo_id``, its metrics
    and plots) to the Hub model repository ``repo_id``, created when missing. Intermediate ``checkpoint-*`` folders
    and ``scored_dataset/`` stay local (:data:`PUBLISH_IGNORE`).

    Args:
        run_dir (str | os.PathLike): a recipe's ``output_dir`` (``config.json``, the weights, ``README.md``).
        repo_id (str): ``org/name`` on the Hub.
        private (bool): create the repository private.
        token (str | None): a Hub token (default: the one ``hf auth login`` stored, or ``HF_TOKEN``).
        commit_message (str): the commit message.
        dry_run (bool): only say what would be uploaded (no token needed, nothing leaves the machine).

    Returns:
        dict: ``repo_id``, ``files`` (the paths in the repository), ``card`` (the uploaded ``README.md`` text),
        ``dry_run`` and, after an upload, ``url`` (the commit's).

    Raises:
        ValueError: ``repo_id`` is not ``org/name``, ``run_dir`` holds no trained model or no model card, or there
            is no token.
        FileNotFoundError: ``run_dir`` does not exist.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    run_dir = os.fspath(run_dir)
    if not is_hub_id(repo_id):
        raise ValueError(f"--repo-id {repo_id!r} is not a Hub repository id of the form org/name.")
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"{run_dir}: no such folder; pass the output_dir of a trained run (e.g. runs/demo).")
    present = set(os.listdir(run_dir))
    if "config.json" not in present or not present & set(_WEIGHTS):
        raise ValueError(
            f"{run_dir} holds no trained model (config.json and model.safetensors); pass the output_dir of a finished "
            "recipe run."
        )
    card_path = os.path.join(run_dir, "README.md")
    if not os.path.isfile(card_path):
        raise ValueError(
            f"{run_dir} has no model card (README.md); recipes write it when the run has test metrics. Publish a run "
            "with a test split, or write the card first."
        )
    with open(card_path, encoding="utf-8") as f:
        card = retarget_model_card(f.read(), repo_id)
    files = _files_to_publish(run_dir)
    result: dict[str, Any] = {"repo_id": repo_id, "files": files, "card": card, "dry_run": dry_run}
    if dry_run:
        return result
    token = token or get_token()
    if not token:
        raise ValueError(
            "No Hugging Face token: log in with `hf auth login` (or set HF_TOKEN) to publish; --dry-run lists what "
            "would be uploaded."
        )
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    operations = [
        CommitOperationAdd(path_in_repo=path.replace(os.sep, "/"), path_or_fileobj=os.path.join(run_dir, path))
        for path in files
        if path != "README.md"
    ]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
    commit = api.create_commit(repo_id, operations=operations, commit_message=commit_message, repo_type="model")
    result["url"] = getattr(commit, "commit_url", None) or str(commit)
    logger.info("Published %s (%d files) to %s.", run_dir, len(files), repo_id)
    return result
