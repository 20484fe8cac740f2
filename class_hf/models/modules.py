"""Building blocks shared by the backbones: text encoders, pooling, atom and bond embeddings."""

from __future__ import annotations

import logging

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig

from ..data.graphs import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS

logger = logging.getLogger(__name__)

POOLING_MODES = ("mean", "cls", "pooler")


def text_config_from(text_config: dict | PreTrainedConfig | None, name_or_path: str | None) -> PreTrainedConfig:
    """Resolves the nested text-encoder config of a backbone config.

    Args:
        text_config (dict | PreTrainedConfig | None): a config object, or its ``to_dict()`` as stored in
            ``config.json`` (must hold ``model_type``).
        name_or_path (str | None): a Hub id or local path to read the config from when ``text_config`` is None.

    Returns:
        PreTrainedConfig: the text encoder's config.
    """
    if isinstance(text_config, PreTrainedConfig):
        return text_config
    if isinstance(text_config, dict):
        if "model_type" not in text_config:
            raise ValueError("`text_config` as a dict needs a `model_type` key (e.g. 'bert').")
        data = dict(text_config)
        return AutoConfig.for_model(data.pop("model_type"), **data)
    if name_or_path is None:
        raise ValueError("Give either `text_config` or `text_encoder_name_or_path` to build the text encoder.")
    return AutoConfig.from_pretrained(name_or_path)


def build_text_encoder(text_config: PreTrainedConfig, name_or_path: str | None = None, load_weights: bool = True):
    """Builds the Hugging Face text encoder of a backbone.

    With ``load_weights`` and a ``name_or_path`` the pretrained weights are loaded (``AutoModel.from_pretrained``);
    otherwise the encoder is built from its config with fresh weights (``from_pretrained`` of the whole backbone
    then fills them in from the checkpoint).
    """
    if load_weights and name_or_path is not None:
        logger.info("Loading text encoder weights from %s", name_or_path)
        return AutoModel.from_pretrained(name_or_path, config=text_config, add_pooling_layer=True)
    return AutoModel.from_config(text_config)


def pool_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str, pooler_output=None) -> torch.Tensor:
    """Pools token states ``[B, L, H]`` into sentence vectors ``[B, H]``.

    Args:
        hidden (torch.Tensor): token hidden states.
        attention_mask (torch.Tensor): ``[B, L]``, 1 for real tokens.
        mode (str): ``mean`` (masked mean), ``cls`` (first token) or ``pooler`` (the model's pooler output).
        pooler_output (torch.Tensor | None): needed for ``pooler``.
    """
    if mode == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "pooler":
        if pooler_output is None:
            raise ValueError("`pooling='pooler'` needs a text encoder with a pooling layer (e.g. BertModel).")
        return pooler_output
    raise ValueError(f"Unknown pooling mode {mode!r}; choose one of {POOLING_MODES}.")


class CategoricalEmbedding(nn.Module):
    """Sum of one embedding table per categorical column (the OGB ``AtomEncoder`` idea).

    Args:
        dims (list[int]): vocabulary size (including the "other" index) of every column.
        emb_dim (int): output size.

    Shapes:
        input ``[N, len(dims)]`` long, output ``[N, emb_dim]``.
    """

    def __init__(self, dims: list[int], emb_dim: int) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(d, emb_dim) for d in dims)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for emb in self.embeddings:
            nn.init.xavier_uniform_(emb.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != len(self.embeddings):
            n = len(self.embeddings)
            raise ValueError(f"expected categorical features of shape [N, {n}], got {tuple(x.shape)}")
        out = self.embeddings[0](x[:, 0])
        for i in range(1, x.shape[1]):
            out = out + self.embeddings[i](x[:, i])
        return out


class AtomEncoder(CategoricalEmbedding):
    """Embeds the atom feature columns of :mod:`class_hf.data.graphs`."""

    def __init__(self, emb_dim: int) -> None:
        super().__init__(ATOM_FEATURE_DIMS, emb_dim)


class BondEncoder(CategoricalEmbedding):
    """Embeds the bond feature columns of :mod:`class_hf.data.graphs`."""

    def __init__(self, emb_dim: int) -> None:
        super().__init__(BOND_FEATURE_DIMS, emb_dim)
