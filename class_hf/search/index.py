"""Search a molecule library with a trained retrieval model: ``MoleculeIndex``.

An index holds the embeddings of every molecule of a library (and, optionally, of their descriptions), encoded once
by a backbone that follows the backbone contract (``encode_text``, ``encode_molecule``, ``score``; see
``CONTRIBUTING.md``), together with the rows' metadata and a reference to the model:

- text -> molecule: :meth:`MoleculeIndex.search` encodes a description and ranks the library's molecules;
- molecule -> text: ``search(smiles=...)`` encodes a molecule and ranks the library's descriptions (the index must be
  built with ``texts=True``).

On disk an index is a folder with ``embeddings.safetensors`` (``molecules [N, D]``; with texts also ``texts [M, D]``
and ``text_rows [M]``, the metadata row of each text), ``rows.parquet`` (``row``, ``line``, ``smiles``, ``cid``,
``name``, ``description``, ``split`` of every indexed molecule) and ``index.json`` (the model's path or Hub id and
revision, the embedding size, the counts, and every skipped input row with the reason).

Scores are the model's own ``score(text_embeds, mol_embeds)`` (cosine for the class-hf backbones), computed against
the stored embeddings ``candidate_chunk`` candidates at a time by :func:`class_hf.evaluation.retrieval.top_k`, so
memory stays bounded whatever the library size: ``4 * query_chunk * candidate_chunk`` bytes of scores (16 MiB by
default) plus the embeddings themselves. Loading the model (:func:`class_hf.models.registry.load_backbone`) and
featurizing molecules (:class:`class_hf.data.features.MoleculeFeatures`) are delegated too: this module keeps the
index.

Example::

    >>> index = MoleculeIndex.build("runs/dual_encoder", "molecules.csv", texts=True)
    >>> index.save("indexes/chebi20")
    >>> index = MoleculeIndex.load("indexes/chebi20")           # reloads the model from the recorded path
    >>> for hit in index.search("The molecule is a monocarboxylic acid anion ...", k=5):
    ...     print(hit.rank, round(hit.score, 3), hit.cid, hit.name)
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.features import MoleculeFeatures, text_max_length
from ..evaluation.retrieval import top_k
from ..models.registry import load_backbone
from .library import LIBRARY_COLUMNS, read_library

logger = logging.getLogger(__name__)

__all__ = [
    "MoleculeIndex",
    "SearchResult",
    "featurize_for_model",
    "model_reference",
    "molecule_collator",
    "place_truth",
]

INDEX_FORMAT = "class-hf-molecule-index"
INDEX_FORMAT_VERSION = 1
EMBEDDINGS_FILE = "embeddings.safetensors"
ROWS_FILE = "rows.parquet"
INFO_FILE = "index.json"


@dataclass(frozen=True)
class SearchResult:
    """One retrieved candidate.

    Attributes:
        rank (int): 1-based rank (ties count against the query, as in the retrieval metrics).
        score (float): the model's score of the query with this candidate (cosine for the class-hf backbones).
        cid (str | None): the candidate's CID (or other identifier) from the library.
        smiles (str | None): the candidate molecule (for a text candidate: the molecule it describes).
        name (str | None): the molecule's name or title, when the library has one.
        description (str | None): the library's description of the molecule.
        row (int): the candidate's 0-based data row in the library source.
        is_truth (bool): the candidate is the query's ground truth: the indexed row located for ``truth_cid`` (the
            first with that CID), not every row that shares its CID.
    """

    rank: int
    score: float
    cid: str | None
    smiles: str | None
    name: str | None
    description: str | None
    row: int
    is_truth: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-serialisable dict."""
        return asdict(self)


# ----------------------------------------------------------------------------------------------------- models
_SNAPSHOT = re.compile(r"/snapshots/([^/]+)/")


def model_reference(model: Any, name_or_path: str | None = None, revision: str | None = None) -> dict[str, Any]:
    """What to record about a model so that it can be reloaded: its local path or Hub id and its revision.

    Args:
        model: the backbone (its ``name_or_path`` is used when ``name_or_path`` is None).
        name_or_path (str | None): overrides the model's own ``name_or_path``.
        revision (str | None): the revision it was loaded with, if any.

    Returns:
        dict: ``name_or_path`` (an absolute path for local folders, else the Hub id; None for a model built in
        memory), ``revision`` (the commit hash when the model came from the Hub cache, else ``revision`` or None),
        ``class`` and ``model_type``.
    """
    name = name_or_path or getattr(model, "name_or_path", None) or None
    config = getattr(model, "config", None)
    reference = {
        "name_or_path": None,
        "revision": revision,
        "class": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
    }
    if name is None:
        return reference
    name = str(name)
    if os.path.isdir(name):
        resolved = Path(name).resolve().as_posix() + "/"
        match = _SNAPSHOT.search(resolved) if "/models--" in resolved else None
        reference.update(name_or_path=str(Path(name).resolve()), revision=match.group(1) if match else revision)
        return reference
    from huggingface_hub import try_to_load_from_cache

    reference["name_or_path"] = name
    try:
        cached = try_to_load_from_cache(name, "config.json", revision=revision)
    except Exception as err:  # an id that is not a valid repo name: keep what we were given
        logger.debug("No Hub cache entry for %s: %s", name, err)
        cached = None
    if isinstance(cached, str):
        match = _SNAPSHOT.search(Path(cached).as_posix())
        reference["revision"] = match.group(1) if match else revision
    return reference


