"""The plain dual-encoder backbone: a Hugging Face text encoder and a GIN/GINE molecule encoder, symmetric InfoNCE.

The simplest backbone of the backbone contract (:class:`~class_hf.models.base.RetrievalBackbone`): both towers are
projected to one shared space, a learnable temperature scales the cosine logits, and the loss is the CLIP loss with
one value per pair.
"""

from __future__ import annotations

import contextlib
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import BatchNorm, GINConv, GINEConv, global_add_pool, global_mean_pool
from torch_geometric.nn.aggr import AttentionalAggregation
from transformers import AutoConfig, AutoModel
from transformers import initialization as init

from .base import RetrievalPreTrainedModel
from .configuration_dual_encoder import DualEncoderConfig
from .losses import clamped_logit_scale, contrastive_loss
from .modules import AtomEncoder, BondEncoder, build_projection, checked_fingerprints, feature_norm, pool_text
from .outputs import RetrievalOutput

logger = logging.getLogger(__name__)


class GraphEncoder(nn.Module):
    """GIN / GINE over atom (and bond) embeddings, with a graph readout and an optional fingerprint branch.

    Every layer is ``conv -> BatchNorm -> ReLU (not after the last) -> dropout`` over node states of width
    ``hidden_size``; the GIN update MLP is ``Linear(h, 2h) -> BatchNorm -> ReLU -> Linear(2h, h)``. GINE adds a
    per-layer bond embedding to every message. Batch norms accept a single node (a one-atom batch).

    Args:
        config (DualEncoderConfig): reads ``gnn_*``, ``graph_pooling``, ``use_fingerprint`` and ``fingerprint_dim``.

    Shapes:
        ``graph.x`` ``[N, 9]`` long, ``graph.edge_index`` ``[2, E]``, ``graph.edge_attr`` ``[E, 3]`` long,
        ``graph.batch`` ``[N]``, ``graph.fp`` ``[B, fingerprint_dim]`` -> ``[B, hidden_size]``.
    """

    def __init__(self, config: DualEncoderConfig) -> None:
        super().__init__()
        hidden = config.gnn_hidden_size
        self.gnn_type = config.gnn_type
        self.dropout = config.gnn_dropout
        self.atom_encoder = AtomEncoder(hidden)
        self.convs = nn.ModuleList()
        for _ in range(config.gnn_num_layers):
            mlp = nn.Sequential(
                nn.Linear(hidden, 2 * hidden),
                BatchNorm(2 * hidden, allow_single_element=True),
                nn.ReLU(),
                nn.Linear(2 * hidden, hidden),
            )
            self.convs.append(
                GINEConv(mlp, train_eps=True) if self.gnn_type == "gine" else GINConv(mlp, train_eps=True)
            )
        self.bond_encoders = (
            nn.ModuleList(BondEncoder(hidden) for _ in range(config.gnn_num_layers))
            if self.gnn_type == "gine"
            else None
        )
        self.norms = nn.ModuleList(BatchNorm(hidden, allow_single_element=True) for _ in range(config.gnn_num_layers))
        self.graph_pooling = config.graph_pooling
        self.attention_pool = (
            AttentionalAggregation(nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)))
            if config.graph_pooling == "attention"
            else None
        )
        fused_here = config.use_fingerprint and config.fingerprint_fusion == "hidden"
        self.fingerprint_proj = nn.Linear(config.fingerprint_dim, hidden) if fused_here else None
        self.fingerprint_dim = config.fingerprint_dim

    def fingerprints(self, graph) -> torch.Tensor:
        return checked_fingerprints(graph, self.fingerprint_dim)

    def forward(self, graph) -> torch.Tensor:
        num_graphs = int(graph.num_graphs)
        h = self.atom_encoder(graph.x)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            if self.bond_encoders is not None:
                h = conv(h, graph.edge_index, self.bond_encoders[i](graph.edge_attr))
            else:
                h = conv(h, graph.edge_index)
            h = norm(h)
            if i < len(self.convs) - 1:
                h = F.relu(h)
            h = F.dropout(h, p=self.dropout, training=self.training)
        if self.graph_pooling == "mean":
            pooled = global_mean_pool(h, graph.batch, size=num_graphs)
        elif self.graph_pooling == "sum":
            pooled = global_add_pool(h, graph.batch, size=num_graphs)
        else:
            pooled = self.attention_pool(h, graph.batch, dim_size=num_graphs)
        if self.fingerprint_proj is not None:
            pooled = pooled + self.fingerprint_proj(self.fingerprints(graph).to(pooled.dtype))
        return pooled


