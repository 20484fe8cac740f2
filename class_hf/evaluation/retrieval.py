"""Cross-modal retrieval scoring: the cosine score, top-k, confusion counts, ranks, Hits@k, MRR and mean rank.

This module is the one implementation of retrieval scoring that evaluation (:mod:`.evaluator`), difficulty scoring
(``class_hf.curriculum.difficulty``) and search (``class_hf.search``) share: :func:`cosine_scores` (also the
backbones' default ``score``), :func:`top_k` (chunked best candidates and the rank of a known truth) and
:func:`confusion_counts` / :func:`ranks` / :func:`retrieval_metrics`.

Every pair ``i`` of a split is a text ``t_i`` and its molecule ``m_i``. Text→molecule (``t2m``) ranks, for each text,
its own molecule among a pool of candidate molecules; molecule→text (``m2t``) does the same the other way round. With
``s`` the retrieval score (cosine of the embeddings by default, or a backbone's ``score``)::

    n_t2m[i] = #{ j != i in the molecule pool : s(t_i, m_j) >= s(t_i, m_i) - delta }
    n_m2t[i] = #{ j != i in the text pool     : s(t_j, m_i) >= s(t_i, m_i) - delta }
    rank     = n + 1   (with delta = 0)

so a candidate that ties with the true one counts against the query (it ranks above it), and
``Hits@k = mean(rank <= k)``, ``MRR = mean(1 / rank)``, ``mean rank = mean(rank)``. The same counts, with a margin
``delta``, are the curriculum's difficulty (``class_hf.curriculum.difficulty``).

Candidate pools (name the pool in every report, e.g. with ``prefix="test_split_"`` / ``prefix="test_all_"``):

- ``split``: only the evaluated split's own molecules (texts), as ORMA's code does. Call without extras.
- ``all``: the split's molecules plus every other molecule of the full ChEBI-20 set (train + validation + test,
  33,010 for the Text2Mol files), as Text2Mol and AMAN do. The pool is the ``N`` rows of the split followed by
  ``extra_mol_embeds`` (``extra_text_embeds`` for ``m2t``), so the extras must hold only the pairs that are *not* in
  the split; otherwise the true molecule would also sit among the extras, tie with itself and cost every query one
  rank. Build them by excluding the split's CIDs from the full set::

      from datasets import concatenate_datasets

      split_cids = set(test["cid"])
      others = concatenate_datasets([full["train"], full["validation"], full["test"]]).filter(
          lambda cid: cid not in split_cids, input_columns="cid"
      )
      other_text, other_mol = embed_pairs(model, others, collator)
      metrics = retrieval_metrics(
          test_text, test_mol, extra_mol_embeds=other_mol, extra_text_embeds=other_text, prefix="test_all_"
      )

  A different CID whose molecule embeds identically (isotopes, duplicated graphs) stays in the pool and ties with
  the true molecule, as in Text2Mol's ranking over all molecules.

Memory: each direction scores ``chunk_size`` queries against the whole pool at a time into one reused float32 buffer
(``4 * chunk_size * pool_size`` bytes: 135 MB for 1,024 queries against 33,010 candidates), compared in place, plus
a few copies of the pool (``4 * pool_size * dim`` bytes each); never an ``N x pool`` matrix. The directions run one
after the other.

Exact ties: candidates with identical embeddings always receive identical scores. Each pool is de-duplicated
(``torch.unique`` over rows) before scoring and every unique row counts with its multiplicity, so whether two equal
rows tie never depends on where they sit in the matrix product (BLAS kernels may round equal rows differently).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``scorer(text_embeds [a, D_t], mol_embeds [b, D_m]) -> scores [a, b]``; higher means a better match."""

ArrayLike = torch.Tensor | np.ndarray

DIRECTIONS = ("t2m", "m2t")

__all__ = [
    "DIRECTIONS",
    "Scorer",
    "confusing_neighbors",
    "confusion_counts",
    "cosine_scores",
    "metrics_from_ranks",
    "rank_metrics",
    "ranks",
    "retrieval_metrics",
    "top_k",
]


def cosine_scores(text_embeds: torch.Tensor, mol_embeds: torch.Tensor, *, out: torch.Tensor | None = None):
    """Cosine similarity of every text with every molecule: the default retrieval score.

    Args:
        text_embeds (torch.Tensor): ``[a, D]``.
        mol_embeds (torch.Tensor): ``[b, D]``.
        out (torch.Tensor | None): an ``[a, b]`` buffer to write the scores into (no new allocation).

    Returns:
        torch.Tensor: ``[a, b]`` scores in ``[-1, 1]``.
    """
    return torch.mm(F.normalize(text_embeds, dim=-1), F.normalize(mol_embeds, dim=-1).T, out=out)