# ---------------------------------------------------------------------------------------------- featurization
@contextlib.contextmanager
def _datasets_bars_off() -> Iterator[None]:
    """No per-chunk ``datasets`` progress bars (the index shows one bar for the whole library)."""
    from datasets.utils import logging as ds_logging

    enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            ds_logging.enable_progress_bar()


def featurize_for_model(smiles: Sequence[str], model: torch.nn.Module, *, num_proc: int | None = None):
    """The columns ``model`` reads (:class:`~class_hf.data.features.MoleculeFeatures`) of already-valid SMILES.

    Args:
        smiles (Sequence[str]): RDKit-parsable SMILES.
        model (torch.nn.Module): the backbone; its config decides the fingerprint and ``mol2vec_index`` columns.
        num_proc (int | None): worker processes of ``Dataset.map``.

    Returns:
        datasets.Dataset: ``smiles`` and the molecule columns.
    """
    from datasets import Dataset

    with _datasets_bars_off():
        return MoleculeFeatures.for_model(model).featurize(
            Dataset.from_dict({"smiles": list(smiles)}), num_proc=num_proc, desc=None
        )


def molecule_collator(model: torch.nn.Module) -> Callable[[Sequence[Mapping[str, Any]]], Any]:
    """Rows of :func:`featurize_for_model` -> the graph ``Batch`` the model's ``encode_molecule`` takes."""
    return MoleculeFeatures.for_model(model).graph_collator()


# ------------------------------------------------------------------------------------------------------ index
def _finite_queries(embeds: torch.Tensor, what: str) -> torch.Tensor:
    """Query embeddings, refused when the model returned NaN or inf for one (every score would be NaN)."""
    bad = (~torch.isfinite(embeds).all(dim=1)).nonzero().flatten().tolist()
    if bad:
        which = f"the {what}" if embeds.shape[0] == 1 else f"{what} {bad[:10]}"
        raise ValueError(
            f"The model returned a NaN or infinite embedding for {which}, so no result could be ranked. The "
            "checkpoint is likely diverged: use another one with --model / `model=`."
        )
    return embeds


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


def _parsable_rows(table: Mapping[str, Sequence[Any]], rows: range, skipped: list[dict[str, Any]]) -> list[int]:
    """The rows of ``table`` whose SMILES RDKit parses; each other row is appended to ``skipped`` with the reason."""
    from ..data.graphs import parse_smiles

    valid = []
    for i in rows:
        smiles = table["smiles"][i]
        try:
            if smiles is None:
                raise ValueError("the SMILES is empty")
            parse_smiles(smiles)
            valid.append(i)
        except ValueError as err:
            skipped.append({name: table[name][i] for name in ("row", "line", "cid", "smiles")} | {"reason": str(err)})
    return valid


def place_truth(ranked: Sequence[tuple[int, float]], truth: int, rank: int, score: float) -> list[tuple[int, float]]:
    """The candidates best first, with the truth at its rank: after every candidate that scores at least as high.

    :func:`~class_hf.evaluation.retrieval.top_k` orders tied candidates arbitrarily, while the truth's rank counts
    ties against the query; this puts the truth where its rank says, so a list and the rank never disagree.

    Args:
        ranked (Sequence[tuple[int, float]]): ``(candidate index, score)`` best first, from ``top_k`` asked for one
            candidate more than will be shown.
        truth (int): the truth's candidate index.
        rank (int): its rank (``1 + `` the number of other candidates scoring at least ``score``).
        score (float): its score.

    Returns:
        list[tuple[int, float]]: the other candidates of ``ranked`` in order, with ``(truth, score)`` at position
        ``rank`` when that is within them or right after them; show its first ``k``.
    """
    others = [(i, s) for i, s in ranked if i != truth]
    if rank <= len(others) + 1:
        others.insert(rank - 1, (truth, score))
    return others


def _describe(entry: Mapping[str, Any]) -> str:
    where = f"row {entry['row']}" + (f" (line {entry['line']})" if entry.get("line") is not None else "")
    if entry.get("cid"):
        where += f", cid {entry['cid']}"
    return f"{where}: {entry['reason']}"


