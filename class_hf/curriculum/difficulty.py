"""Sample difficulty: the number of confusing samples of every training pair, stored as dataset columns.

For pair ``i`` of ``N``, with a scorer ``s`` (the backbone's :meth:`score`, cosine of the global embeddings by
default) and a margin ``delta``:

- ``n_confusing_t2m[i] = #{j != i : s(t_i, m_j) >= s(t_i, m_i) - delta}`` (molecules confused with the true one);
- ``n_confusing_m2t[i] = #{j != i : s(t_j, m_i) >= s(t_i, m_i) - delta}`` (texts confused with the true one);
- ``difficulty[i]`` = percentile rank of ``N_i = n_confusing_t2m[i] + n_confusing_m2t[i]`` in ``[0, 1]``.

With ``delta = 0`` the counts are exactly ``rank - 1`` in each direction (ties count against the query, as in the
retrieval metrics). The counting itself is :func:`class_hf.evaluation.retrieval.confusion_counts` (chunked, never an
``N x N`` matrix in memory).

Percentile rank, ties: ``difficulty = (r - 1) / (N - 1)`` where ``r`` is the *average* 1-based rank of ``N_i`` among
all pairs (the mid-rank of its tie group), so equal ``N_i`` always get equal difficulty, the unique easiest pair gets
0 and the unique hardest 1. A single pair gets 0; when every pair ties, every pair gets 0.5.

Where the scoring encoder comes from is chosen by :func:`compute_difficulty` (``precomputed``,
``precomputed:<path-or-hub-id>``, ``warmup``, ``fingerprint``, ``model:<path-or-hub-id>`` or a callable).
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from datasets import Dataset, Value

from ..data.features import MoleculeFeatures, collator_for_model

logger = logging.getLogger(__name__)

N_T2M_COLUMN = "n_confusing_t2m"
N_M2T_COLUMN = "n_confusing_m2t"
DIFFICULTY_COLUMN = "difficulty"
DIFFICULTY_COLUMNS = (N_T2M_COLUMN, N_M2T_COLUMN, DIFFICULTY_COLUMN)
NEIGHBORS_COLUMN = "confusing_neighbors"
"""Optional column: the ``k`` pairs each pair is most confused with (see ``confusing_neighbors`` in evaluation)."""
DIFFICULTY_SOURCES = ("precomputed", "precomputed:<path-or-hub-id>", "warmup", "fingerprint", "model:<path-or-hub-id>")

# Batch keys the collator may add that a backbone's forward never receives (see CONTRIBUTING, backbone contract).
_NON_MODEL_KEYS = ("sample_idx", "difficulty")


def _as_count_array(values: Any, name: str) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional (one count per pair), got shape {array.shape}.")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(f"`{name}` must hold whole numbers (confusion counts), got dtype {array.dtype}.")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        row = int(np.argmin(array))
        raise ValueError(f"`{name}` must be non-negative; row {row} holds {array[row]}.")
    return array


def difficulty_from_counts(n_t2m: Any, n_m2t: Any) -> np.ndarray:
    """Percentile rank of ``N_i = n_t2m[i] + n_m2t[i]`` in ``[0, 1]``, ties sharing their average rank.

    Args:
        n_t2m (Any): text->molecule confusion counts, shape ``[N]`` (tensor, array or list).
        n_m2t (Any): molecule->text confusion counts, shape ``[N]``.

    Returns:
        np.ndarray: ``float32 [N]``, ``(average_rank - 1) / (N - 1)`` (0 for a single pair).

    Example:
        >>> difficulty_from_counts([0, 0, 3, 1], [0, 0, 2, 0]).tolist()
        [0.1666666716337204, 0.1666666716337204, 1.0, 0.6666666865348816]
    """
    t2m = _as_count_array(n_t2m, "n_t2m")
    m2t = _as_count_array(n_m2t, "n_m2t")
    if t2m.shape != m2t.shape:
        raise ValueError(f"`n_t2m` and `n_m2t` must have the same length, got {t2m.size} and {m2t.size}.")
    total = t2m + m2t
    n = total.size
    if n <= 1:
        return np.zeros(n, dtype=np.float32)
    values, inverse, counts = np.unique(total, return_inverse=True, return_counts=True)
    below = np.concatenate([[0], np.cumsum(counts)[:-1]])  # pairs strictly easier than each distinct value
    mid_rank0 = below + (counts - 1) / 2.0  # 0-based average rank of each tie group
    return (mid_rank0[inverse] / (n - 1)).astype(np.float32)


def add_difficulty_columns(dataset: Dataset, n_t2m: Any, n_m2t: Any) -> Dataset:
    """Adds ``n_confusing_t2m``, ``n_confusing_m2t`` (int64) and ``difficulty`` (float32) to ``dataset``.

    Existing columns of these names are replaced. The columns are appended to the Arrow table (no rewrite of the
    other columns) with explicit ``Features``.

    Args:
        dataset (Dataset): the scored pairs, one row per pair, in the order of the counts.
        n_t2m (Any): text->molecule confusion counts ``[len(dataset)]``.
        n_m2t (Any): molecule->text confusion counts ``[len(dataset)]``.

    Returns:
        Dataset: the dataset with the three columns.
    """
    t2m = _as_count_array(n_t2m, "n_t2m")
    m2t = _as_count_array(n_m2t, "n_m2t")
    if t2m.size != len(dataset) or m2t.size != len(dataset):
        raise ValueError(
            f"The confusion counts must have one value per row: the dataset has {len(dataset)} rows but `n_t2m` has "
            f"{t2m.size} and `n_m2t` has {m2t.size}. Score the same dataset you add the columns to."
        )
    difficulty = difficulty_from_counts(t2m, m2t)
    existing = [c for c in DIFFICULTY_COLUMNS if c in dataset.column_names]
    if existing:
        logger.info("Replacing the existing difficulty columns %s.", existing)
        dataset = dataset.remove_columns(existing)
    dataset = dataset.add_column(N_T2M_COLUMN, t2m, feature=Value("int64"))
    dataset = dataset.add_column(N_M2T_COLUMN, m2t, feature=Value("int64"))
    return dataset.add_column(DIFFICULTY_COLUMN, difficulty, feature=Value("float32"))


def difficulty_summary(dataset: Dataset) -> dict[str, float]:
    """Summary of the difficulty columns: the scorer's MRR on the scored pairs and the share of trivial pairs.

    Ranks are ``n_confusing + 1``, so the MRR here is the one the scorer reaches with the scored pairs as pool.

    Args:
        dataset (Dataset): a dataset with ``n_confusing_t2m`` and ``n_confusing_m2t``.

    Returns:
        dict[str, float]: ``num_pairs``, ``scored_t2m_mrr``, ``scored_m2t_mrr``, ``mean_confusing`` (mean ``N_i``) and
        ``zero_confusion_share`` (share of pairs with ``N_i == 0``); empty if the count columns are absent.
    """
    if N_T2M_COLUMN not in dataset.column_names or N_M2T_COLUMN not in dataset.column_names:
        return {}
    t2m = np.asarray(dataset[N_T2M_COLUMN], dtype=np.int64)
    m2t = np.asarray(dataset[N_M2T_COLUMN], dtype=np.int64)
    total = t2m + m2t
    return {
        "num_pairs": int(total.size),
        "scored_t2m_mrr": float(np.mean(1.0 / (t2m + 1))) if total.size else float("nan"),
        "scored_m2t_mrr": float(np.mean(1.0 / (m2t + 1))) if total.size else float("nan"),
        "mean_confusing": float(total.mean()) if total.size else float("nan"),
        "zero_confusion_share": float(np.mean(total == 0)) if total.size else float("nan"),
    }


def score_difficulty(
    dataset: Dataset,
    text_embeds: torch.Tensor,
    mol_embeds: torch.Tensor,
    *,
    scorer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    delta: float = 0.0,
    chunk_size: int = 1024,
    neighbors: int = 0,
) -> Dataset:
    """Counts the confusing samples of every pair from its embeddings and adds the difficulty columns.

    Args:
        dataset (Dataset): the pairs; row ``i`` matches ``text_embeds[i]`` and ``mol_embeds[i]``.
        text_embeds (torch.Tensor): ``[N, D]`` text embeddings.
        mol_embeds (torch.Tensor): ``[N, D]`` molecule embeddings.
        scorer (Callable | None): ``scorer(text_chunk, mol_chunk) -> [a, b]`` scores; cosine when None.
        delta (float): margin ``delta`` of the confusion test.
        chunk_size (int): rows per chunk of the similarity computation.
        neighbors (int): also add ``confusing_neighbors``, the ``k`` pairs each pair is most confused with (0: no).

    Returns:
        Dataset: ``dataset`` with ``n_confusing_t2m``, ``n_confusing_m2t`` and ``difficulty``.
    """
    from ..evaluation.retrieval import confusion_counts

    if len(text_embeds) != len(dataset) or len(mol_embeds) != len(dataset):
        raise ValueError(
            f"Need one embedding per row: the dataset has {len(dataset)} rows, `text_embeds` {len(text_embeds)} and "
            f"`mol_embeds` {len(mol_embeds)}."
        )
    n_t2m, n_m2t = confusion_counts(text_embeds, mol_embeds, scorer=scorer, delta=delta, chunk_size=chunk_size)
    scored = add_difficulty_columns(dataset, n_t2m, n_m2t)
    if neighbors:
        scored = add_neighbors_column(scored, text_embeds, mol_embeds, neighbors, scorer, chunk_size)
    return scored


def add_neighbors_column(dataset: Dataset, text_embeds, mol_embeds, k: int, scorer=None, chunk_size: int = 1024):
    """``dataset`` with ``confusing_neighbors``: the ``k`` pairs each pair is most confused with (at most N - 1)."""
    from ..evaluation.retrieval import confusing_neighbors

    k = min(int(k), len(dataset) - 1)
    values = confusing_neighbors(text_embeds, mol_embeds, k, scorer=scorer, chunk_size=chunk_size)
    if NEIGHBORS_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(NEIGHBORS_COLUMN)
    return dataset.add_column(NEIGHBORS_COLUMN, values.tolist())


def score_with_model(
    model: torch.nn.Module,
    dataset: Dataset,
    collator: Callable[[list[dict]], dict],
    *,
    delta: float = 0.0,
    chunk_size: int = 1024,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    show_progress: bool = True,
    neighbors: int = 0,
) -> Dataset:
    """Scores every pair with a backbone: embeds with it, counts with its ``score``, adds the difficulty columns.

    This is also the refresh used at curriculum stage boundaries (``difficulty_refresh``): pass the current model.

    Args:
        model (torch.nn.Module): a backbone following the contract (``encode_text``, ``encode_molecule``, ``score``).
        dataset (Dataset): the pairs; when they have a ``smiles`` column, the molecule columns the model reads are
            added if missing (:meth:`~class_hf.data.features.MoleculeFeatures.complete`) and kept in the result.
        collator (Callable): builds model inputs from rows (e.g. ``MoleculeTextCollator``).
        delta (float): margin of the confusion test.
        chunk_size (int): rows per chunk of the similarity computation.
        batch_size (int): rows per encoding batch.
        device (str | torch.device | None): where to encode; the model's device when None.
        show_progress (bool): show a progress bar while encoding.

    Returns:
        Dataset: ``dataset`` with ``n_confusing_t2m``, ``n_confusing_m2t`` and ``difficulty``.
    """
    from ..evaluation.encoding import embed_pairs

    if len(dataset) == 0:
        raise ValueError("`dataset` is empty: there is nothing to score.")
    dataset = MoleculeFeatures.for_model(model).complete(dataset)
    text_embeds, mol_embeds = embed_pairs(
        model, dataset, collator, batch_size=batch_size, device=device, show_progress=show_progress
    )
    scorer = getattr(model, "score", None)
    return score_difficulty(
        dataset, text_embeds, mol_embeds, scorer=scorer, delta=delta, chunk_size=chunk_size, neighbors=neighbors
    )


def check_difficulty_column(dataset: Dataset, column: str = DIFFICULTY_COLUMN) -> None:
    """Checks precomputed difficulty: ``column`` present, one finite number in ``[0, 1]`` per row.

    The count columns (``n_confusing_t2m``, ``n_confusing_m2t``), when present, must be finite numbers too. This is the
    check of ``compute_difficulty(dataset, "precomputed")`` and of the trainer's precomputed difficulty.

    Args:
        dataset (Dataset): the scored pairs.
        column (str): the difficulty column.

    Raises:
        ValueError: naming the column (and the first bad row): missing, not numeric (strings, booleans), not finite,
            or outside ``[0, 1]``.
    """
    if column not in dataset.column_names:
        raise ValueError(
            f"`difficulty_source='precomputed'` needs a `{column}` column, but the dataset only has "
            f"{dataset.column_names}. Score it first (`class-hf score` or `compute_difficulty`) or choose another "
            "`difficulty_source`."
        )
    for name in dict.fromkeys([column, *DIFFICULTY_COLUMNS]):
        if name not in dataset.column_names:
            continue
        feature = dataset.features[name]
        if not isinstance(feature, Value) or not (
            feature.dtype.startswith("int") or feature.dtype.startswith("float")
        ):
            raise ValueError(
                f"Column `{name}` must hold one number per row, but its feature is {feature}"
                + (f" (row 0 holds {dataset[0][name]!r})" if len(dataset) else "")
                + ". Convert it to float (`dataset.cast_column`) or score the dataset again."
            )
        values = np.asarray(dataset[name], dtype=np.float64)
        if values.shape != (len(dataset),):
            raise ValueError(f"Column `{name}` has {values.size} values for {len(dataset)} rows.")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(f"Column `{name}` is missing or not finite in {bad.size} rows (first: row {bad[0]}).")
    difficulty = np.asarray(dataset[column], dtype=np.float64)
    outside = np.flatnonzero((difficulty < 0) | (difficulty > 1))
    if outside.size:
        raise ValueError(
            f"Column `{column}` must lie in [0, 1]; {outside.size} rows do not "
            f"(row {outside[0]} holds {difficulty[outside[0]]}). Difficulty is a percentile rank: rescale the values "
            "or score the dataset with `compute_difficulty`."
        )


def _load_any_dataset(path_or_id: str, split: str | None = None) -> Dataset:
    """Loads a dataset saved with ``save_to_disk`` or from the Hub; returns ``split`` of a ``DatasetDict``."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    from ..data.sources import is_saved_dataset

    if is_saved_dataset(path_or_id):
        loaded = load_from_disk(path_or_id)
    else:
        loaded = load_dataset(path_or_id)
    if isinstance(loaded, DatasetDict):
        if split is None:
            if len(loaded) != 1:
                raise ValueError(f"{path_or_id!r} has the splits {list(loaded)}; name the one to use.")
            split = next(iter(loaded))
        if split not in loaded:
            raise ValueError(f"{path_or_id!r} has no split {split!r}; it has {list(loaded)}.")
        return loaded[split]
    return loaded


