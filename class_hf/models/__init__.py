"""Retrieval backbones. Importing this package registers them with ``AutoConfig`` / ``AutoModel``."""

from .aman import AmanModel
from .base import RetrievalPreTrainedModel, optimizer_param_groups
from .configuration_aman import AmanConfig
from .configuration_dual_encoder import DualEncoderConfig
from .configuration_orma import OrmaConfig
from .dual_encoder import DualEncoderModel
from .losses import contrastive_loss, gather_features, triplet_loss
from .orma import OrmaModel
from .outputs import RetrievalOutput

__all__ = [
    "AmanConfig",
    "AmanModel",
    "DualEncoderConfig",
    "DualEncoderModel",
    "OrmaConfig",
    "OrmaModel",
    "RetrievalOutput",
    "RetrievalPreTrainedModel",
    "contrastive_loss",
    "gather_features",
    "optimizer_param_groups",
    "triplet_loss",
]