class MoleculeIndex:
    """Embeddings of a molecule library (and optionally of its descriptions) for retrieval with a trained model.

    Build one with :meth:`build`, keep it with :meth:`save`, reopen it with :meth:`load`, query it with
    :meth:`search`. See the module docstring for the files on disk.

    Args:
        molecule_embeddings (torch.Tensor): ``[N, D]`` float32 embeddings, row ``i`` for ``rows[...][i]``.
        rows (Mapping[str, Sequence]): the metadata columns (``row``, ``line``, ``smiles``, ``cid``, ``name``,
            ``description``, ``split``) of the ``N`` molecules.
        text_embeddings (torch.Tensor | None): ``[M, D]`` embeddings of descriptions.
        text_rows (torch.Tensor | None): ``[M]`` the molecule row (0..N-1) each description belongs to.
        info (Mapping | None): what ``index.json`` records (model reference, counts, skipped rows ...).
        model (torch.nn.Module | None): the backbone that produced the embeddings; loaded from
            ``info["model"]`` on first use when None.
        tokenizer: its tokenizer; loaded with the model when None.
    """

    def __init__(
        self,
        molecule_embeddings: torch.Tensor,
        rows: Mapping[str, Sequence[Any]],
        *,
        text_embeddings: torch.Tensor | None = None,
        text_rows: torch.Tensor | None = None,
        info: Mapping[str, Any] | None = None,
        model: torch.nn.Module | None = None,
        tokenizer: Any = None,
    ) -> None:
        self.molecule_embeddings = molecule_embeddings.detach().float().cpu()
        self.rows = {
            name: list(rows.get(name, [None] * self.molecule_embeddings.shape[0])) for name in LIBRARY_COLUMNS
        }
        for name, values in self.rows.items():
            if len(values) != self.molecule_embeddings.shape[0]:
                raise ValueError(
                    f"`rows[{name!r}]` has {len(values)} entries for {self.molecule_embeddings.shape[0]} molecule "
                    "embeddings; every embedding needs one metadata row."
                )
        if (text_embeddings is None) != (text_rows is None):
            raise ValueError("`text_embeddings` and `text_rows` go together: pass both or neither.")
        self.text_embeddings = None if text_embeddings is None else text_embeddings.detach().float().cpu()
        self.text_rows = None if text_rows is None else torch.as_tensor(text_rows, dtype=torch.long).cpu()
        if self.text_rows is not None and self.text_rows.shape[0] != self.text_embeddings.shape[0]:
            raise ValueError("`text_rows` must hold one molecule row per text embedding.")
        self._check_embeddings()
        self.info = dict(info or {})
        self._model = model
        self._tokenizer = tokenizer
        self._cid_positions: dict[str, dict[str, list[int]]] = {}  # direction -> CID -> its candidate indices

    def _describe_row(self, i: int) -> str:
        line = self.rows["line"][i]
        where = f"row {self.rows['row'][i]}" + (f" (line {line})" if line is not None else "")
        cid = self.rows["cid"][i]
        return where + (f", cid {cid}" if cid is not None else "")

    def _check_embeddings(self) -> None:
        """Shapes that fit together, text rows in range, and no NaN or infinite value (named by library row)."""
        molecules = self.molecule_embeddings
        if molecules.ndim != 2 or molecules.shape[0] == 0:
            raise ValueError(
                f"The molecule embeddings must be a non-empty [N, D] matrix, got shape {tuple(molecules.shape)}."
            )
        bad = (~torch.isfinite(molecules).all(dim=1)).nonzero().flatten().tolist()
        if bad:
            listed = "; ".join(self._describe_row(i) for i in bad[:10]) + (
                f"; ... and {len(bad) - 10} more" if len(bad) > 10 else ""
            )
            raise ValueError(
                f"{len(bad)} of {molecules.shape[0]} molecule embeddings are not finite (NaN or inf): {listed}. The "
                "model that encoded them produces NaN for these molecules (a diverged checkpoint?); search would rank "
                "them arbitrarily. Rebuild the index with a checkpoint whose outputs are finite."
            )
        if self.text_embeddings is None:
            return
        texts, text_rows = self.text_embeddings, self.text_rows
        if texts.ndim != 2 or texts.shape[1] != molecules.shape[1]:
            raise ValueError(
                f"The text embeddings have shape {tuple(texts.shape)}; they must be [M, {molecules.shape[1]}] like "
                "the molecule embeddings."
            )
        out_of_range = ((text_rows < 0) | (text_rows >= molecules.shape[0])).nonzero().flatten().tolist()
        if out_of_range:
            raise ValueError(
                f"`text_rows` points outside the {molecules.shape[0]} molecules at text(s) {out_of_range[:10]} "
                f"(values {text_rows[out_of_range[:10]].tolist()})."
            )
        bad = (~torch.isfinite(texts).all(dim=1)).nonzero().flatten().tolist()
        if bad:
            listed = "; ".join(self._describe_row(int(text_rows[i])) for i in bad[:10])
            more = f"; ... and {len(bad) - 10} more" if len(bad) > 10 else ""
            raise ValueError(
                f"{len(bad)} of {texts.shape[0]} description embeddings are not finite (NaN or inf): the descriptions "
                f"of {listed}{more}. Rebuild the index with a checkpoint whose outputs are finite."
            )

    # ------------------------------------------------------------------------------------------ properties
    @property
    def num_molecules(self) -> int:
        """Number of indexed molecules."""
        return self.molecule_embeddings.shape[0]

    @property
    def num_texts(self) -> int:
        """Number of indexed descriptions (0 when the index was built without ``texts``)."""
        return 0 if self.text_embeddings is None else self.text_embeddings.shape[0]

    @property
    def embedding_dim(self) -> int:
        """Size of the embeddings."""
        return self.molecule_embeddings.shape[1]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """The input rows left out when the index was built: ``row``, ``line``, ``cid``, ``smiles``, ``reason``."""
        return list(self.info.get("skipped", []))

    @property
    def model(self) -> torch.nn.Module:
        """The backbone; loaded from the recorded path and revision on first use when the index was loaded alone."""
        if self._model is None:
            self._load_model()
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The backbone's tokenizer (loaded with the model when needed)."""
        if self._tokenizer is None:
            reference = self.info.get("model", {})
            tokenizer_path = self.info.get("tokenizer") or reference.get("name_or_path")
            if tokenizer_path is None:
                raise ValueError(
                    "This index records no tokenizer path: pass `tokenizer=` to MoleculeIndex.load (or build)."
                )
            from transformers import AutoTokenizer

            same = tokenizer_path == reference.get("name_or_path")
            self._tokenizer = AutoTokenizer.from_pretrained(
                tokenizer_path, revision=reference.get("revision") if same else None
            )
        return self._tokenizer

    def _load_model(self) -> None:
        reference = self.info.get("model", {})
        path = reference.get("name_or_path")
        if path is None:
            raise ValueError(
                "This index was built from a model held in memory, so it records no path to reload it from: pass "
                "`model=` and `tokenizer=` to MoleculeIndex.load, or build the index from a saved checkpoint."
            )
        logger.info("Loading the index's model %s (revision %s).", path, reference.get("revision"))
        self._model, tokenizer = load_backbone(
            path, revision=reference.get("revision"), tokenizer=self.info.get("tokenizer")
        )
        self._tokenizer = self._tokenizer or tokenizer

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        model: torch.nn.Module | str,
        molecules: Any,
        tokenizer: Any = None,
        *,
        collator: Callable[[list[dict]], Any] | None = None,
        texts: bool = False,
        split: str | None = None,
        batch_size: int = 64,
        chunk_size: int = 4096,
        max_length: int = 256,
        show_progress: bool = True,
        model_name_or_path: str | None = None,
        revision: str | None = None,
        num_proc: int | None = None,
    ) -> MoleculeIndex:
        """Encodes a molecule library (and with ``texts=True`` its descriptions) into an index.

        Rows whose SMILES is missing or does not parse with RDKit are skipped, each reported (row number, file line,
        CID and RDKit's reason) in one warning and in ``index.skipped``; nothing is dropped silently. With
        ``texts=True`` the rows without a description are counted and left out of the text side only.

        Args:
            model (torch.nn.Module | str): a backbone, or a checkpoint folder / Hub id to load with its tokenizer.
            molecules: the library: a CSV/TSV/SDF/parquet file, a folder or a ``datasets`` dataset (see
                :func:`~class_hf.search.library.read_molecules`).
            tokenizer: the model's tokenizer, or its folder / Hub id (needed for text queries and ``texts=True``;
                loaded with the model when ``model`` is a path).
            collator (Callable | None): rows of :func:`featurize_for_model` -> graph ``Batch`` (default:
                :func:`molecule_collator` for the model).
            texts (bool): also index the descriptions (molecule -> text search).
            split (str | None): only this split of a dataset with splits, or the rows of a file whose ``split`` column
                holds it (counted in ``info["num_outside_split"]``: the rows of the other splits). An error for a
                library without splits, or when no row has this split.
            batch_size (int): molecules / texts per forward pass.
            chunk_size (int): molecules featurized and encoded at a time (bounds the memory of the graph columns).
            max_length (int): token limit of texts (lowered to the tokenizer's and the text encoder's limits).
            show_progress (bool): show progress bars.
            model_name_or_path (str | None): the path or Hub id to record for the model (default: its
                ``name_or_path``).
            revision (str | None): the Hub revision the model was loaded with.
            num_proc (int | None): worker processes for featurization.

        Returns:
            MoleculeIndex: the index, holding the model.

        Raises:
            ValueError: no row of the library has a valid SMILES, ``texts=True`` without any description or without
                a tokenizer, or an invalid argument.
        """
        from ..evaluation.encoding import embed_molecules, embed_texts

        _check_positive("batch_size", batch_size)
        _check_positive("chunk_size", chunk_size)
        started = time.perf_counter()
        if isinstance(model, (str, os.PathLike)):
            model_name_or_path = model_name_or_path or str(model)
            model, loaded_tokenizer = load_backbone(str(model), revision=revision)
            tokenizer = tokenizer or loaded_tokenizer
        if isinstance(tokenizer, (str, os.PathLike)):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        if texts and tokenizer is None:
            raise ValueError("`texts=True` encodes descriptions and needs the model's `tokenizer`.")
        table, num_outside_split = read_library(molecules, split=split)
        num_rows = len(table["row"])
        if num_rows == 0:
            raise ValueError(f"The library {molecules!r} has no rows: nothing to index.")
        if num_outside_split:
            logger.info(
                "Indexing the %d rows of split %r; the %d rows of the library's other splits are left out.",
                num_rows,
                split,
                num_outside_split,
            )
        collator = collator or molecule_collator(model)
        kept: list[int] = []
        skipped: list[dict[str, Any]] = []
        parts: list[torch.Tensor] = []
        with tqdm(total=num_rows, desc="Indexing molecules", unit="mol", disable=not show_progress) as bar:
            for start in range(0, num_rows, chunk_size):
                valid = _parsable_rows(table, range(start, min(start + chunk_size, num_rows)), skipped)
                if valid:
                    featurized = featurize_for_model([table["smiles"][i] for i in valid], model, num_proc=num_proc)
                    parts.append(
                        embed_molecules(model, featurized, collator, batch_size=batch_size, show_progress=False)
                    )
                    kept.extend(valid)
                bar.update(min(start + chunk_size, num_rows) - start)
        if skipped:
            listed = "; ".join(_describe(entry) for entry in skipped[:20])
            more = f" (and {len(skipped) - 20} more, listed in index.json)" if len(skipped) > 20 else ""
            logger.warning(
                "Skipped %d of %d library rows whose SMILES RDKit cannot read: %s%s",
                len(skipped),
                num_rows,
                listed,
                more,
            )
        if not kept:
            raise ValueError(
                f"None of the {num_rows} rows of {molecules!r} has a valid SMILES (first problem: "
                f"{_describe(skipped[0])}); check the SMILES column."
            )
        rows = {name: [table[name][i] for i in kept] for name in LIBRARY_COLUMNS}
        duplicated = len(rows["cid"]) - len(set(rows["cid"]))
        if any(cid is not None for cid in rows["cid"]) and duplicated:
            logger.warning("%d indexed rows repeat a CID already in the index; they are all kept.", duplicated)

        max_length = text_max_length(tokenizer, model, max_length) if tokenizer is not None else max_length
        text_embeddings = text_rows = None
        num_without_description = sum(description is None for description in rows["description"])
        if texts:
            with_text = [i for i, description in enumerate(rows["description"]) if description is not None]
            if not with_text:
                raise ValueError(
                    f"`texts=True` but none of the indexed rows of {molecules!r} has a description; add a "
                    "`description` column or build the index without texts."
                )
            if num_without_description:
                logger.warning(
                    "%d indexed molecules have no description: they are in the molecule index only.",
                    num_without_description,
                )
            text_embeddings = embed_texts(
                model,
                [rows["description"][i] for i in with_text],
                tokenizer,
                batch_size=batch_size,
                max_length=max_length,
                show_progress=show_progress,
            )
            text_rows = torch.tensor(with_text, dtype=torch.long)
        molecule_embeddings = torch.cat(parts)
        features = MoleculeFeatures.for_model(model)
        info = {
            "format": INDEX_FORMAT,
            "format_version": INDEX_FORMAT_VERSION,
            "model": model_reference(model, model_name_or_path, revision),
            "tokenizer": getattr(tokenizer, "name_or_path", None) or None,
            "max_length": max_length,
            "embedding_dim": int(molecule_embeddings.shape[1]),
            "source": str(molecules) if isinstance(molecules, (str, os.PathLike)) else type(molecules).__name__,
            "split": split,
            "num_input_rows": num_rows,
            "num_outside_split": num_outside_split,
            "num_molecules": len(kept),
            "num_texts": 0 if text_rows is None else int(text_rows.shape[0]),
            "num_skipped": len(skipped),
            "num_without_description": num_without_description,
            "skipped": skipped,
            "featurization": features.describe(),
            "build_seconds": round(time.perf_counter() - started, 3),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if info["tokenizer"] is not None and os.path.isdir(info["tokenizer"]):
            info["tokenizer"] = str(Path(info["tokenizer"]).resolve())
        logger.info(
            "Indexed %d molecules%s from %s in %.1f s (%d rows skipped).",
            len(kept),
            f" and {info['num_texts']} descriptions" if texts else "",
            info["source"],
            info["build_seconds"],
            len(skipped),
        )
        return cls(
            molecule_embeddings,
            rows,
            text_embeddings=text_embeddings,
            text_rows=text_rows,
            info=info,
            model=model,
            tokenizer=tokenizer,
        )

    # ------------------------------------------------------------------------------------------ saving
    def save(self, directory: str | os.PathLike) -> Path:
        """Writes ``embeddings.safetensors``, ``rows.parquet`` and ``index.json`` into ``directory`` (created).

        Returns:
            Path: the folder.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.info.get("model", {}).get("name_or_path") is None:
            logger.warning(
                "The index's model has no path or Hub id: MoleculeIndex.load(%s) will need `model=` and `tokenizer=`. "
                "Save the model first, or pass `model_name_or_path` to build.",
                directory,
            )
        tensors = {"molecules": self.molecule_embeddings.contiguous()}
        if self.text_embeddings is not None:
            tensors.update(texts=self.text_embeddings.contiguous(), text_rows=self.text_rows.contiguous())
        save_file(tensors, str(directory / EMBEDDINGS_FILE), metadata={"format": INDEX_FORMAT})
        schema = pa.schema(
            [(name, pa.int64() if name in ("row", "line") else pa.string()) for name in LIBRARY_COLUMNS]
        )
        pq.write_table(pa.Table.from_pydict(self.rows, schema=schema), directory / ROWS_FILE)
        with open(directory / INFO_FILE, "w", encoding="utf-8") as f:
            json.dump(self.info, f, indent=2)
        logger.info("Saved the index (%d molecules, %d texts) to %s", self.num_molecules, self.num_texts, directory)
        return directory

    @classmethod
    def load(
        cls, directory: str | os.PathLike, model: torch.nn.Module | None = None, tokenizer: Any = None
    ) -> MoleculeIndex:
        """Opens an index saved by :meth:`save`.

        Args:
            directory (str | os.PathLike): the index folder.
            model (torch.nn.Module | None): the backbone; when None it is loaded from the recorded path and
                revision the first time it is needed (a search).
            tokenizer: its tokenizer; loaded with the model when None.

        Returns:
            MoleculeIndex: the index.

        Raises:
            FileNotFoundError: the folder or one of its files is missing.
            ValueError: the folder is not a class-hf index or has a newer format version.
        """
        import pyarrow.parquet as pq
        from safetensors.torch import load_file

        directory = Path(directory)
        missing = [name for name in (INFO_FILE, EMBEDDINGS_FILE, ROWS_FILE) if not (directory / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{directory} is not a class-hf index: {missing} missing. Build one with `class-hf index` or "
                "MoleculeIndex.build(...).save(directory)."
            )
        try:
            with open(directory / INFO_FILE, encoding="utf-8") as f:
                info = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{directory / INFO_FILE} is not valid JSON ({err}); the index is damaged. Rebuild it with `class-hf "
                "index`."
            ) from err
        if not isinstance(info, dict):
            raise ValueError(f"{directory / INFO_FILE} must hold a JSON object, got {type(info).__name__}.")
        if info.get("format") != INDEX_FORMAT or info.get("format_version", 0) > INDEX_FORMAT_VERSION:
            raise ValueError(
                f"{directory / INFO_FILE} describes format {info.get('format')!r} version {info.get('format_version')}"
                f"; this class-hf reads {INDEX_FORMAT!r} up to version {INDEX_FORMAT_VERSION}. Upgrade class-hf or "
                "rebuild the index."
            )
        try:
            tensors = load_file(str(directory / EMBEDDINGS_FILE))
        except Exception as err:  # safetensors raises SafetensorError (not an OSError) for a damaged header or data
            raise ValueError(
                f"{directory / EMBEDDINGS_FILE} cannot be read as safetensors ({type(err).__name__}: {err}); the "
                "index is damaged. Rebuild it with `class-hf index`."
            ) from err
        if "molecules" not in tensors:
            raise ValueError(
                f"{directory / EMBEDDINGS_FILE} holds no `molecules` tensor (it has {sorted(tensors)}); rebuild the "
                "index."
            )
        try:
            rows = pq.read_table(directory / ROWS_FILE).to_pydict()
        except Exception as err:  # pyarrow.ArrowInvalid for a damaged file
            raise ValueError(
                f"{directory / ROWS_FILE} cannot be read as parquet ({type(err).__name__}: {err}); the index is "
                "damaged. Rebuild it with `class-hf index`."
            ) from err
        try:
            index = cls(
                tensors["molecules"],
                rows,
                text_embeddings=tensors.get("texts"),
                text_rows=tensors.get("text_rows"),
                info=info,
                model=model,
                tokenizer=tokenizer,
            )
        except ValueError as err:
            raise ValueError(f"{directory / EMBEDDINGS_FILE}: {err}") from err
        if model is not None:
            index._note_other_model(model, f"The index {directory}")
        return index

    def _note_other_model(self, model: torch.nn.Module, where: str) -> None:
        """A warning when ``model`` is not of the type of the model recorded as having built the index."""
        recorded = self.info.get("model", {}).get("model_type")
        given = getattr(getattr(model, "config", None), "model_type", None)
        if recorded and given and recorded != given:
            logger.warning(
                "%s was built with a %r model (%s) but is searched with a %r model: the scores compare embeddings "
                "of two different models and mean nothing unless they share one embedding space.",
                where,
                recorded,
                self.info.get("model", {}).get("name_or_path") or "held in memory",
                given,
            )

    # ------------------------------------------------------------------------------------------ queries
    def encode_queries(self, texts: Sequence[str]) -> torch.Tensor:
        """``[len(texts), D]`` embeddings of query texts (checked: no empty query)."""
        from ..evaluation.encoding import embed_texts

        for position, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                which = "The query" if len(texts) == 1 else f"Query {position}"
                raise ValueError(
                    f"{which} is empty ({text!r}): type a description of the molecule you are looking for, e.g. "
                    '"The molecule is a monocarboxylic acid anion ...".'
                )
        max_length = int(self.info.get("max_length") or 256)
        model = self.model  # loads the model (and its tokenizer) first: its error says what to pass
        self._note_truncation(texts, max_length)
        embeds = embed_texts(model, list(texts), self.tokenizer, max_length=max_length, show_progress=False)
        return _finite_queries(embeds, "query")

    def _note_truncation(self, texts: Sequence[str], max_length: int) -> None:
        """One warning when queries are longer than the model reads (they are cut, as in training)."""
        lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]]
        longer = [n for n in lengths if n > max_length]
        if not longer:
            return
        if len(texts) == 1:
            logger.warning(
                "The query has %d tokens; the model reads the first %d, so the rest of it is ignored.",
                longer[0],
                max_length,
            )
        else:
            logger.warning(
                "%d of %d queries are longer than the %d tokens the model reads (up to %d tokens); each is cut to its "
                "first %d tokens.",
                len(longer),
                len(texts),
                max_length,
                max(longer),
                max_length,
            )

    def encode_smiles(self, smiles: Sequence[str]) -> torch.Tensor:
        """``[len(smiles), D]`` embeddings of query molecules (checked: every SMILES must parse)."""
        from ..data.graphs import parse_smiles
        from ..evaluation.encoding import embed_molecules

        for position, value in enumerate(smiles):
            try:
                parse_smiles(value)
            except ValueError as err:
                which = "The query SMILES" if len(smiles) == 1 else f"Query SMILES {position}"
                raise ValueError(f"{which} is not a valid molecule: {err}") from None
        featurized = featurize_for_model(list(smiles), self.model)
        embeds = embed_molecules(self.model, featurized, molecule_collator(self.model), show_progress=False)
        return _finite_queries(embeds, "query SMILES")

    def _query(self, query: Any, smiles: Any) -> tuple[torch.Tensor, str, bool]:
        """``(query_embeds, direction, single)`` from exactly one of ``query`` / ``smiles``."""
        if (query is None) == (smiles is None):
            raise ValueError("Pass either a text `query` (text -> molecule) or `smiles` (molecule -> text), not both.")
        value = query if query is not None else smiles
        single = isinstance(value, str)
        values = [value] if single else list(value)
        if not values:
            raise ValueError("The list of queries is empty: pass at least one query.")
        if query is not None:
            return self._same_size(self.encode_queries(values)), "t2m", single
        if self.text_embeddings is None:
            raise ValueError(
                "This index holds no descriptions, so it cannot answer molecule -> text (`smiles`) queries; rebuild "
                "it with texts=True (`class-hf index ... --texts`)."
            )
        return self._same_size(self.encode_smiles(values)), "m2t", single

    def _same_size(self, embeds: torch.Tensor) -> torch.Tensor:
        """Query embeddings, refused when their size is not the index's (a model other than the one that built it)."""
        if embeds.shape[1] != self.embedding_dim:
            reference = self.info.get("model", {})
            built_with = reference.get("name_or_path") or "a model held in memory"
            raise ValueError(
                f"The model embeds queries in {embeds.shape[1]} dimensions but the index holds {self.embedding_dim}-"
                f"dimensional embeddings (built with {built_with}, model_type {reference.get('model_type')!r}). "
                "Search with the model that built the index, or rebuild the index with this one."
            )
        return embeds

    def _candidates(self, direction: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if direction == "t2m":
            return self.molecule_embeddings, None
        return self.text_embeddings, self.text_rows

    def _result(self, index: int, rank: int, score: float, direction: str, is_truth: bool) -> SearchResult:
        row = index if direction == "t2m" else int(self.text_rows[index])
        return SearchResult(
            rank=rank,
            score=float(score),
            cid=self.rows["cid"][row],
            smiles=self.rows["smiles"][row],
            name=self.rows["name"][row],
            description=self.rows["description"][row],
            row=int(self.rows["row"][row]),
            is_truth=is_truth,
        )

    def _truth_positions(self, truth_cid: str, direction: str) -> list[int]:
        """Candidate indices of the indexed rows with ``truth_cid``, in library order (empty when absent)."""
        cache = self._cid_positions
        if direction not in cache:
            _, text_rows = self._candidates(direction)
            rows = range(self.num_molecules) if text_rows is None else text_rows.tolist()
            positions: dict[str, list[int]] = {}
            for i, row in enumerate(rows):
                positions.setdefault(self.rows["cid"][row], []).append(i)
            cache[direction] = positions
        return cache[direction].get(truth_cid, [])

    def _truth_position(self, truth_cid: str, direction: str) -> int:
        """Candidate index of the truth: the first indexed row with ``truth_cid`` (-1 when absent), with a warning
        when other rows have the same CID."""
        positions = self._truth_positions(truth_cid, direction)
        if not positions:
            logger.warning("The truth CID %s is not in the index: nothing to highlight.", truth_cid)
            return -1
        if len(positions) > 1:
            _, text_rows = self._candidates(direction)
            rows = [self._describe_row(i if text_rows is None else int(text_rows[i])) for i in positions[:5]]
            what = "molecules" if direction == "t2m" else "descriptions"
            logger.warning(
                "The truth CID %s is on %d indexed %s (%s%s). The first, %s, is the truth; the others are ranked as "
                "any other candidate (one that scores at least as high counts against the truth's rank).",
                truth_cid,
                len(positions),
                what,
                "; ".join(rows),
                "; ..." if len(positions) > 5 else "",
                rows[0],
            )
        return positions[0]

    def search_with_truth(
        self,
        query: Any = None,
        *,
        smiles: Any = None,
        k: int = 10,
        truth_cid: str | Sequence[str | None] | None = None,
    ) -> tuple[list, list]:
        """As :meth:`search`, also locating each query's ground truth, wherever it ranks.

        The truth is one candidate: the first indexed row (in library order) with ``truth_cid``; a warning says when
        other rows have the same CID (they are ranked like any other candidate). Its rank counts every other
        candidate that scores at least as high (ties count against the query, as in the retrieval metrics), and the
        results agree with it: when the truth is within the top ``k``, it is the result at that rank, after the
        candidates it ties with, and it is the only result with ``is_truth``.

        Args:
            query: a text or a list of texts (text -> molecule).
            smiles: a SMILES or a list of SMILES (molecule -> text).
            k (int): candidates per query.
            truth_cid: the CID of the true candidate (one per query for a list; None where unknown).

        Returns:
            tuple: ``(results, truths)``: for a single query ``list[SearchResult]`` and the truth's
            :class:`SearchResult` (None when ``truth_cid`` is None or not in the index); for a list, one of each per
            query.
        """
        _check_positive("k", k)
        embeds, direction, single = self._query(query, smiles)
        truths = [truth_cid] if single or truth_cid is None or isinstance(truth_cid, str) else list(truth_cid)
        if len(truths) == 1 and embeds.shape[0] > 1:
            truths = truths * embeds.shape[0]
        if len(truths) != embeds.shape[0]:
            raise ValueError(f"`truth_cid` has {len(truths)} entries for {embeds.shape[0]} queries.")
        truths = [None if cid is None else str(cid) for cid in truths]
        located_cids = {cid: self._truth_position(cid, direction) for cid in dict.fromkeys(truths) if cid is not None}
        positions = [-1 if cid is None else located_cids[cid] for cid in truths]
        candidates, _ = self._candidates(direction)
        scorer = getattr(self.model, "score", None)
        # One candidate more than shown: room to move a truth that ties with candidates behind them (see place_truth).
        extra = int(any(position >= 0 for position in positions))
        top_scores, top_indices, truth_rank, truth_score = top_k(
            embeds, candidates, k + extra, scorer=scorer, direction=direction, truth=torch.tensor(positions)
        )
        results, located = [], []
        for q, position in enumerate(positions):
            ranked = list(zip(top_indices[q].tolist(), top_scores[q].tolist(), strict=True))
            if position >= 0:
                ranked = place_truth(ranked, position, int(truth_rank[q]), float(truth_score[q]))
            results.append(
                [self._result(i, rank, s, direction, i == position) for rank, (i, s) in enumerate(ranked[:k], start=1)]
            )
            located.append(
                None
                if position < 0
                else self._result(position, int(truth_rank[q]), float(truth_score[q]), direction, True)
            )
        return (results[0], located[0]) if single else (results, located)

    def search(self, query: Any = None, *, smiles: Any = None, k: int = 10, truth_cid: Any = None) -> list:
        """The ``k`` best candidates for a text query (molecules) or a SMILES query (descriptions).

        Args:
            query: a description (``str``) or a list of them: text -> molecule.
            smiles: a SMILES (``str``) or a list of them: molecule -> text (needs an index built with texts).
            k (int): candidates per query (at most the index size).
            truth_cid: CID(s) of the ground truth, to mark it (``SearchResult.is_truth``).

        Returns:
            list: ``list[SearchResult]`` best first for a single query; ``list[list[SearchResult]]`` for a list.

        Raises:
            ValueError: an empty query, an invalid query SMILES (the message says why RDKit rejects it), both or
                neither of ``query`` / ``smiles``, ``smiles`` on an index without texts, or ``k < 1``.
        """
        return self.search_with_truth(query, smiles=smiles, k=k, truth_cid=truth_cid)[0]

    def __repr__(self) -> str:
        model = self.info.get("model", {}).get("name_or_path")
        return (
            f"MoleculeIndex(num_molecules={self.num_molecules}, num_texts={self.num_texts}, "
            f"embedding_dim={self.embedding_dim}, model={model!r})"
        )
