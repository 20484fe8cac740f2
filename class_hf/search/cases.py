"""Case studies of a trained model (the CLASS paper's Figure 5): where it ranks the truth first, and where it fails.

For a labelled split (pairs of a description and its molecule) every description is a query and its own molecule the
ground truth (text -> molecule), or the other way round (molecule -> text). The candidates are the split's own
molecules (texts): the ``split`` pool of the retrieval metrics. :func:`find_cases` returns a few queries the model
answers right (truth ranked first) and the ones it gets most wrong (largest truth rank), each with its top ``k``
candidates and the truth; :func:`render_cases_html` puts them side by side.
"""

from __future__ import annotations

import html
import logging
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..evaluation.retrieval import rank_metrics, top_k
from .index import MoleculeIndex, SearchResult, place_truth
from .report import (
    DIRECTION_LABELS,
    legend_html,
    page,
    query_html,
    result_card,
    truncate,
)

logger = logging.getLogger(__name__)

__all__ = ["Case", "CaseStudy", "find_cases", "format_cases", "render_cases_html"]

SUCCESS_ORDERS = ("random", "margin")


@dataclass
class Case:
    """One query of a case study.

    Attributes:
        query (str): the description (``t2m``) or the SMILES (``m2t``).
        query_cid (str | None): the query pair's CID.
        query_name (str | None): the query molecule's name, when the data has one.
        truth (SearchResult): the true candidate, with its rank and score.
        candidates (list[SearchResult]): the top ``k`` candidates, best first (the truth marked ``is_truth``).
    """

    query: str
    query_cid: str | None
    query_name: str | None
    truth: SearchResult
    candidates: list[SearchResult]

    def to_dict(self) -> dict[str, Any]:
        """The case as a JSON-serialisable dict."""
        return asdict(self)


