"""``RetrievalEvaluator``: retrieval metrics of a model on a split, in the ``split`` and ``all`` candidate pools.

The one evaluation path of class-hf, in sentence-transformers' evaluator pattern: build it once with the data,
call it with a model, get a flat ``dict[str, float]``. The trainer, the recipes, ``class-hf evaluate``, difficulty
scoring and the benchmarks all use it, so every report counts the same candidates the same way.

Pools (see :mod:`class_hf.evaluation.retrieval` for the ranking itself):

- ``split``: each query's partner among the evaluated split's own molecules (texts), as ORMA's code does. Keys
  ``t2m_hits@1``, ``t2m_hits@5``, ``t2m_hits@10``, ``t2m_mrr``, ``t2m_mean_rank``, the same for ``m2t``, and
  ``mrr`` (the mean of both directions' MRR, the :attr:`~RetrievalEvaluator.primary_metric`, so that
  ``metric_for_best_model="eval_mrr"`` picks the best checkpoint).
- ``all`` (with ``extra_molecules``): also every further candidate, as Text2Mol and AMAN do; the same keys prefixed
  ``all_``.

CID de-duplication, decided here once: a pool holds every CID once. The split's own pairs come first; a row of
``extra_molecules`` joins the pool only when its ``cid`` is not in it yet (rows of a dataset without a ``cid``
column all join). A further row with a description is a candidate text as well as a candidate molecule; a row
without one (e.g. a CID/SMILES table) is a candidate molecule only.

Example::

    >>> evaluator = RetrievalEvaluator(data["test"], data_collator=collator, extra_molecules=[data["train"]])
    >>> metrics = evaluator(model)
    >>> metrics["mrr"], metrics["all_t2m_hits@1"], evaluator.pool_sizes["all_num_candidate_molecules"]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..data.features import MoleculeFeatures
from .encoding import embed_molecules, embed_pairs
from .retrieval import DIRECTIONS, retrieval_metrics

logger = logging.getLogger(__name__)

__all__ = ["ALL_POOL_PREFIX", "RetrievalEvaluator", "metrics_by_pool"]

ALL_POOL_PREFIX = "all_"
KS = (1, 5, 10)


def metrics_by_pool(metrics: Mapping[str, float], name: str = "") -> dict[str, dict[str, float]]:
    """The direction metrics of an evaluator's output, by pool: ``{"split": {"t2m_mrr": ...}, "all": {...}}``.

    The mean ``mrr`` is left out (it is not a metric of one direction); ``all`` is there only when it was measured.

    Args:
        metrics (Mapping[str, float]): what :class:`RetrievalEvaluator` returned.
        name (str): the evaluator's ``name`` (its keys' prefix).

    Returns:
        dict[str, dict[str, float]]: pool -> ``{"t2m_hits@1": ..., "m2t_mean_rank": ...}``.
    """
    prefix = f"{name}_" if name else ""
    pools: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix) :]
        pool = "split"
        if key.startswith(ALL_POOL_PREFIX):
            pool, key = "all", key[len(ALL_POOL_PREFIX) :]
        if key.split("_", 1)[0] in DIRECTIONS:
            pools.setdefault(pool, {})[key] = value
    return pools


def _new_rows(dataset: Any, known: set[str], what: str) -> list[int]:
    """Positions of the rows of ``dataset`` whose CID is not in ``known`` (first occurrence kept); adds them to it."""
    if "cid" not in dataset.column_names:
        logger.warning("%s has no `cid` column: its %d rows all join the pool unchecked.", what, len(dataset))
        return list(range(len(dataset)))
    keep = []
    for position, cid in enumerate(dataset["cid"]):
        if str(cid) not in known:
            known.add(str(cid))
            keep.append(position)
    return keep


class RetrievalEvaluator:
    """Hits@1/5/10, MRR and mean rank, text->molecule and molecule->text, of a model on a split.

    Args:
        dataset (datasets.Dataset): the evaluated pairs (``smiles``, ``description`` and ideally ``cid``); molecule
            columns the model needs are added when missing (:meth:`~class_hf.data.features.MoleculeFeatures.complete`;
            a dataset without ``smiles``, batched by a custom ``data_collator``, is used as it is).
        data_collator (Callable | None): batches the pairs (e.g. the trainer's ``MoleculeTextCollator``). When None
            it is built for the model with the tokenizer saved next to it (``model.name_or_path``).
        extra_molecules (datasets.Dataset | Sequence[datasets.Dataset] | None): further candidates of the ``all``
            pool (the other splits' pairs, a CID/SMILES table), de-duplicated by CID as the module docstring says.
            None: the ``split`` pool only.
        batch_size (int): rows per encoding batch.
        chunk_size (int): queries scored at a time (see :func:`~class_hf.evaluation.retrieval.confusion_counts`).
        name (str): prefix of every key (``f"{name}_t2m_mrr"``); none when empty.
        show_progress (bool): show progress bars while encoding.

    Attributes:
        primary_metric (str): ``"mrr"``, the mean MRR of both directions in the ``split`` pool.
        pool_sizes (dict[str, int]): after a call: ``num_queries`` and, with extras, ``all_num_candidate_molecules``
            and ``all_num_candidate_texts``.
    """

    primary_metric = "mrr"

    def __init__(
        self,
        dataset: Any,
        *,
        data_collator: Callable[[list[dict]], Mapping[str, Any]] | None = None,
        extra_molecules: Any = None,
        batch_size: int = 64,
        chunk_size: int = 1024,
        name: str = "",
        show_progress: bool = False,
    ) -> None:
        if dataset is None or len(dataset) == 0:
            raise ValueError("RetrievalEvaluator needs a non-empty `dataset` of pairs to evaluate.")
        for argument, value in (("batch_size", batch_size), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{argument}` must be a positive integer, got {value!r}.")
        if extra_molecules is not None and not isinstance(extra_molecules, Sequence):
            extra_molecules = [extra_molecules]
        self.dataset = dataset
        self.data_collator = data_collator
        self.extra_molecules = None if extra_molecules is None else list(extra_molecules)
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.name = name
        self.show_progress = show_progress
        self.pool_sizes: dict[str, int] = {}
        self._new_rows: list[list[int]] | None = None  # per extra dataset: the rows that join the pool
        self._featurized: dict[tuple[int, MoleculeFeatures], Any] = {}  # (-1 | extra number, features) -> rows

    # ------------------------------------------------------------------------------------------------ helpers
    def _collator(self, model: Any) -> Callable[[list[dict]], Mapping[str, Any]]:
        if self.data_collator is not None:
            return self.data_collator
        path = getattr(model, "name_or_path", None)
        if path and os.path.isdir(path):
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
            except (OSError, ValueError) as err:
                logger.debug("No tokenizer saved with %s: %s", path, err)
            else:
                self.data_collator = MoleculeFeatures.for_model(model).collator(tokenizer, model=model)
                return self.data_collator
        raise ValueError(
            "RetrievalEvaluator needs a `data_collator` to tokenize the texts (e.g. "
            "`MoleculeFeatures.for_model(model).collator(tokenizer)`): the model has no tokenizer saved next to it."
        )

    def _rows(self, number: int, features: MoleculeFeatures) -> Any:
        """The split (``number=-1``) or the new rows of ``extra_molecules[number]``, with the model's molecule columns;
        featurized once per feature set."""
        key = (number, features)
        if key not in self._featurized:
            if number < 0:
                rows = self.dataset
            else:
                keep = self._new_rows[number]
                extra = self.extra_molecules[number]
                rows = extra if len(keep) == len(extra) else extra.select(keep)
            # A large candidate table (e.g. all 33,010 ChEBI-20 molecules) takes a minute: show it.
            desc = "Featurizing candidate molecules" if number >= 0 and len(rows) >= 5000 else None
            self._featurized[key] = features.complete(rows, desc=desc)
        return self._featurized[key]

    def _candidate_rows(self) -> list[list[int]]:
        """Per extra dataset, the positions of its rows that join the ``all`` pool (CIDs not seen before)."""
        if self._new_rows is None:
            known = {str(cid) for cid in self.dataset["cid"]} if "cid" in self.dataset.column_names else set()
            self._new_rows = [
                _new_rows(extra, known, f"`extra_molecules[{number}]`")
                for number, extra in enumerate(self.extra_molecules or [])
            ]
        return self._new_rows

    def _extras(
        self, model: Any, features: MoleculeFeatures, collator: Callable, text_column: str
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Embeddings of the further candidates: ``(extra_text [E_t, D] | None, extra_mol [E_m, D] | None)``."""
        texts, mols = [], []
        for number, keep in enumerate(self._candidate_rows()):
            if not keep:
                continue
            rows = self._rows(number, features)
            described = (
                [i for i, text in enumerate(rows[text_column]) if isinstance(text, str) and text.strip()]
                if text_column in rows.column_names
                else []
            )
            if described:
                pairs = rows.select(described) if len(described) < len(rows) else rows
                text, mol = embed_pairs(
                    model, pairs, collator, batch_size=self.batch_size, show_progress=self.show_progress
                )
                texts.append(text)
                mols.append(mol)
            alone = sorted(set(range(len(rows))) - set(described))
            if alone:
                mols.append(
                    embed_molecules(
                        model,
                        rows.select(alone),
                        features.graph_collator(),
                        batch_size=self.batch_size,
                        show_progress=self.show_progress,
                    )
                )
        return (torch.cat(texts) if texts else None), (torch.cat(mols) if mols else None)

    # ------------------------------------------------------------------------------------------------ call
    def __call__(self, model: Any) -> dict[str, float]:
        """Encodes the split (and the extras) once with ``model`` and ranks both directions in every pool.

        Args:
            model: a backbone following :class:`~class_hf.models.base.RetrievalBackbone` (``encode_text``,
                ``encode_molecule``, ``score``), e.g. unwrapped from the trainer.

        Returns:
            dict[str, float]: the metrics (see the module docstring), keys prefixed ``f"{name}_"`` when named.
        """
        features = MoleculeFeatures.for_model(model)
        collator = self._collator(model)
        queries = self._rows(-1, features)
        text, mol = embed_pairs(model, queries, collator, batch_size=self.batch_size, show_progress=self.show_progress)
        scorer = getattr(model, "score", None)
        metrics = self._pool_metrics(text, mol, scorer)
        self.pool_sizes = {"num_queries": len(queries)}
        if self.extra_molecules is not None:
            text_column = getattr(collator, "text_column", "description")
            extra_text, extra_mol = self._extras(model, features, collator, text_column)
            if extra_text is None and extra_mol is None:
                logger.warning("`extra_molecules` adds no candidate the split lacks: the 'all' pool is the split's.")
            all_metrics = self._pool_metrics(text, mol, scorer, extra_mol, extra_text)
            metrics.update({f"{ALL_POOL_PREFIX}{key}": value for key, value in all_metrics.items()})
            for what, extra in (("molecules", extra_mol), ("texts", extra_text)):
                size = len(queries) + (0 if extra is None else len(extra))
                self.pool_sizes[f"{ALL_POOL_PREFIX}num_candidate_{what}"] = size
        prefix = f"{self.name}_" if self.name else ""
        return {f"{prefix}{key}": value for key, value in metrics.items()}

    def _pool_metrics(
        self,
        text: torch.Tensor,
        mol: torch.Tensor,
        scorer: Callable | None,
        extra_mol: torch.Tensor | None = None,
        extra_text: torch.Tensor | None = None,
    ) -> dict[str, float]:
        metrics = retrieval_metrics(
            text,
            mol,
            scorer=scorer,
            extra_mol_embeds=extra_mol,
            extra_text_embeds=extra_text,
            ks=KS,
            chunk_size=self.chunk_size,
        )
        metrics["mrr"] = (metrics["t2m_mrr"] + metrics["m2t_mrr"]) / 2
        return metrics

    def __repr__(self) -> str:
        extras = "none" if self.extra_molecules is None else f"{sum(len(e) for e in self.extra_molecules)} rows"
        return (
            f"RetrievalEvaluator(name={self.name!r}, num_pairs={len(self.dataset)}, extra_molecules={extras}, "
            f"batch_size={self.batch_size}, chunk_size={self.chunk_size})"
        )