def attach_precomputed(dataset: Dataset, scored: Dataset, *, key: str = "cid") -> Dataset:
    """Copies the difficulty columns of an already-scored dataset onto ``dataset``.

    Rows are matched by ``key`` when both datasets have that column (every row of ``dataset`` must be found),
    otherwise by position (the lengths must agree).

    Args:
        dataset (Dataset): the pairs to train on.
        scored (Dataset): a dataset holding the difficulty columns (e.g. pushed with ``class-hf score``).
        key (str): the column identifying a pair.

    Returns:
        Dataset: ``dataset`` with the three difficulty columns.
    """
    missing = [c for c in (N_T2M_COLUMN, N_M2T_COLUMN) if c not in scored.column_names]
    if missing:
        raise ValueError(f"The precomputed scores lack the column(s) {missing}; they have {scored.column_names}.")
    n_t2m = np.asarray(scored[N_T2M_COLUMN])
    n_m2t = np.asarray(scored[N_M2T_COLUMN])
    if key in dataset.column_names and key in scored.column_names:
        position = {str(k): i for i, k in enumerate(scored[key])}
        keys = [str(k) for k in dataset[key]]
        absent = [k for k in keys if k not in position]
        if absent:
            raise ValueError(
                f"{len(absent)} of {len(keys)} rows have no precomputed score (first `{key}`: {absent[0]!r}). Score "
                "this dataset instead, or choose another `difficulty_source`."
            )
        order = np.asarray([position[k] for k in keys], dtype=np.int64)
        # Counts are relative to the scored pool; the percentile is recomputed over the rows kept here.
        return add_difficulty_columns(dataset, n_t2m[order], n_m2t[order])
    if len(scored) != len(dataset):
        raise ValueError(
            f"The precomputed scores have {len(scored)} rows but the dataset has {len(dataset)}, and there is no "
            f"`{key}` column in both to match rows by. Use scores of this very dataset."
        )
    return add_difficulty_columns(dataset, n_t2m, n_m2t)