@dataclass
class CaseStudy:
    """Successes and failures of a model on one split.

    Attributes:
        direction (str): ``t2m`` or ``m2t``.
        num_queries (int): queries of the split (its pairs).
        num_successes (int): queries whose truth ranks first.
        metrics (dict): ``hits@1``, ``hits@10``, ``mrr``, ``mean_rank`` of all queries (pool: the split).
        successes (list[Case]): up to ``n`` queries answered right.
        failures (list[Case]): the ``n`` queries with the largest truth rank, worst first.
        model (str | None): the model's path or Hub id.
        split (str | None): the split's name.
    """

    direction: str
    num_queries: int
    num_successes: int
    metrics: dict[str, float]
    successes: list[Case] = field(default_factory=list)
    failures: list[Case] = field(default_factory=list)
    model: str | None = None
    split: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The study as a JSON-serialisable dict."""
        return asdict(self)


def _pick_successes(ranks: torch.Tensor, margins: torch.Tensor, n: int, order: str, seed: int) -> list[int]:
    first = (ranks == 1).nonzero().view(-1).tolist()
    if order == "margin":
        return sorted(first, key=lambda q: -float(margins[q]))[:n]
    return sorted(random.Random(seed).sample(first, min(n, len(first))))


def find_cases(
    model: torch.nn.Module,
    dataset: Any,
    tokenizer: Any,
    *,
    n: int = 10,
    k: int = 3,
    direction: str = "t2m",
    success_order: str = "random",
    seed: int = 0,
    batch_size: int = 64,
    max_length: int = 256,
    show_progress: bool = True,
    model_name_or_path: str | None = None,
    split: str | None = None,
) -> CaseStudy:
    """Queries of a labelled split that the model ranks first, and those it ranks worst.

    Args:
        model (torch.nn.Module): a backbone (``encode_text``, ``encode_molecule``, ``score``).
        dataset: the split's pairs: a ``datasets.Dataset`` or a file with ``cid``, ``smiles``, ``description``
            (and optionally ``name``/``title``) columns; rows with an invalid SMILES or no description are reported
            and left out.
        tokenizer: the model's tokenizer.
        n (int): how many successes and how many failures to return.
        k (int): candidates shown per query.
        direction (str): ``t2m`` (descriptions query molecules) or ``m2t`` (molecules query descriptions).
        success_order (str): which successes: ``random`` (a seeded sample: typical cases) or ``margin`` (largest
            lead of the truth over the runner-up: the clearest cases).
        seed (int): seed of the ``random`` sample.
        batch_size (int): encoding batch size.
        max_length (int): token limit of the descriptions.
        show_progress (bool): show progress bars.
        model_name_or_path (str | None): recorded in the study.
        split (str | None): the split's name, recorded in the study.

    Returns:
        CaseStudy: the cases and the split's metrics.
    """
    if direction not in DIRECTION_LABELS:
        raise ValueError(f"`direction` must be one of {list(DIRECTION_LABELS)}, got {direction!r}.")
    if success_order not in SUCCESS_ORDERS:
        raise ValueError(f"`success_order` must be one of {SUCCESS_ORDERS}, got {success_order!r}.")
    for name, value in (("n", n), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    index = MoleculeIndex.build(
        model,
        dataset,
        tokenizer,
        texts=True,
        batch_size=batch_size,
        max_length=max_length,
        show_progress=show_progress,
        model_name_or_path=model_name_or_path,
    )
    pairs = index.text_rows  # pair j: description j and molecule text_rows[j]
    if pairs.numel() < 2:
        raise ValueError(f"A case study needs at least 2 pairs with a description; the data has {pairs.numel()}.")
    if direction == "t2m":
        queries, candidates, truth = index.text_embeddings, index.molecule_embeddings, pairs
    else:
        queries, candidates, truth = index.molecule_embeddings[pairs], index.text_embeddings, torch.arange(len(pairs))
    top_scores, top_indices, ranks, truth_scores = top_k(
        queries, candidates, max(k, 2) + 1, scorer=getattr(model, "score", None), direction=direction, truth=truth
    )
    metrics = rank_metrics(ranks, ks=(1, 10))
    margins = top_scores[:, 0] - top_scores[:, 1]
    successes = _pick_successes(ranks, margins, n, success_order, seed)
    failures = sorted(range(len(ranks)), key=lambda q: (-int(ranks[q]), float(truth_scores[q])))[:n]
    failures = [q for q in failures if int(ranks[q]) > 1]

    def case(q: int) -> Case:
        row = int(pairs[q])
        truth_cid = index.rows["cid"][row]

        def result(candidate: int, rank: int, score: float) -> SearchResult:
            result_row = candidate if direction == "t2m" else int(pairs[candidate])
            return SearchResult(
                rank=rank,
                score=score,
                cid=index.rows["cid"][result_row],
                smiles=index.rows["smiles"][result_row],
                name=index.rows["name"][result_row],
                description=index.rows["description"][result_row],
                row=int(index.rows["row"][result_row]),
                is_truth=candidate == int(truth[q]),
            )

        # The truth where its rank says (after the candidates it ties with): top_k orders ties arbitrarily.
        ranked = list(zip(top_indices[q].tolist(), top_scores[q].tolist(), strict=True))
        ranked = place_truth(ranked, int(truth[q]), int(ranks[q]), float(truth_scores[q]))
        shown = [result(i, r, s) for r, (i, s) in enumerate(ranked[:k], start=1)]
        return Case(
            query=index.rows["description"][row] if direction == "t2m" else index.rows["smiles"][row],
            query_cid=truth_cid,
            query_name=index.rows["name"][row],
            truth=result(int(truth[q]), int(ranks[q]), float(truth_scores[q])),
            candidates=shown,
        )

    study = CaseStudy(
        direction=direction,
        num_queries=len(ranks),
        num_successes=int((ranks == 1).sum()),
        metrics=metrics,
        successes=[case(q) for q in successes],
        failures=[case(q) for q in failures],
        model=index.info["model"]["name_or_path"],
        split=split,
    )
    logger.info(
        "%s on %d queries: %d ranked first (Hits@1 %.3f, MRR %.3f); worst truth rank %d.",
        DIRECTION_LABELS[direction],
        study.num_queries,
        study.num_successes,
        metrics["hits@1"],
        metrics["mrr"],
        int(ranks.max()),
    )
    return study


def _case_html(case: Case, direction: str, failure: bool, columns: int) -> str:
    size = (200, 150)
    cards = [result_card(c, direction, svg_size=size, compact=True) for c in case.candidates]
    if not any(c.is_truth for c in case.candidates):
        cards.append(result_card(case.truth, direction, svg_size=size, compact=True))
    label = (f"Failure \u00b7 truth ranked {case.truth.rank}" if failure else "Success \u00b7 truth ranked 1") + (
        f" \u00b7 {case.query_name}" if case.query_name and direction == "t2m" else ""
    )
    return (
        '<div class="case">'
        + query_html(direction, case.query, label=label, cid=case.query_cid)
        + f'<div class="grid cases" style="--columns: {columns}">'
        + "\n".join(cards)
        + "</div></div>"
    )


CASES_CSS = """
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 26px; align-items: start; }
.columns h2 { margin-top: 4px; }
.case { margin-bottom: 22px; }
.case .query { padding: 8px 12px; margin-bottom: 8px; }
.case .query .text { font-size: 13px; display: -webkit-box; -webkit-line-clamp: 5; -webkit-box-orient: vertical;
                     overflow: hidden; }
