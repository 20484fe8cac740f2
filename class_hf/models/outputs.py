"""Model outputs shared by every backbone (the backbone contract)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class RetrievalOutput(ModelOutput):
    """Output of a retrieval backbone's ``forward``.

    Args:
        loss (torch.Tensor | None): the backbone's own scalar loss (mean of ``per_sample_loss`` plus any batch-level
            terms such as an adversarial loss).
        per_sample_loss (torch.Tensor | None): ``[batch]`` retrieval loss of each pair, which the curriculum weights.
        text_embeds (torch.Tensor | None): ``[batch, dim]`` text embeddings used for retrieval.
        mol_embeds (torch.Tensor | None): ``[batch, dim]`` molecule embeddings used for retrieval.
        loss_components (dict[str, torch.Tensor] | None): named scalar parts of the loss, for logging.
    """

    loss: torch.Tensor | None = None
    per_sample_loss: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    mol_embeds: torch.Tensor | None = None
    loss_components: dict[str, torch.Tensor] | None = None
