"""Retrieval backbones, imported lazily. ``import class_hf`` registers them with ``AutoConfig`` / ``AutoModel``
(:mod:`class_hf.models.auto_registration`).

:mod:`~class_hf.models.base` holds the backbone contract (:class:`RetrievalBackbone`) and the shared base class,
:mod:`~class_hf.models.registry` the one list of shipped backbones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "base": ["RetrievalBackbone", "RetrievalPreTrainedModel", "optimizer_param_groups"],
    "configuration_aman": ["AmanConfig"],
    "configuration_dual_encoder": ["DualEncoderConfig"],
    "configuration_orma": ["OrmaConfig"],
    "losses": ["contrastive_loss", "gather_features", "triplet_loss"],
    "modeling_aman": ["AmanModel"],
    "modeling_dual_encoder": ["DualEncoderModel"],
    "modeling_orma": ["OrmaModel"],
    "outputs": ["RetrievalOutput"],
    "registry": ["BACKBONES", "Backbone", "get_backbone", "load_backbone"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .base import RetrievalBackbone, RetrievalPreTrainedModel, optimizer_param_groups
    from .configuration_aman import AmanConfig
    from .configuration_dual_encoder import DualEncoderConfig
    from .configuration_orma import OrmaConfig
    from .losses import contrastive_loss, gather_features, triplet_loss
    from .modeling_aman import AmanModel
    from .modeling_dual_encoder import DualEncoderModel
    from .modeling_orma import OrmaModel
    from .outputs import RetrievalOutput
    from .registry import BACKBONES, Backbone, get_backbone, load_backbone
