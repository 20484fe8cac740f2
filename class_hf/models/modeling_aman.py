"""AMAN-like backbone: SciBERT text encoder, edge-aware graph transformer, modality discriminator, triplet loss.

A reimplementation from the description of AMAN (Zhao et al., "Adversarial Modality Alignment Network for
Cross-Modal Molecule Retrieval", IEEE TAI 2023). No AMAN code is public; see :class:`AmanModel` for what is known
and what is chosen here. Results obtained with it should be called "AMAN-like".
"""

from __future__ import annotations

import contextlib
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch_geometric.nn import AttentionalAggregation, BatchNorm, TransformerConv
from transformers import AutoConfig, AutoModel

from .base import RetrievalPreTrainedModel
from .configuration_aman import AmanConfig
from .losses import clamped_logit_scale, contrastive_loss, triplet_loss
from .modules import AtomEncoder, BondEncoder, checked_fingerprints, feature_norm, pool_text
from .outputs import RetrievalOutput

logger = logging.getLogger(__name__)


class _GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``-scale`` (Ganin & Lempitsky, ICML 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad_output, None


def gradient_reversal(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Returns ``x`` unchanged; the gradient flowing back through it is multiplied by ``-scale``."""
    return _GradientReversal.apply(x, scale)


class GraphTransformerBlock(nn.Module):
    r"""One post-norm graph-transformer block with bond features.

    .. math::
        h' = \mathrm{LN}(h + \mathrm{Drop}(\mathrm{TransformerConv}(h, e))), \quad
        h'' = \mathrm{LN}(h' + \mathrm{Drop}(\mathrm{FFN}(h')))

    ``TransformerConv`` (Shi et al., 2021, as in PyG) attends over each atom's bonded neighbours, with the bond
    embedding added to keys and values, plus a root (skip) projection of the atom itself, so an atom without bonds
    keeps its own state.

    Args:
        hidden_size (int): atom-state width; also the bond-embedding width.
        num_heads (int): attention heads (must divide ``hidden_size``).
        ffn_size (int): feed-forward hidden width.
        dropout (float): dropout on attention weights and on both residual branches.

    Shapes:
        x ``(|V|, hidden_size)``, edge_index ``(2, |E|)``, edge_attr ``(|E|, hidden_size)`` -> ``(|V|, hidden_size)``.
    """

    def __init__(self, hidden_size: int, num_heads: int, ffn_size: int, dropout: float) -> None:
        super().__init__()
        self.attention = TransformerConv(
            hidden_size, hidden_size // num_heads, heads=num_heads, concat=True, dropout=dropout, edge_dim=hidden_size
        )
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.ffn = nn.Sequential(nn.Linear(hidden_size, ffn_size), nn.GELU(), nn.Linear(ffn_size, hidden_size))
        self.ffn_norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, edge_index, edge_attr)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class AmanMoleculeEncoder(nn.Module):
    """Graph transformer over atoms with bond features, attention pooling and a projection to the shared space.

    Atom and bond categorical features (:mod:`class_hf.data.graphs`) are embedded, passed through
    ``config.graph_num_layers`` :class:`GraphTransformerBlock` s, pooled per molecule with PyG's
    ``AttentionalAggregation`` (a learned gate gives each atom its importance, AMAN's "substructure importance"),
    then projected: Linear -> ReLU -> Linear -> BatchNorm (see :class:`AmanModel` for why BatchNorm).

    Args:
        config (AmanConfig): the backbone config.

    Shapes:
        a graph ``Batch`` with ``B`` molecules -> ``(B, projection_dim)`` (not normalised).
    """

    def __init__(self, config: AmanConfig) -> None:
        super().__init__()
        hidden = config.graph_hidden_size
        self.atom_encoder = AtomEncoder(hidden)
        self.bond_encoder = BondEncoder(hidden)
        self.layers = nn.ModuleList(
            GraphTransformerBlock(hidden, config.graph_num_heads, config.graph_ffn_size, config.graph_dropout)
            for _ in range(config.graph_num_layers)
        )
        self.pooling = AttentionalAggregation(
            gate_nn=nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        )
        self.projection = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, config.projection_dim), _head_norm(config)
        )
        self.fingerprint_projection = (
            nn.Linear(config.fingerprint_dim, config.projection_dim) if config.use_fingerprint else None
        )
        self.fingerprint_dim = config.fingerprint_dim

    def forward(self, graph) -> torch.Tensor:
        x, edge_index, edge_attr, batch, num_graphs = _graph_inputs(graph)
        h = self.atom_encoder(x)
        e = self.bond_encoder(edge_attr)
        for layer in self.layers:
            h = layer(h, edge_index, e)
        pooled = self.projection[:-1](self.pooling(h, batch, dim_size=num_graphs))
        if self.fingerprint_projection is not None:
            fp = checked_fingerprints(graph, self.fingerprint_dim)
            pooled = pooled + self.fingerprint_projection(fp.to(pooled.dtype))
        return self.projection[-1](pooled)


def _head_norm(config: AmanConfig) -> BatchNorm:
    """The BatchNorm that ends both projection heads; a single-sample training batch uses the running statistics."""
    return BatchNorm(config.projection_dim, allow_single_element=True)


def _graph_inputs(graph) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Reads and checks ``x``, ``edge_index``, ``edge_attr``, ``batch`` and the number of graphs of a PyG batch."""
    x, edge_index = graph.x, graph.edge_index
    if x is None or edge_index is None:
        raise ValueError("`graph` needs `x` [num_atoms, 9] and `edge_index` [2, num_edges]; use the collator.")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"`graph.edge_index` must have shape [2, num_edges], got {tuple(edge_index.shape)}.")
    num_edges = edge_index.shape[1]
    edge_attr = getattr(graph, "edge_attr", None)
    if edge_attr is None:
        if num_edges:
            raise ValueError(f"`graph.edge_attr` is missing but the batch has {num_edges} edges; add bond features.")
        edge_attr = x.new_zeros((0, 3))
    if edge_attr.shape[0] != num_edges:
        raise ValueError(f"`graph.edge_attr` has {edge_attr.shape[0]} rows for {num_edges} edges in `edge_index`.")
    batch = getattr(graph, "batch", None)
    num_graphs = int(getattr(graph, "num_graphs", 1))
    if batch is None:
        batch = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    atoms_per_graph = torch.bincount(batch, minlength=num_graphs)
    empty = (atoms_per_graph == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"molecule(s) at batch position(s) {empty} have no atoms; remove empty molecules from the dataset."
        )
    return x, edge_index, edge_attr, batch, num_graphs