class _DropNonModelKeys:
    """Wraps a collator so a plain ``Trainer`` passes only backbone inputs to ``forward``."""

    def __init__(self, collator: Callable[[list[dict]], dict]) -> None:
        self.collator = collator

    def __call__(self, rows: list[dict]) -> dict:
        batch = self.collator(rows)
        return {k: v for k, v in batch.items() if k not in _NON_MODEL_KEYS}


def warm_up_copy(
    model: torch.nn.Module,
    dataset: Dataset,
    collator: Callable[[list[dict]], dict],
    *,
    fraction: float = 0.25,
    epochs: float = 1,
    learning_rate: float = 1e-4,
    batch_size: int = 64,
    seed: int = 0,
    show_progress: bool = True,
) -> tuple[torch.nn.Module, int, int]:
    """Deep-copies ``model`` and trains the copy briefly on a random subset with a plain ``transformers.Trainer``.

    Args:
        model (torch.nn.Module): the backbone; it is not modified.
        dataset (Dataset): featurized pairs.
        collator (Callable): the data collator.
        fraction (float): share of ``dataset`` in the random warm-up subset, in (0, 1].
        epochs (float): warm-up epochs over the subset.
        learning_rate (float): peak learning rate (linear decay, no warm-up steps).
        batch_size (int): per-device batch size.
        seed (int): seed of the subset and of the Trainer.
        show_progress (bool): show the Trainer's progress bar.

    Returns:
        tuple[torch.nn.Module, int, int]: the warmed copy (in eval mode), the number of warm-up pairs and of its
        optimizer steps.
    """
    from transformers import Trainer, TrainingArguments

    from ..log_output import use_quiet_logs

    if not 0 < fraction <= 1:
        raise ValueError(f"`warmup_fraction` must lie in (0, 1], got {fraction}.")
    if epochs <= 0:
        raise ValueError(f"`warmup_epochs` must be positive, got {epochs}.")
    if len(dataset) < 2:
        raise ValueError(f"The warm-up needs at least 2 pairs (a contrastive batch), the dataset has {len(dataset)}.")
    num = min(max(2, math.ceil(fraction * len(dataset))), len(dataset))
    rng = np.random.default_rng(seed)
    subset = dataset.select(np.sort(rng.choice(len(dataset), size=num, replace=False)))
    warm = copy.deepcopy(model)
    warm.train()
    # The Trainer seeds the global RNGs; restore them so that the caller's training is not affected.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with tempfile.TemporaryDirectory(prefix="class_hf_warmup_") as tmp, torch.random.fork_rng(devices=devices):
        args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            remove_unused_columns=False,
            report_to="none",
            use_cpu=not torch.cuda.is_available(),
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            disable_tqdm=not show_progress,
        )
        trainer = Trainer(model=warm, args=args, train_dataset=subset, data_collator=_DropNonModelKeys(collator))
        use_quiet_logs(trainer)  # its end-of-training summary would read as if the run itself had ended
        trainer.train()
        warm, steps = trainer.model, trainer.state.global_step
        del trainer
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    warm.eval()
    return warm, len(subset), steps


