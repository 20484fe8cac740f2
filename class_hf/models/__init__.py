"""Retrieval backbones. Importing this package registers them with ``AutoConfig`` / ``AutoModel``.

:mod:`~class_hf.models.base` holds the backbone contract (:class:`RetrievalBackbone`) and the shared base class,
:mod:`~class_hf.models.registry` the one list of shipped backbones.
"""

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

__all__ = [
    "BACKBONES",
    "AmanConfig",
    "AmanModel",
    "Backbone",
    "DualEncoderConfig",
    "DualEncoderModel",
    "OrmaConfig",
    "OrmaModel",
    "RetrievalBackbone",
    "RetrievalOutput",
    "RetrievalPreTrainedModel",
    "contrastive_loss",
    "gather_features",
    "get_backbone",
    "load_backbone",
    "optimizer_param_groups",
    "triplet_loss",
]