class ModalityDiscriminator(nn.Module):
    """MLP that tells text embeddings from molecule embeddings: LeakyReLU(0.2) hidden layers, one logit out.

    Args:
        input_dim (int): embedding size.
        hidden_sizes (list[int]): hidden widths (CMTMR: 512, 256).

    Shapes:
        ``(N, input_dim)`` -> ``(N,)`` logits (text = 1 for BCE; the WGAN critic's score).
    """

    def __init__(self, input_dim: int, hidden_sizes: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for size in hidden_sizes:
            layers += [nn.Linear(input_dim, size), nn.LeakyReLU(0.2)]
            input_dim = size
        layers.append(nn.Linear(input_dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.net(embeds).squeeze(-1)


class AmanModel(RetrievalPreTrainedModel):
    r"""AMAN-like text-molecule retrieval backbone: a **reimplementation from the AMAN paper's description**.

    AMAN (Zhao, Zhou, Cao, Zhang, Chen, "Adversarial Modality Alignment Network for Cross-Modal Molecule Retrieval",
    IEEE TAI 2023) has no public code (github.com/NicoleBonnie/AMAN holds only a README). Call results obtained
    with this class "AMAN-like".

    **Known (from the abstract):** SciBERT text encoder; a graph transformer molecule encoder that uses edge (bond)
    features and weighs substructures by importance; an adversarial modality discriminator that aligns the two
    modalities; a triplet loss for retrieval; ChEBI-20.

    **Chosen here** (all configurable in :class:`AmanConfig`; nothing below is from AMAN):

    - Text: SciBERT (``text_encoder_name_or_path``) -> BERT ``pooler_output`` (as Text2Mol and CMTMR;
      ``text_pooling="mean"`` is an option) -> Linear -> BatchNorm -> L2 normalisation.
    - Molecule: RDKit atom/bond categorical features (not mol2vec) -> ``graph_num_layers`` post-norm blocks of PyG
      ``TransformerConv(edge_dim=...)`` (attention over bonded neighbours with bond embeddings in keys and values;
      chosen over ``GPSConv`` as the direct "graph transformer with edge features" and for its cost) + feed-forward,
      each with residual + LayerNorm -> PyG ``AttentionalAggregation`` pooling (the learned per-atom gate stands in
      for "substructure importance") -> MLP -> BatchNorm -> L2 normalisation.
    - Both heads end in a BatchNorm over the batch (per modality), as CMTMR's ``fc_sia`` head
      (Linear + BatchNorm1d + Tanh) before its triplet loss. Measured here: with LayerNorm heads instead, a randomly
      initialised model starts with all embeddings nearly parallel (mean cosine 0.96) and the batch-hard triplet
      loss collapses them to one point (loss stuck at the margin, retrieval at chance), while the BatchNorm heads
      spread them (mean cosine ~0) and a 16-pair batch is memorised in 300 Adam steps (tiny config, lr 1e-3).
      In eval mode the running statistics are used (also for a single-sample training batch).
    - Retrieval loss: batch-hard triplet in both directions on the normalised embeddings, margin 0.3 (CMTMR's
      value; :func:`~class_hf.models.losses.triplet_loss`), one value per pair.
    - Discriminator: MLP (512, 256, LeakyReLU 0.2; CMTMR's) on the normalised embeddings, i.e. where retrieval
      happens. Two modes (``adversarial_mode``):

      * ``gradient_reversal`` (**default**): the discriminator minimises BCE(text = 1, molecule = 0); the
        embeddings pass through a gradient-reversal layer, so the encoders receive ``-adversarial_weight`` times
        the discriminator-loss gradient. Everything trains in one optimizer step, which is what
        ``transformers.Trainer`` (and the CurriculumTrainer) does.
      * ``wgan_gp`` (CMTMR's choice): a WGAN-GP critic loss ``mean D(m) - mean D(t) + gp_weight * GP`` on
        *detached* embeddings (text "real", molecule "fake") plus the generator term
        ``-adversarial_weight * mean D(m)`` computed with *detached discriminator parameters*, so the critic never
        receives the generator's gradient. Unlike CMTMR (two optimizers, critic stepped first), the critic and the
        encoders step together from the same discriminator state. :meth:`param_groups` names the critic's
        parameters so that an optimiser can give them their own rate (``config.discriminator_learning_rate``,
        CMTMR's 1e-4). The gradient penalty needs a double backward and is only computed when grad is enabled (it
        is 0 under ``torch.no_grad()``, as in CMTMR's validation); this mode is tested in a single process only.

      In both modes the discriminator's parameters get gradient **only** from the discriminator's own loss: the
      triplet loss does not reach them, and the encoders' adversarial gradient passes through its input only.
    - No learnable temperature: the triplet loss on unit vectors has none; :meth:`score` is the cosine.

    **Loss** (``RetrievalOutput``): ``per_sample_loss`` is the triplet loss of each pair ``[B]``;
    ``loss = per_sample_loss.mean() + rest``, where ``rest = loss - per_sample_loss.mean()`` is the batch-level
    adversarial part:

    - ``gradient_reversal``: ``rest`` = the discriminator's BCE (weight 1; its value, while its gradient reaching
      the encoders is reversed and scaled by ``adversarial_weight``);
    - ``wgan_gp``: ``rest`` = critic loss (incl. gradient penalty; reaches only the discriminator)
      + ``adversarial_weight`` * generator loss (reaches only the encoders).

    ``loss_components`` holds ``triplet`` and these parts (``discriminator``, or ``critic`` and ``generator``);
    they sum to ``loss``. A trainer that re-weights ``per_sample_loss`` adds ``rest`` unchanged.

    **Intensity:** ``supports_intensity = True``; ``forward(..., intensity=g)`` uses margin ``g * triplet_margin``
    (the curriculum's "margin" intensity option).

    **Pretrained weights:** ``text_encoder_name_or_path`` is loaded when the model is constructed
    (``AmanModel(config)``); ``AmanModel.from_pretrained(checkpoint)`` takes every weight, the text encoder's
    included, from the checkpoint and never reads the named encoder (also under DeepSpeed ZeRO-3; see
    :mod:`class_hf.models.base`).

    **Initialisation:** Linear layers (torch and PyG): Xavier-uniform weights, zero biases; atom/bond embeddings:
    Xavier-uniform; LayerNorm and BatchNorm: ones and zeros (and fresh running statistics).

    **Parameter groups:** :meth:`param_groups` returns ``text_encoder``, ``discriminator`` and ``other``;
    ``config.text_encoder_learning_rate`` and ``config.discriminator_learning_rate`` are their learning rates in the
    CurriculumTrainer (unless the training arguments set ``<group>_learning_rate``).

    Args:
        config (AmanConfig): the configuration.

    Example:
        >>> from transformers import BertConfig
        >>> config = AmanConfig(text_config=BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        ...     intermediate_size=37), text_encoder_name_or_path=None, graph_hidden_size=32, projection_dim=16)
        >>> model = AmanModel(config)
        >>> out = model(input_ids, attention_mask, graph)  # a batch from MoleculeTextCollator
        >>> out.loss, out.per_sample_loss.shape  # scalar, [B]
    """

    config_class = AmanConfig
    base_model_prefix = "aman"
    supports_gradient_checkpointing = True
    supports_intensity = True
    intensity_target = "the triplet margin"
    param_group_prefixes = {"text_encoder": "text_encoder.", "discriminator": "discriminator."}
    init_scheme = "xavier"

    def __init__(self, config: AmanConfig) -> None:
        super().__init__(config)
        self.text_encoder = self._build_text_encoder(config.text_pooling)
        text_dim = config.text_config.hidden_size * (config.text_pooling_layers or 1)
        self.text_norm = feature_norm(text_dim) if config.text_input_norm else None
        self.text_projection = nn.Sequential(nn.Linear(text_dim, config.projection_dim), _head_norm(config))
        self.molecule_encoder = AmanMoleculeEncoder(config)
        self.discriminator = ModalityDiscriminator(config.projection_dim, config.discriminator_hidden_sizes)
        if "infonce" in config.retrieval_loss:
            self.logit_scale = nn.Parameter(torch.tensor(math.log(config.logit_scale_init)))
        self.post_init()
        self._apply_freeze_text_encoder()

    def _after_checkpoint_load(self) -> None:
        self._apply_freeze_text_encoder()

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled text-encoder features ``[B, k * hidden]`` (``text_pooling_layers = k``), before the head."""
        layers = self.config.text_pooling_layers
        context = torch.no_grad() if self.text_encoder_frozen else contextlib.nullcontext()
        with context:
            output = self.text_encoder(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=bool(layers and layers > 1)
            )
            return pool_text(output, attention_mask, self.config.text_pooling, layers)

    def text_feature_settings(self) -> dict:
        return {"pooling": self.config.text_pooling, "layers": self.config.text_pooling_layers}

    def encode_text(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Text embeddings ``[B, projection_dim]``, L2-normalised.

        Args:
            input_ids (torch.Tensor | None): ``[B, L]`` token ids.
            attention_mask (torch.Tensor | None): ``[B, L]``, 1 for real tokens.
            text_features (torch.Tensor | None): ``[B, D]`` cached :meth:`text_features` instead of the token ids.
        """
        if text_features is None:
            text_features = self.text_features(input_ids, attention_mask)
        features = text_features.to(self.text_projection[0].weight.dtype)
        if self.text_norm is not None:
            features = self.text_norm(features)
        return F.normalize(self.text_projection(features), dim=-1)

    def encode_molecule(self, graph) -> torch.Tensor:
        """Molecule embeddings ``[B, projection_dim]``, L2-normalised.

        Args:
            graph (torch_geometric.data.Batch): the collator's graph batch (``x`` long ``[N, 9]``, ``edge_index``,
                ``edge_attr`` long ``[E, 3]``, ``batch``); moved to the model's device here.
        """
        return F.normalize(self.molecule_encoder(graph.to(self.device)), dim=-1)

    def adversarial_losses(self, text_embeds: torch.Tensor, mol_embeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch-level adversarial terms, named as in ``loss_components`` (see the class docstring).

        Args:
            text_embeds (torch.Tensor): ``[B, D]`` normalised text embeddings.
            mol_embeds (torch.Tensor): ``[B, D]`` normalised molecule embeddings.

        Returns:
            dict[str, torch.Tensor]: ``{"discriminator": bce}`` (``gradient_reversal``) or
            ``{"critic": ..., "generator": ...}`` (``wgan_gp``); scalars whose sum enters the loss.
        """
        weight = self.config.adversarial_weight
        if self.config.adversarial_mode == "gradient_reversal":
            embeds = gradient_reversal(torch.cat([text_embeds, mol_embeds]), weight)
            labels = torch.cat([embeds.new_ones(text_embeds.shape[0]), embeds.new_zeros(mol_embeds.shape[0])])
            logits = self.discriminator(embeds)
            return {"discriminator": F.binary_cross_entropy_with_logits(logits.float(), labels.float())}
        real, fake = text_embeds.detach(), mol_embeds.detach()
        critic = self.discriminator(fake).mean() - self.discriminator(real).mean()
        if torch.is_grad_enabled():
            critic = critic + self.config.gradient_penalty_weight * self._gradient_penalty(real, fake)
        frozen = {name: param.detach() for name, param in self.discriminator.named_parameters()}
        generator = -functional_call(self.discriminator, frozen, (mol_embeds,)).mean()
        return {"critic": critic.float(), "generator": weight * generator.float()}

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """WGAN-GP penalty ``mean((||grad D(x_hat)|| - 1)^2)`` on random interpolates of real and fake."""
        alpha = torch.rand(real.shape[0], 1, device=real.device, dtype=real.dtype)
        interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grads,) = torch.autograd.grad(self.discriminator(interpolates).sum(), interpolates, create_graph=True)
        return ((grads.norm(2, dim=1) - 1) ** 2).mean()

    def pair_loss(self, text: torch.Tensor, mol: torch.Tensor, intensity: float | None) -> RetrievalOutput:
        """The AMAN loss of a batch of pairs (the loss hook of
        :meth:`~class_hf.models.base.RetrievalPreTrainedModel.forward`): triplet plus the adversarial terms.

        Args:
            text (torch.Tensor): ``[B, D]`` normalised text embeddings.
            mol (torch.Tensor): ``[B, D]`` normalised molecule embeddings; ``mol[i]`` is the partner of ``text[i]``.
            intensity (float | None): curriculum multiplier of the triplet margin (None = 1).

        Returns:
            RetrievalOutput: ``loss``, ``per_sample_loss`` ``[B]`` (triplet), normalised ``text_embeds`` and
            ``mol_embeds``, ``loss_components`` (see the class docstring).
        """
        intensity = 1.0 if intensity is None else intensity
        gather = self.config.gather_across_ranks
        per_sample_loss, components = 0.0, {}
        if "triplet" in self.config.retrieval_loss:
            triplet = triplet_loss(
                text, mol, margin=self.config.triplet_margin * intensity, gather_across_ranks=gather
            )
            per_sample_loss = triplet["per_sample_loss"]
            components["triplet"] = per_sample_loss.mean()
        if "infonce" in self.config.retrieval_loss:
            scale = clamped_logit_scale(self.logit_scale)
            infonce = contrastive_loss(text, mol, scale, gather_across_ranks=gather)["per_sample_loss"]
            per_sample_loss = per_sample_loss + infonce
            components["infonce"] = infonce.mean()
        components.update(self.adversarial_losses(text, mol))
        loss = sum(components.values())
        return RetrievalOutput(
            loss=loss,
            per_sample_loss=per_sample_loss,
            text_embeds=text,
            mol_embeds=mol,
            loss_components=components,
        )


AutoConfig.register(AmanConfig.model_type, AmanConfig, exist_ok=True)
AutoModel.register(AmanConfig, AmanModel, exist_ok=True)

__all__ = ["AmanConfig", "AmanModel", "AmanMoleculeEncoder", "GraphTransformerBlock", "ModalityDiscriminator"]
