"""Configuration of the plain dual-encoder backbone (text encoder + GIN/GINE molecule encoder, symmetric InfoNCE)."""

from __future__ import annotations

import logging
from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

logger = logging.getLogger(__name__)


_CHOICES: dict[str, tuple[str, ...]] = {
    "pooling": ("mean", "cls", "pooler"),
    "gnn_type": ("gin", "gine"),
    "graph_pooling": ("mean", "sum", "attention"),
}


@strict
class DualEncoderConfig(PreTrainedConfig):
    r"""Configuration of :class:`~class_hf.models.dual_encoder.DualEncoderModel`.

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

    Example::

        >>> from transformers import BertConfig
        >>> config = DualEncoderConfig(text_config=BertConfig(hidden_size=32, num_hidden_layers=2,
        ...                            num_attention_heads=2, intermediate_size=37), gnn_type="gine")
        >>> config.text_config.hidden_size
        32
    """

    model_type = "class_dual_encoder"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

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

    def __post_init__(self, **kwargs) -> None:
        if self.text_config is not None or self.text_encoder_name_or_path is not None:
            # Imported here: config modules import only transformers' config classes, so that registering the
            # backbones with AutoConfig (class_hf.models.auto_registration) never imports AutoModel or PyG.
            from .modules import text_config_from

            self.text_config = text_config_from(self.text_config, self.text_encoder_name_or_path)
        super().__post_init__(**kwargs)

    def validate_dual_encoder(self) -> None:
        """Checks every field's value (run by ``@strict`` after ``__init__`` and by ``config.validate()``).

        The annotations are strings under ``from __future__ import annotations``, so ``@strict`` cannot check the
        field types itself; this validator does.
        """
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"`{name}` must be one of {choices}, got {getattr(self, name)!r}.")
        for name in ("use_fingerprint", "learnable_temperature", "normalize", "freeze_text_encoder"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be a bool, got {getattr(self, name)!r}.")
        for name in ("gnn_hidden_size", "gnn_num_layers", "fingerprint_dim", "projection_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        for name in ("gnn_dropout", "logit_scale_init"):
            if not isinstance(getattr(self, name), (int, float)) or isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be a number, got {getattr(self, name)!r}.")
        if self.text_encoder_name_or_path is not None and not isinstance(self.text_encoder_name_or_path, str):
            raise TypeError(f"`text_encoder_name_or_path` must be a str, got {self.text_encoder_name_or_path!r}.")
        if not isinstance(self.text_config, PreTrainedConfig):
            raise TypeError(
                f"`text_config` must resolve to a PreTrainedConfig, got {type(self.text_config).__name__}."
            )
        if not 0.0 <= self.gnn_dropout < 1.0:
            raise ValueError(f"`gnn_dropout` must be in [0, 1), got {self.gnn_dropout}.")
        if not 0.0 < self.logit_scale_init <= 100.0:
            raise ValueError(
                f"`logit_scale_init` is 1 / temperature and must be in (0, 100], got {self.logit_scale_init}."
            )
        if self.train_text_layers is not None:
            if not isinstance(self.train_text_layers, int) or isinstance(self.train_text_layers, bool):
                raise TypeError(f"`train_text_layers` must be an int or None, got {self.train_text_layers!r}.")
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


__all__ = ["DualEncoderConfig"]