def _eval_mrr(model: torch.nn.Module, eval_dataset: Dataset, collator, *, batch_size: int, chunk_size: int) -> dict:
    """The scorer's MRR on held-out pairs (pool: those pairs), through the one evaluation path."""
    from ..evaluation.evaluator import RetrievalEvaluator

    evaluator = RetrievalEvaluator(eval_dataset, data_collator=collator, batch_size=batch_size, chunk_size=chunk_size)
    metrics = evaluator(model)
    return {"eval_t2m_mrr": metrics["t2m_mrr"], "eval_m2t_mrr": metrics["m2t_mrr"]}


def _text_encoder_of(model: torch.nn.Module | None) -> torch.nn.Module | None:
    if model is None:
        return None
    encoder = getattr(model, "text_encoder", None)
    return encoder if isinstance(encoder, torch.nn.Module) else None


def _collator_for(tokenizer, data_collator, model: torch.nn.Module | None = None):
    if data_collator is not None:
        return data_collator
    return None if tokenizer is None else collator_for_model(tokenizer, model)


def compute_difficulty(
    dataset: Dataset,
    source: str | Callable[[Dataset], tuple[torch.Tensor, torch.Tensor]],
    *,
    model: torch.nn.Module | None = None,
    data_collator: Callable[[list[dict]], dict] | None = None,
    tokenizer=None,
    text_encoder: str | torch.nn.Module | None = None,
    seed: int = 0,
    delta: float = 0.0,
    chunk_size: int = 1024,
    batch_size: int = 64,
    warmup_fraction: float = 0.25,
    warmup_epochs: float = 1,
    warmup_learning_rate: float = 1e-4,
    warmup_batch_size: int | None = None,
    eval_dataset: Dataset | None = None,
    fingerprint_kwargs: Mapping[str, Any] | None = None,
    show_progress: bool = True,
    neighbors: int = 0,
) -> tuple[Dataset, dict[str, Any]]:
    """Adds the difficulty columns to ``dataset`` from the chosen ``source`` and reports what it cost.

    Sources:

    - ``"precomputed"``: the dataset already has ``difficulty`` (checked: present, numeric, finite, in [0, 1]).
    - ``"precomputed:<path-or-hub-id>"``: copy the columns of a scored dataset (``save_to_disk`` folder or Hub id),
      matched by ``cid`` (or by position when there is no ``cid``).
    - ``"warmup"``: a deep copy of ``model`` trained on a random ``warmup_fraction`` of the pairs for
      ``warmup_epochs`` (plain ``transformers.Trainer``), then used to score every pair; the copy is discarded.
    - ``"fingerprint"``: a :class:`~class_hf.curriculum.fingerprint_scorer.FingerprintScorer` fitted on frozen
      features (``text_encoder``, or the text encoder of ``model``) and Morgan count fingerprints.
    - ``"model:<path-or-hub-id>"``: a trained checkpoint loaded with ``AutoModel.from_pretrained``.
    - a callable ``source(dataset) -> (text_embeds, mol_embeds)``; its ``score`` attribute, if any, is the scorer
      (cosine otherwise). A fitted ``FingerprintScorer`` is such a callable.

    Args:
        dataset (Dataset): the training pairs; for ``warmup`` and ``model:`` the molecule columns the scoring
            backbone reads are added when missing (and kept in the result; see
            :meth:`~class_hf.data.features.MoleculeFeatures.complete`).
        source (str | Callable): where the scoring encoder comes from (see above).
        model (torch.nn.Module | None): the backbone (``warmup``; its text encoder serves ``fingerprint``).
        data_collator (Callable | None): the collator (``warmup``, ``model:``); built from ``tokenizer`` if None.
        tokenizer: tokenizer of the text encoder (``fingerprint``; ``model:`` loads the checkpoint's if None).
        text_encoder (str | torch.nn.Module | None): text encoder of the ``fingerprint`` scorer (name, path or module).
        seed (int): seed of the warm-up subset and the fingerprint scorer.
        delta (float): margin of the confusion test.
        chunk_size (int): rows per chunk of the similarity computation.
        batch_size (int): encoding batch size (and the warm-up's when ``warmup_batch_size`` is None).
        warmup_fraction (float): share of pairs the warm-up trains on.
        warmup_epochs (float): warm-up epochs.
        warmup_learning_rate (float): warm-up learning rate.
        warmup_batch_size (int | None): training batch size of the warm-up (``batch_size`` when None).
        eval_dataset (Dataset | None): held-out pairs to report the scorer's MRR on (and to early-stop the
            fingerprint scorer on).
        fingerprint_kwargs (Mapping | None): extra arguments of the ``FingerprintScorer`` constructor (e.g.
            ``projection_dim``) and of its ``fit`` (e.g. ``max_epochs``), told apart by name, and
            ``cross_fit_folds`` (default 5: every pair is scored by projections fitted on the other folds, see
            :meth:`FingerprintScorer.cross_fit_counts`; 0 or 1 scores with the projections fitted on all pairs).
        show_progress (bool): show progress bars.
        neighbors (int): also add ``confusing_neighbors``: the ``k`` pairs each pair is most confused with, by the
            same scorer (0: no).

    Returns:
        tuple[Dataset, dict]: the dataset with ``n_confusing_t2m``, ``n_confusing_m2t``, ``difficulty``, and an info
        dict with ``source``, ``seconds`` (the whole cost, to count in training time), ``num_pairs``,
        ``zero_confusion_share`` (share of pairs with ``N_i == 0``), ``scored_t2m_mrr``/``scored_m2t_mrr`` (the
        scorer's MRR on the scored pairs, which it may have been fitted on), ``eval_t2m_mrr``/``eval_m2t_mrr`` when
        ``eval_dataset`` is given, and source-specific entries.
    """
    start = time.perf_counter()
    info: dict[str, Any] = {}
    if callable(source) and not isinstance(source, str):
        info["source"] = getattr(source, "name", type(source).__name__)
        text_embeds, mol_embeds = source(dataset)
        scorer = getattr(source, "score", None)
        scored = score_difficulty(
            dataset, text_embeds, mol_embeds, scorer=scorer, delta=delta, chunk_size=chunk_size, neighbors=neighbors
        )
        if eval_dataset is not None:
            from ..evaluation.retrieval import retrieval_metrics

            metrics = retrieval_metrics(*source(eval_dataset), scorer=scorer, chunk_size=chunk_size, ks=(1, 10))
            info.update(eval_t2m_mrr=metrics["t2m_mrr"], eval_m2t_mrr=metrics["m2t_mrr"])
    elif not isinstance(source, str):
        raise TypeError(f"`source` must be a string or a callable, got {type(source).__name__}.")
    elif source == "precomputed":
        info["source"] = source
        check_difficulty_column(dataset)
        scored = dataset
    elif source.startswith("precomputed:"):
        info["source"] = source
        scored = attach_precomputed(dataset, _load_any_dataset(source.split(":", 1)[1], split="train"))
    elif source == "warmup":
        info["source"] = source
        if model is None:
            raise ValueError("`difficulty_source='warmup'` needs the backbone: pass `model`.")
        collator = _collator_for(tokenizer, data_collator, model)
        if collator is None:
            raise ValueError("`difficulty_source='warmup'` needs `data_collator` (or `tokenizer`) to batch the pairs.")
        dataset = MoleculeFeatures.for_model(model).complete(dataset)
        warm_batch = warmup_batch_size or batch_size
        warm, num_warm, warm_steps = warm_up_copy(
            model,
            dataset,
            collator,
            fraction=warmup_fraction,
            epochs=warmup_epochs,
            learning_rate=warmup_learning_rate,
            batch_size=warm_batch,
            seed=seed,
            show_progress=show_progress,
        )
        info.update(
            warmup_pairs=num_warm,
            warmup_epochs=warmup_epochs,
            warmup_batch_size=warm_batch,
            warmup_steps=warm_steps,
            warmup_seconds=time.perf_counter() - start,
        )
        scored = score_with_model(
            warm,
            dataset,
            collator,
            delta=delta,
            chunk_size=chunk_size,
            batch_size=batch_size,
            show_progress=show_progress,
            neighbors=neighbors,
        )
        if eval_dataset is not None:
            info.update(_eval_mrr(warm, eval_dataset, collator, batch_size=batch_size, chunk_size=chunk_size))
        del warm
    elif source.startswith("model:"):
        info["source"] = source
        scored, extra = _score_with_checkpoint(
            source.split(":", 1)[1],
            dataset,
            tokenizer=tokenizer,
            data_collator=data_collator,
            delta=delta,
            chunk_size=chunk_size,
            batch_size=batch_size,
            eval_dataset=eval_dataset,
            show_progress=show_progress,
            neighbors=neighbors,
        )
        info.update(extra)
    elif source == "fingerprint":
        info["source"] = source
        encoder = text_encoder if text_encoder is not None else _text_encoder_of(model)
        if encoder is None:
            raise ValueError(
                "`difficulty_source='fingerprint'` needs a text encoder: pass `text_encoder` (a name, path or module) "
                "or a `model` with a `text_encoder` attribute."
            )
        scored, extra = _score_with_fingerprints(
            dataset,
            encoder,
            tokenizer if tokenizer is not None else getattr(data_collator, "tokenizer", None),
            fingerprint_kwargs={"seed": seed, "show_progress": show_progress, **(fingerprint_kwargs or {})},
            delta=delta,
            chunk_size=chunk_size,
            eval_dataset=eval_dataset,
            neighbors=neighbors,
        )
        info.update(extra)
    else:
        raise ValueError(f"Unknown `difficulty_source` {source!r}; choose one of {DIFFICULTY_SOURCES} or a callable.")
    if neighbors and NEIGHBORS_COLUMN not in scored.column_names:
        raise ValueError(
            f"The confusing neighbours of every pair were asked for (`neighbors={neighbors}`), but the "
            f"{info['source']!r} difficulty has no `{NEIGHBORS_COLUMN}` column; score the pairs with a model "
            "(`warmup`, `model:...`, `fingerprint`) or add the column."
        )
    info["seconds"] = time.perf_counter() - start
    info.update(difficulty_summary(scored))
    info.setdefault("num_pairs", len(scored))
    logger.info("Difficulty from %s in %.1f s: %s", info["source"], info["seconds"], info)
    return scored, info