class DualEncoderPreTrainedModel(RetrievalPreTrainedModel):
    """Weight initialisation and loading of the dual encoder (the Hugging Face ``PreTrainedModel`` glue)."""

    config_class = DualEncoderConfig
    base_model_prefix = "dual_encoder"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """``logit_scale`` = ``log(logit_scale_init)``, GIN ``eps`` = its initial value; Linear (PyTorch's default) and
        BatchNorm layers as :meth:`RetrievalPreTrainedModel._init_weights`."""
        if isinstance(module, DualEncoderModel):
            init.constant_(module.logit_scale, math.log(module.config.logit_scale_init))
        elif isinstance(module, (GINConv, GINEConv)) and isinstance(module.eps, torch.Tensor):
            init.constant_(module.eps, module.initial_eps)
        else:
            super()._init_weights(module)


class DualEncoderModel(DualEncoderPreTrainedModel):
    """Text encoder + GIN/GINE molecule encoder projected to one space, trained with a per-sample CLIP loss.

    Parameters of the text tower live under ``text_encoder.`` (see :meth:`param_groups`). ``logit_scale`` is
    ``log(1 / temperature)``; it is exponentiated and clamped at 100 (as CLIP) in use.

    With ``intensity`` (the curriculum stage multiplier, ``supports_intensity = True``) the logits are multiplied by
    ``intensity``, i.e. the temperature is divided by it: ``intensity > 1`` sharpens the softmax and weights hard
    negatives more.

    Args:
        config (DualEncoderConfig): the model configuration. When ``config.text_encoder_name_or_path`` is set, the
            pretrained text encoder weights are loaded here (not under :meth:`from_pretrained`, whose checkpoint
            holds them).

    ``forward`` is the shared one of :class:`~class_hf.models.base.RetrievalPreTrainedModel`; this class writes the
    two encoders and the loss (:meth:`pair_loss`).

    Example::

        >>> model = DualEncoderModel(config)
        >>> out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], graph=batch["graph"])
        >>> out.loss, out.per_sample_loss.shape  # scalar, [B]
    """

    supports_intensity = True

    def __init__(self, config: DualEncoderConfig) -> None:
        super().__init__(config)
        self.text_encoder = self._build_text_encoder(config.pooling)
        text_dim = config.text_config.hidden_size * (config.text_pooling_layers or 1)
        self.text_norm = feature_norm(text_dim) if config.text_input_norm else None
        self.text_projection = build_projection(
            text_dim, config.projection_dim, config.text_head, config.text_head_hidden_size, config.text_head_dropout
        )
        self.graph_encoder = GraphEncoder(config)
        self.mol_projection = nn.Linear(config.gnn_hidden_size, config.projection_dim, bias=False)
        fused_out = config.use_fingerprint and config.fingerprint_fusion == "output"
        self.fingerprint_projection = nn.Linear(config.fingerprint_dim, config.projection_dim) if fused_out else None
        self.logit_scale = nn.Parameter(torch.tensor(math.log(config.logit_scale_init)))
        self.post_init()
        self._set_trainable_parameters()

    # ----------------------------------------------------------------------------------------------- freezing
    def _after_checkpoint_load(self) -> None:
        # Loading swaps in new Parameter objects, which forgets `requires_grad=False`: set it again.
        self._set_trainable_parameters()

    def _text_layer_list(self) -> tuple[str, nn.ModuleList]:
        """Finds the text encoder's list of transformer layers (the ModuleList with ``num_hidden_layers`` entries)."""
        num_layers = self.config.text_config.num_hidden_layers
        candidates = [
            (name, module)
            for name, module in self.text_encoder.named_modules()
            if isinstance(module, nn.ModuleList) and len(module) == num_layers
        ]
        if not candidates:
            raise ValueError(
                f"`train_text_layers` needs the text encoder's list of {num_layers} layers, but "
                f"{type(self.text_encoder).__name__} has no ModuleList of that length; use `freeze_text_encoder` "
                "instead."
            )
        return candidates[0]

    def _set_trainable_parameters(self) -> None:
        """Sets ``requires_grad`` from ``learnable_temperature``, ``freeze_text_encoder`` and ``train_text_layers``."""
        self.logit_scale.requires_grad_(self.config.learnable_temperature)
        k = self.config.train_text_layers
        if self.config.freeze_text_encoder or k == 0:
            self.text_encoder.requires_grad_(False)
            self.text_encoder.eval()
            return
        if k is None:
            return
        list_name, layers = self._text_layer_list()
        names = [name for name, _ in self.text_encoder.named_parameters()]
        in_list = [i for i, name in enumerate(names) if name.startswith(f"{list_name}.")]
        top = tuple(f"{list_name}.{j}." for j in range(len(layers) - k, len(layers)))
        trainable = 0
        for i, (name, param) in enumerate(self.text_encoder.named_parameters()):
            # Parameters registered after the layer list (pooler, final norm) sit above the layers: keep them.
            param.requires_grad_(name.startswith(top) or i > in_list[-1])
            trainable += param.numel() if param.requires_grad else 0
        logger.info("Fine-tuning the top %d text encoder layers (%d parameters).", k, trainable)

    # ----------------------------------------------------------------------------------------------- encoders
    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled text-encoder features ``[B, k * hidden]`` (``text_pooling_layers = k``), before the head."""
        context = torch.no_grad() if self.text_encoder_frozen else contextlib.nullcontext()
        layers = self.config.text_pooling_layers
        with context:
            out = self.text_encoder(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=bool(layers and layers > 1)
            )
            return pool_text(out, attention_mask, self.config.pooling, layers)

    def text_feature_settings(self) -> dict:
        return {"pooling": self.config.pooling, "layers": self.config.text_pooling_layers}

    def encode_text(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embeds texts in the shared space.

        Args:
            input_ids (torch.Tensor | None): ``[B, L]`` token ids.
            attention_mask (torch.Tensor | None): ``[B, L]``, 1 for real tokens.
            text_features (torch.Tensor | None): ``[B, D]`` cached :meth:`text_features` instead of the token ids.

        Returns:
            torch.Tensor: ``[B, projection_dim]``, L2-normalised when ``config.normalize``.
        """
        if text_features is None:
            text_features = self.text_features(input_ids, attention_mask)
        features = text_features.to(next(self.text_projection.parameters()).dtype)
        if self.text_norm is not None:
            features = self.text_norm(features)
        embeds = self.text_projection(features)
        return F.normalize(embeds, dim=-1) if self.config.normalize else embeds

    def encode_molecule(self, graph) -> torch.Tensor:
        """Embeds molecule graphs in the shared space.

        Args:
            graph (torch_geometric.data.Batch): the collator's graph batch (moved to the model's device here).

        Returns:
            torch.Tensor: ``[B, projection_dim]``, L2-normalised when ``config.normalize``.
        """
        graph = graph.to(self.device)
        embeds = self.mol_projection(self.graph_encoder(graph))
        if self.fingerprint_projection is not None:
            fp = checked_fingerprints(graph, self.config.fingerprint_dim)
            embeds = embeds + self.fingerprint_projection(fp.to(embeds.dtype))
        return F.normalize(embeds, dim=-1) if self.config.normalize else embeds

    def get_logit_scale(self) -> torch.Tensor:
        """``1 / temperature``: ``exp(logit_scale)`` clamped at 100."""
        return clamped_logit_scale(self.logit_scale)

    def pair_loss(self, text: torch.Tensor, mol: torch.Tensor, intensity: float | None) -> RetrievalOutput:
        """The per-sample symmetric InfoNCE loss of a batch of pairs (the loss hook of
        :meth:`~class_hf.models.base.RetrievalPreTrainedModel.forward`).

        Args:
            text (torch.Tensor): ``[B, projection_dim]`` text embeddings.
            mol (torch.Tensor): ``[B, projection_dim]`` molecule embeddings; ``mol[i]`` is the partner of ``text[i]``.
            intensity (float | None): curriculum stage multiplier; the logits are multiplied by it.

        Returns:
            RetrievalOutput: ``loss`` (mean of ``per_sample_loss``), ``per_sample_loss`` ``[B]``, ``text_embeds``,
            ``mol_embeds`` and ``loss_components`` (``t2m``, ``m2t`` means).
        """
        scale = self.get_logit_scale()
        if intensity is not None:
            scale = scale * intensity
        losses = contrastive_loss(text, mol, scale, gather_across_ranks=self.config.gather_across_ranks)
        per_sample = losses["per_sample_loss"]
        return RetrievalOutput(
            loss=per_sample.mean(),
            per_sample_loss=per_sample,
            text_embeds=text,
            mol_embeds=mol,
            loss_components={"t2m": losses["t2m"].mean().detach(), "m2t": losses["m2t"].mean().detach()},
        )


AutoConfig.register("class_dual_encoder", DualEncoderConfig, exist_ok=True)
AutoModel.register(DualEncoderConfig, DualEncoderModel, exist_ok=True)

__all__ = ["DualEncoderConfig", "DualEncoderModel", "DualEncoderPreTrainedModel", "GraphEncoder"]