def _as_float32(x: ArrayLike, name: str, device: torch.device | None = None) -> torch.Tensor:
    """A detached float32 ``[rows, dim]`` tensor on ``device``, checked for shape and finite values."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"`{name}` must hold floating-point embeddings, got a tensor of dtype {x.dtype}.")
        t = x.detach().to(device=device, dtype=torch.float32)
    elif isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"`{name}` must hold floating-point embeddings, got a numpy array of dtype {x.dtype}.")
        t = torch.tensor(np.asarray(x, dtype=np.float32), device=device)
    else:
        raise TypeError(f"`{name}` must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}.")
    if t.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D [num_rows, dim], got shape {tuple(t.shape)}.")
    bad = (~torch.isfinite(t)).any(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten()
        raise ValueError(
            f"`{name}` has {rows.numel()} row(s) with NaN or infinite values (first: row {int(rows[0])}); "
            "fix the encoder's output (e.g. check for a diverged model or an empty input) before ranking."
        )
    return t


def _unique_rows(pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """De-duplicate the rows of ``pool``: ``(unique_rows, inverse [P], counts [U] or None when all are distinct)``."""
    unique, inverse, counts = torch.unique(pool, dim=0, return_inverse=True, return_counts=True)
    if unique.shape[0] == pool.shape[0]:
        return pool, torch.arange(pool.shape[0], device=pool.device), None
    logger.debug("Candidate pool of %d rows holds %d distinct embeddings.", pool.shape[0], unique.shape[0])
    return unique, inverse, counts


def _check_scores(scores: object, expected: tuple[int, int], direction: str, start: int, stop: int) -> torch.Tensor:
    """A custom scorer's output as a tensor of the expected shape ``[a, b]`` (as the scorer returned it)."""
    scores = torch.as_tensor(scores)
    if tuple(scores.shape) != expected:
        raise ValueError(
            f"`scorer` returned scores of shape {tuple(scores.shape)} for {direction} queries {start}..{stop - 1}, "
            f"expected {expected}: it must map (text [a, D_t], mol [b, D_m]) to [a, b]."
        )
    return scores


def _direction_counts(
    queries: torch.Tensor,
    partners: torch.Tensor,
    extra: torch.Tensor | None,
    scorer: Scorer | None,
    delta: float,
    chunk_size: int,
    direction: str,
) -> torch.Tensor:
    """Confusion counts of one direction: ``queries[i]`` against the pool ``partners`` + ``extra``.

    ``partners[i]`` is the true candidate of ``queries[i]``. For ``t2m`` the queries are texts and the candidates
    molecules; for ``m2t`` the other way round (a custom scorer is still called as ``scorer(text, mol)``).
    """
    n = queries.shape[0]
    pool = partners if extra is None else torch.cat([partners, extra])
    pool_size = pool.shape[0]
    if pool_size >= 2**24:
        raise ValueError(
            f"The {direction} pool has {pool_size:,} candidates; counts are summed exactly in float32 only below "
            f"{2**24:,}. Rank against parts of the extras and add up the counts (minus the split-only counts)."
        )
    # De-duplicate before any arithmetic so that identical candidates share one score (see module docstring).
    candidates, inverse, multiplicity = _unique_rows(pool)
    del pool
    positive_column = inverse[:n].clone()
    del inverse
    num_candidates = candidates.shape[0]

    if scorer is None:

        def score_into(start: int, stop: int, out: torch.Tensor) -> None:
            # Queries as rows and candidates as columns in both directions (cosine is symmetric).
            cosine_scores(queries[start:stop], candidates, out=out)

    else:

        def score_into(start: int, stop: int, out: torch.Tensor) -> None:
            if direction == "t2m":
                scores = _check_scores(
                    scorer(queries[start:stop], candidates), tuple(out.shape), direction, start, stop
                )
            else:
                expected = (num_candidates, stop - start)
                scores = _check_scores(scorer(candidates, queries[start:stop]), expected, direction, start, stop).T
            out.copy_(scores)  # never modify the scorer's own tensor; casts to float32
            if bool(torch.isnan(out).any()):
                raise ValueError(
                    f"`scorer` returned NaN scores for {direction} queries {start}..{stop - 1}; "
                    "a NaN score cannot be ranked, so fix the scorer or its inputs."
                )

    counts = torch.empty(n, dtype=torch.long, device=queries.device)
    buffer = torch.empty(min(chunk_size, n), num_candidates, dtype=torch.float32, device=queries.device)
    weights = None if multiplicity is None else multiplicity.to(torch.float32)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        scores = buffer[: stop - start]
        score_into(start, stop, scores)
        threshold = scores.gather(1, positive_column[start:stop, None]) - delta
        # In place: 1.0 where a candidate is confused with the true one, else 0.0. Sums of 0/1 (or of integer
        # multiplicities) are exact in float32 below 2**24, and no second [chunk, pool] tensor is allocated.
        confused = scores.ge_(threshold)
        n_confused = confused.sum(dim=1) if weights is None else torch.mv(confused, weights)
        # The query's own candidate always passes (delta >= 0); duplicates of it are real confusions.
        counts[start:stop] = n_confused.round().long() - 1
    return counts.cpu()


