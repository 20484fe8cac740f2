"""A frozen text tower whose outputs are computed once and looked up: the benchmark's cached-text-features option.

Fine-tuning MiniLM-L6 on this 2-core machine runs at about 21 pairs/s (4 minutes per epoch of 5,230 pairs), so the
benchmark freezes the text encoder and computes its outputs once for every description. Two small objects make that
transparent to every part of class-hf that tokenizes texts and runs a backbone's ``text_encoder`` (the collator,
``embed_pairs``, the warm-up and fingerprint difficulty scorers):

- :class:`FeatureIndexTokenizer` "tokenizes" a description into its row of the feature table (``input_ids`` hold the
  row index, ``attention_mask`` the real token positions);
- :class:`CachedTextEncoder` replaces the backbone's ``text_encoder`` and returns the cached states of those rows as
  ``last_hidden_state`` (and ``hidden_states`` for backbones such as ORMA that read lower layers).

Two layouts: ``pooled`` (one vector per text, the frozen encoder's masked mean: ``[N, H]``, shown as a one-token
sequence, so ``mean`` pooling returns it unchanged) and ``tokens`` (``[N, layers, L, H]`` float16 token states of the
top layers, with the true lengths). The encoder has no trainable parameter, so the backbones treat it as frozen
(``torch.no_grad``, eval mode) exactly as a frozen MiniLM.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from transformers import BatchEncoding
from transformers.modeling_outputs import BaseModelOutput

logger = logging.getLogger(__name__)


class FeatureIndexTokenizer:
    """Maps each known text to its row of a feature table, with a tokenizer's calling convention.

    Args:
        texts (Sequence[str]): the texts of the table, row by row (duplicates map to their first row).
        lengths (Sequence[int] | None): real token count of every row (``tokens`` layout); None for ``pooled`` (one
            position per text).
    """

    pad_token = "[PAD]"
    pad_token_id = 0
    model_max_length = 1_000_000

    def __init__(self, texts: Sequence[str], lengths: Sequence[int] | None = None) -> None:
        self.index: dict[str, int] = {}
        for row, text in enumerate(texts):
            self.index.setdefault(text, row)
        self.lengths = None if lengths is None else torch.as_tensor(list(lengths), dtype=torch.long)
        if self.lengths is not None and len(self.lengths) != len(texts):
            raise ValueError(f"`lengths` has {len(self.lengths)} values for {len(texts)} texts; give one per text.")

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, texts: Sequence[str]) -> torch.Tensor:
        """Row index of every text; a text outside the table is an error (the cache must cover the data)."""
        rows = []
        for position, text in enumerate(texts):
            row = self.index.get(text)
            if row is None:
                raise KeyError(
                    f"Text {position} of the batch ({text[:60]!r}...) is not in the cached feature table; encode "
                    "every split's descriptions before training (cache_text_features)."
                )
            rows.append(row)
        return torch.as_tensor(rows, dtype=torch.long)

    def __call__(self, texts: str | Sequence[str], **kwargs: Any) -> BatchEncoding:
        """``input_ids`` ``[B, L]`` (every position holds the row index) and ``attention_mask`` ``[B, L]``.

        Tokenizer arguments (``padding``, ``truncation``, ``max_length``, ``return_tensors``) are accepted; the
        lengths come from the cache.
        """
        if isinstance(texts, str):
            texts = [texts]
        rows = self.rows(texts)
        if self.lengths is None:
            ids = rows[:, None]
            mask = torch.ones_like(ids)
        else:
            lengths = self.lengths[rows]
            width = int(lengths.max())
            ids = rows[:, None].expand(-1, width).clone()
            mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        return BatchEncoding({"input_ids": ids, "attention_mask": mask})


class CachedTextEncoder(nn.Module):
    """A frozen text encoder answering from a table of precomputed states.

    Args:
        states (torch.Tensor): ``[N, H]`` (pooled) or ``[N, layers, L, H]`` (tokens; the last layer is the encoder's
            output, earlier ones are the layers below, in order).
        config: the original encoder's config (``hidden_size``, ``num_hidden_layers`` ...), kept for backbones that
            read it.
    """

    def __init__(self, states: torch.Tensor, config: Any) -> None:
        super().__init__()
        if states.dim() not in (2, 4):
            raise ValueError(f"`states` must be [N, H] or [N, layers, L, H], got shape {list(states.shape)}.")
        self.register_buffer("states", states, persistent=False)
        # A parameter-free module has no device for `next(parameters())`; this empty frozen one gives it one.
        self.device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        self.config = config if config is not None else SimpleNamespace(hidden_size=states.shape[-1])

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> BaseModelOutput:
        rows = input_ids[:, 0].to(self.states.device)
        if self.states.dim() == 2:
            last = self.states[rows][:, None, :].float()
            return BaseModelOutput(last_hidden_state=last, hidden_states=(last,) if output_hidden_states else None)
        width = input_ids.shape[1]
        picked = self.states[rows, :, :width].float()  # [B, layers, L, H]
        layers = tuple(picked[:, i] for i in range(picked.shape[1]))
        return BaseModelOutput(last_hidden_state=layers[-1], hidden_states=layers if output_hidden_states else None)


def install_cached_text_encoder(model: nn.Module, encoder: CachedTextEncoder) -> nn.Module:
    """Puts ``encoder`` in place of ``model.text_encoder`` (frozen: no trainable parameter) and returns ``model``."""
    if not hasattr(model, "text_encoder"):
        raise ValueError(f"{type(model).__name__} has no `text_encoder` to replace.")
    model.text_encoder = encoder
    model.text_encoder.eval()
    return model


@torch.no_grad()
def cache_text_features(
    encoder: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int = 128,
    token_layers: int = 0,
    token_length: int = 64,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None, list[int], float]:
    """Runs the frozen ``encoder`` once over ``texts`` (in length order, to pad little).

    Args:
        encoder (nn.Module): a Hugging Face encoder returning ``last_hidden_state`` / ``hidden_states``.
        tokenizer: its tokenizer.
        texts (Sequence[str]): the texts, in table order.
        max_length (int): token limit of the encoder's input.
        token_layers (int): also keep the token states of the top ``token_layers`` layers (0: pooled only).
        token_length (int): positions kept of the token states.
        batch_size (int): texts per forward pass.

    Returns:
        tuple: pooled states (masked mean of the last layer, float32 ``[N, H]``), token states (float16
        ``[N, token_layers, token_length, H]``, zero past each text's end) or None, the token count of every text
        (capped at ``token_length`` when token states are kept), and the seconds spent.
    """
    from class_hf.models.modules import pool_tokens

    start = time.perf_counter()
    encoder.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    hidden = encoder.config.hidden_size
    pooled = torch.zeros(len(texts), hidden)
    tokens = torch.zeros(len(texts), token_layers, token_length, hidden, dtype=torch.float16) if token_layers else None
    lengths = [0] * len(texts)
    for begin in range(0, len(order), batch_size):
        chunk = order[begin : begin + batch_size]
        batch = tokenizer(
            [texts[i] for i in chunk], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        out = encoder(**batch, output_hidden_states=bool(token_layers), return_dict=True)
        index = torch.as_tensor(chunk)
        mask = batch["attention_mask"]
        pooled[index] = pool_tokens(out.last_hidden_state, mask, "mean").float()
        cap = token_length if token_layers else max_length
        for j, length in zip(chunk, mask.sum(1).tolist()):
            lengths[j] = min(int(length), cap)
        if tokens is not None:
            top = torch.stack(out.hidden_states[-token_layers:], dim=1)[:, :, :token_length]  # [B, layers, L, H]
            top = top * mask[:, None, :token_length, None]
            tokens[index, :, : top.shape[2]] = top.half()
    return pooled, tokens, lengths, time.perf_counter() - start