.case .query .pic { flex-basis: 180px; }
.case .query .label { text-transform: none; letter-spacing: 0; font-size: 12.5px; }
.grid.cases { grid-template-columns: repeat(var(--columns), minmax(0, 1fr)); gap: 8px; }
.grid.cases .card { padding: 6px 7px 7px; }
.grid.cases .card.truth { padding: 4px 5px 5px; }
.grid.cases .name { font-size: 12.5px; }
.grid.cases .desc { -webkit-line-clamp: 5; font-size: 11.5px; }
.ok { color: #1a7f37; } .bad { color: #cf222e; }
"""


def render_cases_html(study: CaseStudy, *, title: str = "Retrieval cases") -> str:
    """A self-contained HTML page: successes on the left, failures (with their truth) on the right.

    Each case shows the query on top and its top ``k`` candidates below it; the ground truth is outlined in green,
    and for a failure it follows the candidates with its rank.
    """
    esc = html.escape
    m = study.metrics
    meta = (
        f"{esc(DIRECTION_LABELS[study.direction])} \u00b7 split <b>{esc(study.split or '?')}</b> "
        f"({study.num_queries} queries, candidates: the split's own {study.num_queries} "
        f"{'molecules' if study.direction == 't2m' else 'descriptions'}) \u00b7 model <code>{esc(study.model or '?')}"
        f"</code><br>Hits@1 <b>{m['hits@1']:.3f}</b> \u00b7 Hits@10 <b>{m['hits@10']:.3f}</b> \u00b7 MRR "
        f"<b>{m['mrr']:.3f}</b> \u00b7 mean rank <b>{m['mean_rank']:.1f}</b>"
    )
    left = [f'<h2 class="ok">Ranked first ({len(study.successes)} of {study.num_successes} successes)</h2>']
    columns = 1 + max((len(case.candidates) for case in study.successes + study.failures), default=1)
    left += [_case_html(case, study.direction, False, columns) for case in study.successes]
    if not study.successes:
        left.append('<p class="note">The model ranks no query\'s truth first.</p>')
    right = [f'<h2 class="bad">Failures (largest truth rank, {len(study.failures)} shown)</h2>']
    right += [_case_html(case, study.direction, True, columns) for case in study.failures]
    if not study.failures:
        right.append('<p class="note">No failures: every truth ranks first.</p>')
    body = [
        f"<style>{CASES_CSS}</style>",
        f"<h1>{esc(title)}</h1>",
        f'<div class="meta">{meta}</div>',
        legend_html(study.direction, truth=True),
        '<div class="columns"><div>' + "\n".join(left) + "</div><div>" + "\n".join(right) + "</div></div>",
    ]
    return page(title, "\n".join(body))


def format_cases(study: CaseStudy, width: int = 100) -> str:
    """A plain-text summary of the study: metrics, then one line per success and per failure."""
    m = study.metrics
    lines = [
        f"{DIRECTION_LABELS[study.direction]} on {study.num_queries} queries ({study.split or 'split'}): "
        f"Hits@1 {m['hits@1']:.3f}  Hits@10 {m['hits@10']:.3f}  MRR {m['mrr']:.3f}  mean rank {m['mean_rank']:.1f}",
    ]
    for heading, cases in (("ranked first", study.successes), ("failures (largest truth rank)", study.failures)):
        lines.append(f"\n{heading}:")
        for case in cases:
            top = case.candidates[0]
            head = f"  rank {case.truth.rank:>5}  CID {case.query_cid or '?':<10} top-1 CID {top.cid or '?':<10} "
            lines.append(head + truncate(case.query, max(width - len(head), 20)))
    return "\n".join(lines) + "\n"
