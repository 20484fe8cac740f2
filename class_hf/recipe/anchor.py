"""The frozen-feature linear anchor of a recipe run, evaluated exactly as the trained model is.

The bar every trained backbone must clear (see the design notes): frozen mean-pooled text-encoder features and RDKit
Morgan count fingerprints, each mapped by one linear layer into a shared space, trained with InfoNCE and early-stopped
on the validation split (:class:`~class_hf.curriculum.fingerprint_scorer.FingerprintScorer`). ``--linear_anchor``
fits it on the run's own training split, with the run's own frozen text encoder, and ranks the test pairs with the
same :class:`~class_hf.evaluation.evaluator.RetrievalEvaluator` (same queries, same ``split`` and ``all`` pools), so
the two rows of the summary differ only in the model.

With cached text features of a mean-pooling backbone (``cache_text_features`` and ``pooling="mean"``), the anchor's
text features are the last ``hidden_size`` columns of the cached ``text_features`` (the masked mean of the last
layer): no text is encoded twice.
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..curriculum.fingerprint_scorer import FingerprintScorer
from ..data.text_features import TEXT_FEATURES_COLUMN
from ..evaluation.retrieval import cosine_scores
from ..models.modules import pool_tokens

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

__all__ = ["LinearAnchor", "fit_linear_anchor"]


def _last_layer_width(model: nn.Module) -> int | None:
    """``hidden_size`` when the model's pooled text features end with the masked mean of the last layer, else None."""
    if getattr(model, "text_feature_layout", "pooled") != "pooled" or not callable(
        getattr(model, "text_feature_settings", None)
    ):
        return None
    if model.text_feature_settings().get("pooling") != "mean":
        return None
    return getattr(getattr(model.config, "text_config", None), "hidden_size", None)


class LinearAnchor(nn.Module):
    """A fitted :class:`FingerprintScorer` behind the backbone contract (``encode_text``, ``encode_molecule``,
    ``score``), so that :class:`~class_hf.evaluation.evaluator.RetrievalEvaluator` ranks it as it ranks a backbone.

    Args:
        scorer (FingerprintScorer): the fitted scorer.
        last_layer_width (int | None): read the text features from the last ``last_layer_width`` columns of cached
            ``text_features``; None: run the scorer's text encoder on the token ids.

    Batches: ``text_features`` (cached) or ``input_ids``/``attention_mask``; ``graph.fp`` (``log1p`` Morgan counts,
    as the config's ``use_fingerprint`` asks of :class:`~class_hf.data.features.MoleculeFeatures`).
    """

    def __init__(self, scorer: FingerprintScorer, last_layer_width: int | None = None) -> None:
        super().__init__()
        if scorer.head is None:
            raise ValueError("LinearAnchor needs a fitted FingerprintScorer; call `scorer.fit(...)` first.")
        self.scorer = scorer
        self.head = scorer.head
        self.last_layer_width = last_layer_width
        # What MoleculeFeatures.for_model reads: the fingerprint columns, of the scorer's length.
        self.config = SimpleNamespace(
            model_type="linear_anchor", use_fingerprint=True, fingerprint_dim=scorer.fingerprint_dim
        )

    def encode_text(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if text_features is not None:
            if self.last_layer_width is None:
                raise ValueError("This LinearAnchor reads token ids, not cached `text_features`.")
            return self.head.embed_text(text_features[:, -self.last_layer_width :].float())
        encoder = self.scorer.text_encoder  # the backbone's, frozen: evaluated in eval mode, its flag restored
        was_training = encoder.training
        encoder.eval()
        try:
            out = encoder(input_ids=input_ids, attention_mask=attention_mask)
        finally:
            encoder.train(was_training)
        return self.head.embed_text(pool_tokens(out.last_hidden_state, attention_mask, "mean").float())

    def encode_molecule(self, graph: Any) -> torch.Tensor:
        fp = getattr(graph, "fp", None)
        if fp is None:
            raise ValueError("LinearAnchor reads `graph.fp`: featurize the molecules with fingerprints=True.")
        return self.head.embed_molecule(fp.float())

    @staticmethod
    def score(text_embeds: torch.Tensor, mol_embeds: torch.Tensor) -> torch.Tensor:
        return cosine_scores(text_embeds, mol_embeds)


def _cached_last_layer(dataset: Dataset, width: int) -> torch.Tensor:
    table = dataset.select_columns([TEXT_FEATURES_COLUMN]).with_format("numpy")[:][TEXT_FEATURES_COLUMN]
    return torch.from_numpy(np.ascontiguousarray(np.stack(table)[:, -width:], dtype=np.float32))


def fit_linear_anchor(
    model: nn.Module,
    tokenizer: Any,
    train_dataset: Dataset,
    eval_dataset: Dataset | None,
    *,
    seed: int = 0,
    max_length: int = 256,
) -> tuple[LinearAnchor, dict[str, Any]]:
    """Fits the linear anchor on ``train_dataset`` (early-stopped on ``eval_dataset``) with ``model``'s frozen text
    encoder.

    Args:
        model (nn.Module): the backbone (its ``text_encoder`` is read, never trained).
        tokenizer: the backbone's tokenizer.
        train_dataset (Dataset): the run's training pairs (with fingerprint columns or SMILES).
        eval_dataset (Dataset | None): the validation pairs (None: a held-out tenth of the training pairs).
        seed (int): seed of the projections, the held-out slice and the batches.
        max_length (int): token limit of the texts (when they are encoded).

    Returns:
        tuple[LinearAnchor, dict]: the anchor and what its fit reported (``fingerprint_best_epoch``,
        ``fingerprint_eval_mrr``, ...; ``seconds``).
    """
    start = time.perf_counter()
    scorer = FingerprintScorer(model.text_encoder, tokenizer, max_length=max_length, seed=seed, show_progress=False)
    scorer.text_encoder_name = getattr(model.config, "text_encoder_name_or_path", None) or scorer.text_encoder_name
    width = _last_layer_width(model)
    parts = [part for part in (train_dataset, eval_dataset) if part is not None]
    if width is None or not all(TEXT_FEATURES_COLUMN in part.column_names for part in parts):
        width = None
    else:
        for part in parts:
            scorer.use_text_features(part, _cached_last_layer(part, width))
    scorer.fit(train_dataset, eval_dataset=eval_dataset)
    info = {**scorer.fit_info, "text_features": "cached (last layer)" if width else "encoded"}
    info["seconds"] = time.perf_counter() - start
    logger.info(
        "Linear anchor fitted in %.1f s: best validation MRR %.4f at epoch %d.",
        info["seconds"],
        info["fingerprint_eval_mrr"],
        info["fingerprint_best_epoch"],
    )
    return LinearAnchor(scorer, width), info
