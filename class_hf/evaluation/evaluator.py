"""``RetrievalEvaluator``: retrieval metrics of a backbone on a split, in sentence-transformers' evaluator pattern."""

from __future__ import annotations

from typing import Any

from torch import nn


class RetrievalEvaluator:
    """Hits@1/5/10, MRR and mean rank in both directions of a model on ``dataset`` (the split as pool).

    Args:
        dataset (datasets.Dataset): featurized pairs.
        data_collator (Callable): builds model inputs from rows.
        batch_size (int): rows per encoding batch.
        chunk_size (int): rows per chunk of the similarity matrix.
        name (str): prefix of the metric keys (``"<name>_t2m_mrr"``); none when empty.
        show_progress (bool): show a progress bar while encoding.
    """

    primary_metric = "mrr"

    def __init__(
        self,
        dataset,
        *,
        data_collator=None,
        batch_size: int = 64,
        chunk_size: int = 1024,
        name: str = "",
        show_progress: bool = False,
    ) -> None:
        self.dataset = dataset
        self.data_collator = data_collator
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.name = name
        self.show_progress = show_progress

    def __call__(self, model: nn.Module) -> dict[str, Any]:
        from .encoding import embed_pairs
        from .retrieval import retrieval_metrics

        text, mol = embed_pairs(
            model, self.dataset, self.data_collator, batch_size=self.batch_size, show_progress=self.show_progress
        )
        metrics = retrieval_metrics(text, mol, scorer=getattr(model, "score", None), chunk_size=self.chunk_size)
        metrics["mrr"] = (metrics["t2m_mrr"] + metrics["m2t_mrr"]) / 2
        prefix = f"{self.name}_" if self.name else ""
        return {f"{prefix}{key}": value for key, value in metrics.items()}
