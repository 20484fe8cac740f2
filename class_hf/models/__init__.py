"""Retrieval backbones, imported lazily. ``import class_hf`` registers them with ``AutoConfig`` / ``AutoModel``
(:mod:`class_hf.models.auto_registration`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "aman": ["AmanModel"],
    "base": ["optimizer_param_groups", "RetrievalPreTrainedModel"],
    "configuration_aman": ["AmanConfig"],
    "configuration_dual_encoder": ["DualEncoderConfig"],
    "configuration_orma": ["OrmaConfig"],
    "dual_encoder": ["DualEncoderModel"],
    "losses": ["contrastive_loss", "gather_features", "triplet_loss"],
    "orma": ["OrmaModel"],
    "outputs": ["RetrievalOutput"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .aman import AmanModel
    from .base import RetrievalPreTrainedModel, optimizer_param_groups
    from .configuration_aman import AmanConfig
    from .configuration_dual_encoder import DualEncoderConfig
    from .configuration_orma import OrmaConfig
    from .dual_encoder import DualEncoderModel
    from .losses import contrastive_loss, gather_features, triplet_loss
    from .orma import OrmaModel
    from .outputs import RetrievalOutput