def _score_with_fingerprints(
    dataset: Dataset,
    encoder: str | torch.nn.Module,
    tokenizer,
    *,
    fingerprint_kwargs: Mapping[str, Any],
    delta: float,
    chunk_size: int,
    eval_dataset: Dataset | None,
    neighbors: int = 0,
) -> tuple[Dataset, dict]:
    """``difficulty_source="fingerprint"``: a FingerprintScorer fitted on the pairs (out of fold by default)."""
    from .fingerprint_scorer import FingerprintScorer

    init_names = inspect.signature(FingerprintScorer).parameters
    kwargs = dict(fingerprint_kwargs)
    folds = kwargs.pop("cross_fit_folds", 5)
    init_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in init_names}
    scorer = FingerprintScorer(encoder, tokenizer, **init_kwargs)
    # The fit's own held-out slice chooses the epochs; eval_dataset only reports (it is not scored here).
    scorer.fit(dataset, **kwargs)
    info = {**scorer.fit_info, "fingerprint_cross_fit_folds": folds or 0}
    if folds and folds > 1:
        counts = scorer.cross_fit_counts(dataset, folds, delta=delta, chunk_size=chunk_size)
        scored = add_difficulty_columns(dataset, *counts)
    else:
        embeds = scorer(dataset)
        scored = score_difficulty(dataset, *embeds, scorer=scorer.score, delta=delta, chunk_size=chunk_size)
    if neighbors:
        scored = add_neighbors_column(scored, *scorer(dataset), neighbors, scorer.score, chunk_size)
    if eval_dataset is not None:
        from ..evaluation.retrieval import retrieval_metrics

        metrics = retrieval_metrics(*scorer(eval_dataset), chunk_size=chunk_size, ks=(1, 10))
        info.update(eval_t2m_mrr=metrics["t2m_mrr"], eval_m2t_mrr=metrics["m2t_mrr"])
    return scored, info


def _score_with_checkpoint(
    name_or_path: str,
    dataset: Dataset,
    *,
    tokenizer,
    data_collator,
    delta: float,
    chunk_size: int,
    batch_size: int,
    eval_dataset: Dataset | None,
    show_progress: bool,
    neighbors: int = 0,
) -> tuple[Dataset, dict]:
    from transformers import AutoModel, AutoTokenizer

    from ..models.registry import register_backbones

    if not name_or_path:
        raise ValueError("`difficulty_source='model:<path-or-hub-id>'` needs a path or Hub id after `model:`.")
    register_backbones()
    scorer_model = AutoModel.from_pretrained(name_or_path)
    scorer_model.eval()
    if data_collator is None and tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    collator = _collator_for(tokenizer, data_collator, scorer_model)
    scored = score_with_model(
        scorer_model,
        dataset,
        collator,
        delta=delta,
        chunk_size=chunk_size,
        batch_size=batch_size,
        show_progress=show_progress,
        neighbors=neighbors,
    )
    extra: dict[str, Any] = {}
    if eval_dataset is not None:
        extra.update(_eval_mrr(scorer_model, eval_dataset, collator, batch_size=batch_size, chunk_size=chunk_size))
    return scored, extra
