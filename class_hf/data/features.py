"""Which molecule features a model reads, for all of class-hf: one answer, asked by every entry point.

A backbone's molecule tower reads the graph columns of :func:`~class_hf.data.graphs.featurize_molecules` always, the
Morgan count fingerprint (``fp_index`` / ``fp_count``, batched as ``graph.fp``) when its config has
``use_fingerprint=True`` (of length ``fingerprint_dim``), and the ``mol2vec_index`` column when its config has
``atom_features="mol2vec"`` (ids into the table of ``mol2vec_embeddings_path``). :meth:`MoleculeFeatures.for_model`
reads these fields from a model or its config; the recipes, ``class-hf score``, ``evaluate``, ``index``, ``search``
and ``cases``, difficulty scoring, the :class:`~class_hf.evaluation.evaluator.RetrievalEvaluator` and the usage
snippet of the generated model cards all ask it, then featurize with :meth:`MoleculeFeatures.featurize` and batch
with :meth:`MoleculeFeatures.collator` (pairs) or :meth:`MoleculeFeatures.graph_collator` (molecules alone).

A user's own backbone gets the same treatment by naming these config fields the same way.

Example::

    >>> features = MoleculeFeatures.for_model(model)  # e.g. MoleculeFeatures(fingerprints=True, ...)
    >>> rows = features.featurize(dataset)  # adds only what is missing
    >>> batch = features.collator(tokenizer)([rows[0], rows[1]])
    >>> model.encode_molecule(batch["graph"])
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .graphs import FINGERPRINT_COLUMNS, FINGERPRINT_DIM, GRAPH_COLUMNS, MOL2VEC_COLUMN, rows_to_batch

logger = logging.getLogger(__name__)

__all__ = ["MoleculeFeatures", "collator_for_model", "text_max_length"]

_ALL_FEATURE_COLUMNS = (*GRAPH_COLUMNS, *FINGERPRINT_COLUMNS, MOL2VEC_COLUMN)


def _config_of(model_or_config: Any) -> Any:
    """The config of a model (its ``config``), or the object itself when it is a config."""
    return getattr(model_or_config, "config", model_or_config)


@dataclass(frozen=True)
class MoleculeFeatures:
    """The molecule columns a model reads: graphs always, fingerprints and mol2vec ids when it uses them.

    Args:
        fingerprints (bool): add the Morgan count fingerprint columns (batched as ``graph.fp``).
        fingerprint_dim (int): length of ``graph.fp`` (the model's ``fingerprint_dim``).
        mol2vec_embeddings_path (str | None): the mol2vec table whose vocabulary gives the ``mol2vec_index`` ids
            (ORMA's ``atom_features="mol2vec"``); None when the model does not read them.
    """

    fingerprints: bool = False
    fingerprint_dim: int = FINGERPRINT_DIM
    mol2vec_embeddings_path: str | None = None

    @classmethod
    def for_model(cls, model_or_config: Any = None, *, fingerprints: bool = False) -> MoleculeFeatures:
        """What ``model_or_config`` reads, from its config's ``use_fingerprint``, ``fingerprint_dim``,
        ``atom_features`` and ``mol2vec_embeddings_path`` (fields it lacks count as off).

        Args:
            model_or_config: a backbone (its ``config`` is read), a config, or None (graphs only).
            fingerprints (bool): add the fingerprint columns even when the model does not read them (e.g. for a
                fingerprint difficulty scorer).

        Returns:
            MoleculeFeatures: the features.

        Raises:
            ValueError: the config uses mol2vec atom features but names no ``mol2vec_embeddings_path``.
        """
        config = _config_of(model_or_config)
        mol2vec = None
        if getattr(config, "atom_features", None) == "mol2vec":
            mol2vec = getattr(config, "mol2vec_embeddings_path", None)
            if not mol2vec:
                raise ValueError(
                    "The model uses mol2vec atom features (`atom_features='mol2vec'`) but its config has no "
                    "`mol2vec_embeddings_path`; set it (e.g. `model_config`) to the .npz the model's vocabulary comes "
                    "from, so that molecules are featurized the way the model was trained."
                )
        dim = getattr(config, "fingerprint_dim", None)
        return cls(
            fingerprints=bool(fingerprints or getattr(config, "use_fingerprint", False)),
            fingerprint_dim=int(dim) if dim else FINGERPRINT_DIM,
            mol2vec_embeddings_path=mol2vec,
        )

    # ------------------------------------------------------------------------------------------------ columns
    @property
    def mol2vec(self) -> bool:
        """Whether the ``mol2vec_index`` column is needed."""
        return self.mol2vec_embeddings_path is not None

    @property
    def columns(self) -> list[str]:
        """The columns a featurized dataset must have for this model."""
        extra = [*(FINGERPRINT_COLUMNS if self.fingerprints else ()), *([MOL2VEC_COLUMN] if self.mol2vec else ())]
        return [*GRAPH_COLUMNS, *extra]

    def missing_columns(self, dataset: Any) -> list[str]:
        """The columns of :attr:`columns` that ``dataset`` lacks (empty when it is ready)."""
        return [column for column in self.columns if column not in dataset.column_names]

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary (recorded e.g. in a search index's ``index.json``)."""
        return {
            "fingerprints": self.fingerprints,
            "fingerprint_dim": self.fingerprint_dim,
            "mol2vec_embeddings_path": self.mol2vec_embeddings_path,
        }

    # ------------------------------------------------------------------------------------------------ featurizing
    def featurize(self, data: Any, *, num_proc: int | None = None, desc: str | None = "Featurizing molecules"):
        """``data`` with the columns this model reads; a split that already has them is returned as it is.

        Columns of an earlier featurization that lacks something (e.g. graphs without the fingerprints the model
        needs) are recomputed, not duplicated.

        Args:
            data (datasets.Dataset | datasets.DatasetDict): rows with a ``smiles`` column (and ideally ``cid``).
            num_proc (int | None): worker processes of ``Dataset.map``.
            desc (str | None): progress-bar description (None: no bar).

        Returns:
            datasets.Dataset | datasets.DatasetDict: the featurized data, of the same type.
        """
        from datasets import DatasetDict

        if isinstance(data, DatasetDict):
            return DatasetDict(
                {
                    split: self.featurize(part, num_proc=num_proc, desc=desc and f"{desc} ({split})")
                    for split, part in data.items()
                }
            )
        if not self.missing_columns(data):
            return data
        from .graphs import featurize_molecules

        stale = [column for column in _ALL_FEATURE_COLUMNS if column in data.column_names]
        if stale:
            logger.info("Recomputing the molecule columns %s to add %s.", stale, self.missing_columns(data))
            data = data.remove_columns(stale)
        data = featurize_molecules(data, fingerprints=self.fingerprints, num_proc=num_proc, desc=desc)
        if self.mol2vec:
            from .mol2vec import Mol2VecIndexer

            data = data.map(Mol2VecIndexer(self.mol2vec_embeddings_path), num_proc=num_proc, desc=desc)
        return data

    def complete(self, dataset: Any, desc: str | None = None) -> Any:
        """:meth:`featurize` for data that may not be molecules at all: rows without a ``smiles`` column (a custom
        backbone's own columns, batched by its own collator) are returned as they are.

        Used where a dataset arrives from a caller who may bring their own collator: difficulty scoring and the
        :class:`~class_hf.evaluation.evaluator.RetrievalEvaluator`. ``desc``: a progress bar's description (None:
        no bar).
        """
        if "smiles" not in dataset.column_names:
            return dataset
        return self.featurize(dataset, desc=desc)

    # ------------------------------------------------------------------------------------------------ batching
    def collator(self, tokenizer: Any, *, max_length: int = 256, model: Any = None):
        """The pair collator: a :class:`~class_hf.data.collator.MoleculeTextCollator` for these features.

        Args:
            tokenizer: the model's tokenizer.
            max_length (int): the wanted token limit, lowered to what the tokenizer and ``model``'s text encoder
                allow (see :func:`text_max_length`).
            model: the backbone (or its config), for its text encoder's position limit.

        Returns:
            MoleculeTextCollator: the collator (``graph.fp`` of length :attr:`fingerprint_dim`).
        """
        from .collator import MoleculeTextCollator

        limit = text_max_length(tokenizer, model, max_length)
        return MoleculeTextCollator(tokenizer, max_length=limit, fingerprint_dim=self.fingerprint_dim)

    def graph_collator(self) -> Callable[[Sequence[Mapping[str, Any]]], Any]:
        """Rows -> the graph ``Batch`` that ``encode_molecule`` takes (molecules without texts, e.g. a library)."""
        return functools.partial(rows_to_batch, fingerprint_dim=self.fingerprint_dim)


def text_max_length(tokenizer: Any, model: Any = None, max_length: int = 256) -> int:
    """``max_length`` lowered to the tokenizer's ``model_max_length`` and the text encoder's position limit.

    Args:
        tokenizer: the text encoder's tokenizer.
        model: a backbone or config whose ``text_config.max_position_embeddings`` bounds the token count.
        max_length (int): the wanted token limit.

    Returns:
        int: the token limit to truncate texts to.
    """
    limits = [max_length, getattr(tokenizer, "model_max_length", None)]
    text_config = getattr(_config_of(model), "text_config", None) if model is not None else None
    limits.append(getattr(text_config, "max_position_embeddings", None))
    return min(int(v) for v in limits if isinstance(v, int) and 0 < v < 1_000_000)


def collator_for_model(tokenizer: Any, model: Any = None, max_length: int = 256):
    """The :class:`~class_hf.data.collator.MoleculeTextCollator` of ``model``: its features and its token limit.

    Args:
        tokenizer: the text encoder's tokenizer.
        model: the backbone (None: graphs only, the tokenizer's limit).
        max_length (int): the wanted token limit (lowered to fit).

    Returns:
        MoleculeTextCollator: the collator.
    """
    return MoleculeFeatures.for_model(model).collator(tokenizer, max_length=max_length, model=model)
