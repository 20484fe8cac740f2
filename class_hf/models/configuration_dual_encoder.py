"""Configuration of the plain dual-encoder backbone (text encoder + GIN/GINE molecule encoder, symmetric InfoNCE)."""

import logging
from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig

from ._compat import SubConfigSpec, text_config_spec
from .auto_registration import register_config
from .text_config import text_config_from

logger = logging.getLogger(__name__)


@strict
class DualEncoderConfig(PreTrainedConfig):
    r"""Configuration of :class:`~class_hf.models.modeling_dual_encoder.DualEncoderModel`.

    The text encoder is any Hugging Face encoder described by the nested ``text_config`` (saved inside
    ``config.json``); the molecule encoder is a GIN or GINE network over the categorical atom and bond features of
    :mod:`class_hf.data.graphs`. Both towers are projected to a shared ``projection_dim`` space and trained with a
    symmetric InfoNCE loss whose temperature is learnable.

    Args:
        text_config (dict | PreTrainedConfig | None): the text encoder's config, or its ``to_dict()`` (which must hold
            ``model_type``). When None it is read from ``text_encoder_name_or_path``; when both are None a default
            ``BertConfig()`` (BERT-base size) is used.
        text_encoder_name_or_path (str | None): Hub id or local folder of a pretrained text encoder. Building the model
            from this config (``DualEncoderModel(config)`` / ``AutoModel.from_config``) loads those weights;
            ``DualEncoderModel.from_pretrained`` of a saved class-hf checkpoint does not (the checkpoint holds them).
        pooling (str): sentence vector from the token states: ``mean`` (masked mean), ``cls`` (first token) or
            ``pooler`` (the encoder's pooling layer, e.g. BERT's; other modes drop that layer).
        gnn_type (str): ``gin`` (GINConv, atom features only) or ``gine`` (GINEConv, with bond features).
        gnn_hidden_size (int): width of the atom embeddings and of every GNN layer.
        gnn_num_layers (int): number of message-passing layers.
        gnn_dropout (float): dropout after every GNN layer.
        graph_pooling (str): readout of the atom states: ``mean``, ``sum`` or ``attention`` (gated attention).
        use_fingerprint (bool): add ``Linear(graph.fp)`` (log1p Morgan count fingerprint, from
            ``featurize_molecules(..., fingerprints=True)``) to the pooled graph embedding.
        fingerprint_dim (int): length of ``graph.fp``.
        projection_dim (int): size of the shared embedding space.
        logit_scale_init (float): initial ``1 / temperature`` (CLIP's ``1 / 0.07``); stored as its log and clamped at
            100 in use.
        learnable_temperature (bool): train ``logit_scale``; otherwise it stays at ``logit_scale_init``.
        normalize (bool): L2-normalise both embeddings (cosine logits); otherwise raw dot products.
        freeze_text_encoder (bool): keep the whole text encoder fixed (no gradients, eval mode, run under
            ``torch.no_grad``).
        train_text_layers (int | None): fine-tune only the top ``k`` transformer layers of the text encoder (and the
            modules above them, such as the pooler); embeddings and lower layers stay fixed. None trains all of it,
            0 none of it.
        gather_across_ranks (bool): use every rank's samples as negatives in distributed training.
        text_pooling_layers (int | None): pool each of the text encoder's top ``k`` hidden states and concatenate
            them (``k * hidden_size`` features); None pools the last layer only.
        text_input_norm (bool): standardise the pooled text features with running statistics before the projection
            (``BatchNorm`` without affine parameters).
        text_head (str): the text projection: ``linear`` or ``mlp`` (``Linear -> GELU -> Linear`` with dropout).
        text_head_hidden_size (int): hidden width of the ``mlp`` head.
        text_head_dropout (float): dropout of the ``mlp`` head.
        fingerprint_fusion (str): where the fingerprint branch joins the molecule tower: ``hidden`` (a linear map of
            ``graph.fp`` added to the pooled graph state, before the projection) or ``output`` (a linear map straight
            into the shared space, added to the projected graph embedding: the frozen-feature linear model plus a
            GNN).

    Example::

        >>> from transformers import BertConfig
        >>> config = DualEncoderConfig(text_config=BertConfig(hidden_size=32, num_hidden_layers=2,
        ...                            num_attention_heads=2, intermediate_size=37), gnn_type="gine")
        >>> config.text_config.hidden_size
        32
    """

    model_type = "class_dual_encoder"
    if SubConfigSpec is not None:  # the nested text config, declared for the installed transformers (_compat.py)
        sub_configs_defaults = {"text_config": text_config_spec(optional=False)}
    else:
        sub_configs = {"text_config": AutoConfig}

    text_config: dict | PreTrainedConfig | None = None
    text_encoder_name_or_path: str | None = None
    pooling: Literal["mean", "cls", "pooler"] = "mean"
    gnn_type: Literal["gin", "gine"] = "gine"
    gnn_hidden_size: int = 300
    gnn_num_layers: int = 3
    gnn_dropout: float | int = 0.1
    graph_pooling: Literal["mean", "sum", "attention"] = "mean"
    use_fingerprint: bool = False
    fingerprint_dim: int = 2048
    projection_dim: int = 256
    logit_scale_init: float | int = 1 / 0.07
    learnable_temperature: bool = True
    normalize: bool = True
    freeze_text_encoder: bool = False
    train_text_layers: int | None = None
    gather_across_ranks: bool = False
    text_pooling_layers: int | None = None
    text_input_norm: bool = False
    text_head: Literal["linear", "mlp"] = "linear"
    text_head_hidden_size: int = 1024
    text_head_dropout: float | int = 0.0
    fingerprint_fusion: Literal["hidden", "output"] = "hidden"

    def __post_init__(self, **kwargs) -> None:
        if self.text_config is not None or self.text_encoder_name_or_path is not None:
            self.text_config = text_config_from(self.text_config, self.text_encoder_name_or_path)
        else:
            self.text_config = AutoConfig.for_model("bert")
        super().__post_init__(**kwargs)

    def validate_dual_encoder(self) -> None:
        """Checks what the field annotations cannot say (``@strict`` checks the types and choices itself): ranges
        and combinations of fields. Run by ``@strict`` after ``__init__`` and by ``config.validate()``."""
        for name in (
            "gnn_hidden_size",
            "gnn_num_layers",
            "fingerprint_dim",
            "projection_dim",
            "text_head_hidden_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)!r}.")
        if not isinstance(self.text_config, PreTrainedConfig):
            raise TypeError(
                f"`text_config` must resolve to a PreTrainedConfig, got {type(self.text_config).__name__}."
            )
        for name in ("gnn_dropout", "text_head_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {getattr(self, name)}.")
        if self.text_pooling_layers is not None:
            num_layers = getattr(self.text_config, "num_hidden_layers", None)
            if self.text_pooling_layers < 1 or (num_layers is not None and self.text_pooling_layers > num_layers):
                raise ValueError(
                    f"`text_pooling_layers` must be between 1 and the text encoder's {num_layers} layers, "
                    f"got {self.text_pooling_layers}."
                )
            if self.text_pooling_layers > 1 and self.pooling == "pooler":
                raise ValueError(
                    "`pooling='pooler'` reads the last layer only; use 'mean' or 'cls' with several layers."
                )
        if not 0.0 < self.logit_scale_init <= 100.0:
            raise ValueError(
                f"`logit_scale_init` is 1 / temperature and must be in (0, 100], got {self.logit_scale_init}."
            )
        if self.train_text_layers is not None:
            if self.freeze_text_encoder:
                raise ValueError(
                    "`freeze_text_encoder=True` and `train_text_layers` are both set; use `freeze_text_encoder=True` "
                    "alone to freeze the whole text encoder, or `train_text_layers=k` alone to fine-tune its top k "
                    "layers."
                )
            num_layers = getattr(self.text_config, "num_hidden_layers", None)
            if self.train_text_layers < 0 or (num_layers is not None and self.train_text_layers > num_layers):
                raise ValueError(
                    f"`train_text_layers` must be between 0 and the text encoder's {num_layers} layers, "
                    f"got {self.train_text_layers}."
                )


# Importing this module may fire class_hf's registration hook before the class exists: register it now.
register_config(DualEncoderConfig)

__all__ = ["DualEncoderConfig"]