def confusing_neighbors(
    text_embeds: ArrayLike,
    mol_embeds: ArrayLike,
    k: int,
    *,
    scorer: Scorer | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """The ``k`` pairs each pair is most confused with: ``j != i`` by ``max(s(t_i, m_j), s(t_j, m_i))``, highest first.

    Pair ``j`` is a confusing neighbour of ``i`` when its molecule scores high for ``i``'s text or its text scores
    high for ``i``'s molecule: in the same batch, they are each other's hardest negatives.

    Args:
        text_embeds: ``[N, D_t]`` text embeddings; row ``i`` pairs with row ``i`` of ``mol_embeds``.
        mol_embeds: ``[N, D_m]`` molecule embeddings.
        k (int): neighbours per pair (at most ``N - 1``).
        scorer: ``scorer(text, mol) -> [a, b]`` scores (cosine when None).
        chunk_size (int): pairs scored at a time (two ``[chunk_size, N]`` buffers).

    Returns:
        torch.Tensor: ``[N, k]`` CPU ``LongTensor`` of pair indices.
    """
    device = text_embeds.device if isinstance(text_embeds, torch.Tensor) else torch.device("cpu")
    texts = _as_float32(text_embeds, "text_embeds", device)
    mols = _as_float32(mol_embeds, "mol_embeds", device)
    n = texts.shape[0]
    if mols.shape[0] != n:
        raise ValueError(f"`text_embeds` has {n} rows but `mol_embeds` has {mols.shape[0]}.")
    if not 1 <= k < n:
        raise ValueError(f"`k` must lie in [1, {n - 1}] for {n} pairs, got {k}.")
    score = scorer if scorer is not None else cosine_scores
    out = torch.empty(n, k, dtype=torch.long)
    with torch.no_grad():
        for start in range(0, n, chunk_size):
            rows = torch.arange(start, min(start + chunk_size, n), device=device)
            both = torch.maximum(score(texts[rows], mols), score(texts, mols[rows]).T).float()
            both[torch.arange(len(rows), device=device), rows] = -torch.inf
            out[rows.cpu()] = both.topk(k, dim=1).indices.cpu()
    return out


def confusion_counts(
    text_embeds: ArrayLike,
    mol_embeds: ArrayLike,
    *,
    scorer: Scorer | None = None,
    delta: float = 0.0,
    chunk_size: int = 1024,
    extra_mol_embeds: ArrayLike | None = None,
    extra_text_embeds: ArrayLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """How many candidates each query confuses with its true partner, in both directions.

    ``n_t2m[i] = #{j != i : s(t_i, m_j) >= s(t_i, m_i) - delta}`` over the molecule pool (the ``N`` molecules, then
    ``extra_mol_embeds``), and ``n_m2t[i] = #{j != i : s(t_j, m_i) >= s(t_i, m_i) - delta}`` over the text pool (the
    ``N`` texts, then ``extra_text_embeds``). With ``delta = 0`` this is ``rank - 1`` (ties count against the query).
    See the module docstring for the ``split`` / ``all`` pools and how to build the extras.

    Args:
        text_embeds: ``[N, D_t]`` text embeddings; row ``i`` pairs with row ``i`` of ``mol_embeds``. A torch tensor
            (any floating dtype, any device: the computation runs on its device) or a numpy array.
        mol_embeds: ``[N, D_m]`` molecule embeddings.
        scorer: ``scorer(text [a, D_t], mol [b, D_m]) -> [a, b]`` (e.g. a backbone's ``score``), called on float32
            inputs under ``torch.no_grad()``. Default: cosine similarity (embeddings normalised once).
        delta: margin ``>= 0``; candidates within ``delta`` of the true score also count as confused.
        chunk_size: queries scored at a time; the score buffer takes ``4 * chunk_size * pool_size`` bytes.
        extra_mol_embeds: ``[E_m, D_m]`` further candidate molecules for ``t2m`` (not containing the split's own).
        extra_text_embeds: ``[E_t, D_t]`` further candidate texts for ``m2t`` (not containing the split's own).

    Returns:
        ``(n_t2m, n_m2t)``: CPU ``LongTensor``s of shape ``[N]``.

    Raises:
        TypeError: an input is not a floating-point tensor or array.
        ValueError: shapes disagree, an input holds NaN/inf, ``delta`` or ``chunk_size`` is invalid, or a custom
            scorer returns the wrong shape or NaN.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive integer, got {chunk_size!r}.")
    delta = float(delta)
    if not np.isfinite(delta) or delta < 0:
        raise ValueError(f"`delta` must be a finite number >= 0, got {delta!r}.")
    device = text_embeds.device if isinstance(text_embeds, torch.Tensor) else torch.device("cpu")
    texts = _as_float32(text_embeds, "text_embeds", device)
    mols = _as_float32(mol_embeds, "mol_embeds", device)
    n = texts.shape[0]
    if n == 0:
        raise ValueError("`text_embeds` is empty: there is nothing to rank.")
    if mols.shape[0] != n:
        raise ValueError(
            f"`text_embeds` has {n} rows but `mol_embeds` has {mols.shape[0]}: row i of each must be the same pair."
        )
    if scorer is None and texts.shape[1] != mols.shape[1]:
        raise ValueError(
            f"Cosine scoring needs equal dimensions, got `text_embeds` dim {texts.shape[1]} and `mol_embeds` dim "
            f"{mols.shape[1]}; project them to a shared space or pass a `scorer`."
        )
    extras = {}
    for name, extra, own, own_name in (
        ("extra_mol_embeds", extra_mol_embeds, mols, "mol_embeds"),
        ("extra_text_embeds", extra_text_embeds, texts, "text_embeds"),
    ):
        extras[name] = None if extra is None else _as_float32(extra, name, device)
        if extras[name] is not None and extras[name].shape[1] != own.shape[1]:
            raise ValueError(f"`{name}` has dim {extras[name].shape[1]}, `{own_name}` has dim {own.shape[1]}.")

    common = {"scorer": scorer, "delta": delta, "chunk_size": chunk_size}
    with torch.no_grad():
        n_t2m = _direction_counts(texts, mols, extras["extra_mol_embeds"], direction="t2m", **common)
        n_m2t = _direction_counts(mols, texts, extras["extra_text_embeds"], direction="m2t", **common)
    return n_t2m, n_m2t


def ranks(
    text_embeds: ArrayLike,
    mol_embeds: ArrayLike,
    *,
    scorer: Scorer | None = None,
    extra_mol_embeds: ArrayLike | None = None,
    extra_text_embeds: ArrayLike | None = None,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based rank of each query's true partner, ``rank = n_confusing + 1`` (ties count against the query).

    Same arguments as :func:`confusion_counts` (with ``delta = 0``).

    Returns:
        ``(rank_t2m, rank_m2t)``: CPU ``LongTensor``s of shape ``[N]``, values in ``[1, pool_size]``.
    """
    n_t2m, n_m2t = confusion_counts(
        text_embeds,
        mol_embeds,
        scorer=scorer,
        chunk_size=chunk_size,
        extra_mol_embeds=extra_mol_embeds,
        extra_text_embeds=extra_text_embeds,
    )
    return n_t2m + 1, n_m2t + 1


def rank_metrics(
    rank: torch.Tensor, *, ks: Sequence[int] = (1, 5, 10), prefix: str = "", name: str = "rank"
) -> dict[str, float]:
    """Hits@k, MRR and mean rank of one direction's per-query ranks.

    Args:
        rank: ``[N]`` 1-based ranks of the true partners.
        ks: the cut-offs of Hits@k.
        prefix: prepended to every key (e.g. ``"t2m_"``).
        name: the argument's name in error messages.

    Returns:
        ``{f"{prefix}hits@{k}", f"{prefix}mrr", f"{prefix}mean_rank"}``; Hits and MRR in ``[0, 1]``.
    """
    ks = list(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"`ks` must be a non-empty sequence of positive integers, got {ks!r}.")
    rank = torch.as_tensor(rank)
    if rank.numel() == 0 or bool((rank < 1).any()):
        raise ValueError(f"`{name}` must be a non-empty tensor of 1-based ranks, got {rank.tolist()[:5]}.")
    rank = rank.double()
    metrics = {f"{prefix}hits@{k}": float((rank <= k).double().mean()) for k in sorted(set(ks))}
    metrics[f"{prefix}mrr"] = float((1.0 / rank).mean())
    metrics[f"{prefix}mean_rank"] = float(rank.mean())
    return metrics


def metrics_from_ranks(
    rank_t2m: torch.Tensor, rank_m2t: torch.Tensor, *, ks: Sequence[int] = (1, 5, 10), prefix: str = ""
) -> dict[str, float]:
    """Hits@k, MRR and mean rank of both directions from per-query ranks (:func:`rank_metrics` of each).

    Args:
        rank_t2m: ``[N]`` 1-based ranks of the text→molecule queries.
        rank_m2t: ``[N]`` 1-based ranks of the molecule→text queries.
        ks: the cut-offs of Hits@k.
        prefix: prepended to every key (e.g. ``"test_all_"``).

    Returns:
        ``{f"{prefix}{d}_hits@{k}", f"{prefix}{d}_mrr", f"{prefix}{d}_mean_rank"}`` for ``d`` in ``t2m``, ``m2t``;
        Hits and MRR in ``[0, 1]``.
    """
    return {
        **rank_metrics(rank_t2m, ks=ks, prefix=f"{prefix}t2m_", name="rank_t2m"),
        **rank_metrics(rank_m2t, ks=ks, prefix=f"{prefix}m2t_", name="rank_m2t"),
    }


def retrieval_metrics(
    text_embeds: ArrayLike,
    mol_embeds: ArrayLike,
    *,
    scorer: Scorer | None = None,
    extra_mol_embeds: ArrayLike | None = None,
    extra_text_embeds: ArrayLike | None = None,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
    prefix: str = "",
) -> dict[str, float]:
    """Hits@k, MRR and mean rank, text→molecule and molecule→text.

    Without extras the pool is the split itself (``split``); with the other molecules/texts of the full data set as
    extras it is ``all`` (see the module docstring for how to build them without counting the true partner twice).

    Args:
        text_embeds: ``[N, D_t]`` text embeddings (torch or numpy, any float dtype).
        mol_embeds: ``[N, D_m]`` molecule embeddings, row ``i`` paired with text ``i``.
        scorer: custom ``scorer(text, mol) -> [a, b]``; default cosine.
        extra_mol_embeds: further candidate molecules for ``t2m``.
        extra_text_embeds: further candidate texts for ``m2t``.
        ks: cut-offs of Hits@k.
        chunk_size: queries scored at a time.
        prefix: prepended to every key, e.g. ``"test_split_"``.

    Returns:
        ``{"t2m_hits@1", "t2m_hits@5", "t2m_hits@10", "t2m_mrr", "t2m_mean_rank", "m2t_hits@1", ...}`` (with
        ``prefix``) as Python floats; Hits and MRR in ``[0, 1]``, mean rank in ``[1, pool_size]``.

    Example:
        >>> import torch
        >>> t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> retrieval_metrics(t, t, ks=(1,))["t2m_hits@1"]
        1.0
    """
    rank_t2m, rank_m2t = ranks(
        text_embeds,
        mol_embeds,
        scorer=scorer,
        extra_mol_embeds=extra_mol_embeds,
        extra_text_embeds=extra_text_embeds,
        chunk_size=chunk_size,
    )
    return metrics_from_ranks(rank_t2m, rank_m2t, ks=ks, prefix=prefix)


# --------------------------------------------------------------------------------------------------------- top-k
def _block_scores(scorer: Scorer, queries: torch.Tensor, candidates: torch.Tensor, direction: str) -> torch.Tensor:
    """``[q, c]`` scores; the scorer is always called as ``scorer(texts, molecules)``."""
    scores = scorer(queries, candidates) if direction == "t2m" else scorer(candidates, queries).T
    expected = (queries.shape[0], candidates.shape[0])
    if tuple(scores.shape) != expected:
        raise ValueError(
            f"The model's `score` returned shape {tuple(scores.shape)} where {expected} was expected; it must map "
            "(text [a, D], molecules [b, D]) to [a, b]."
        )
    return scores.float()


def top_k(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    k: int,
    *,
    scorer: Scorer | None = None,
    direction: str = "t2m",
    truth: torch.Tensor | None = None,
    query_chunk: int = 256,
    candidate_chunk: int = 16384,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The ``k`` best candidates of every query, and optionally the rank and score of each query's true candidate.

    Scores are computed ``query_chunk x candidate_chunk`` at a time (never a full ``[queries, candidates]`` matrix).
    The rank of the truth is ``1 + #{j != truth : s_j >= s_truth}``, so ties count against the query, as in
    :func:`ranks`.

    Args:
        queries (torch.Tensor): ``[Q, D]`` query embeddings (texts for ``t2m``, molecules for ``m2t``).
        candidates (torch.Tensor): ``[C, D]`` candidate embeddings.
        k (int): how many candidates to keep (at most ``C``).
        scorer (Scorer | None): ``scorer(text_embeds, mol_embeds) -> [a, b]``, e.g. the model's ``score``;
            :func:`cosine_scores` when None.
        direction (str): ``t2m`` (queries are texts) or ``m2t`` (queries are molecules).
        truth (torch.Tensor | None): ``[Q]`` index of each query's true candidate, ``-1`` when it has none.
        query_chunk (int): queries scored at a time.
        candidate_chunk (int): candidates scored at a time.

    Returns:
        tuple: ``top_scores [Q, k]``, ``top_indices [Q, k]`` (best first), and with ``truth`` the ``truth_rank [Q]``
        (0 where a query has no truth) and ``truth_score [Q]`` (NaN there); otherwise None, None.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"`direction` must be one of {DIRECTIONS}, got {direction!r}.")
    scorer = scorer or cosine_scores
    num_queries, num_candidates = queries.shape[0], candidates.shape[0]
    k = min(k, num_candidates)
    top_scores = torch.empty(num_queries, k)
    top_indices = torch.empty(num_queries, k, dtype=torch.long)
    truth_rank = truth_score = None
    if truth is not None:
        truth = torch.as_tensor(truth, dtype=torch.long).view(-1)
        truth_rank = torch.zeros(num_queries, dtype=torch.long)
        truth_score = torch.full((num_queries,), float("nan"))

    def blocks(q: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        for start in range(0, num_candidates, candidate_chunk):
            yield start, _block_scores(scorer, q, candidates[start : start + candidate_chunk], direction)

    with torch.no_grad():
        for q_start in range(0, num_queries, query_chunk):
            q = queries[q_start : q_start + query_chunk]
            rows = torch.arange(q.shape[0])
            best_s, best_i = torch.empty(q.shape[0], 0), torch.empty(q.shape[0], 0, dtype=torch.long)
            t = truth[q_start : q_start + q.shape[0]] if truth is not None else None
            t_score = torch.full((q.shape[0],), float("nan"))
            for c_start, scores in blocks(q):
                merged_s = torch.cat([best_s, scores], dim=1)
                merged_i = torch.cat([best_i, torch.arange(c_start, c_start + scores.shape[1]).expand_as(scores)], 1)
                best_s, order = merged_s.topk(min(k, merged_s.shape[1]), dim=1)
                best_i = merged_i.gather(1, order)
                if t is not None:
                    inside = (t >= c_start) & (t < c_start + scores.shape[1])
                    t_score[inside] = scores[rows[inside], t[inside] - c_start]
            top_scores[q_start : q_start + q.shape[0]] = best_s
            top_indices[q_start : q_start + q.shape[0]] = best_i
            if t is None:
                continue
            # Second pass: count the candidates scoring at least the truth's score (the truth itself excluded).
            count = torch.zeros(q.shape[0], dtype=torch.long)
            for c_start, scores in blocks(q):
                confused = scores >= t_score[:, None]
                inside = (t >= c_start) & (t < c_start + scores.shape[1])
                confused[rows[inside], t[inside] - c_start] = False
                count += confused.sum(dim=1)
            has_truth = t >= 0
            truth_rank[q_start : q_start + q.shape[0]] = torch.where(has_truth, count + 1, 0)
            truth_score[q_start : q_start + q.shape[0]] = t_score
    return top_scores, top_indices, truth_rank, truth_score
