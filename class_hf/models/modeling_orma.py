"""ORMA: optimal-transport-based multi-grained text-molecule alignment (Min, Liu et al., BIBM 2024).

A re-implementation of DeepLearnXMU/Orma (``modeling.py``, ``dataloader.py``, ``utils.py``) on the class-hf backbone
contract. Text side: a Hugging Face encoder gives a sentence vector (``pooler_output -> Linear -> LayerNorm``),
multi-token vectors (``hidden_states[-2] -> Linear``) and token vectors (``hidden_states[-3] -> Linear``). Molecule
side: a hierarchical graph of atom nodes, one node per motif (initialised with the mean of its atoms, edges
atom -> motif) and one molecule node (mean of the motifs, edges motif -> molecule), all edges one-directional as in
ORMA, encoded by a 3-layer GCN, an MLP and a LayerNorm, then one Linear per level. Three contrastive grains:

- **global** (sentence-molecule): ``exp(temp)**2 * sentence @ molecule.T``;
- **local** (token-atom, SPARC-style): per pair, token-atom similarities are min-max normalised per token, turned into
  alignment weights, and each token gets the weighted mean of the atoms; the L2-normalised tokens and grouped atoms
  are summed over the tokens and LayerNorm-ed (no affine), giving one text and one molecule vector per pair;
- **mid** (multi-token-motif): an OT plan between the multi-tokens and the motifs assigns every token to one motif;
  the mean of the tokens of a motif is its "phrase"; phrases and motifs go through the same SPARC-style grouping.

The loss is ``0.3 * global + 0.2 * mid + 0.5 * local``, each a symmetric InfoNCE (per pair: the mean of its
text->molecule and molecule->text cross-entropies), so ``per_sample_loss`` is the same weighted sum per pair.

Reproduced quirks of the reference (flagged):

- **argmin assignment**: ORMA assigns each token to the motif with the *least* transported mass
  (``dist.min(dim=-1)[1]``), probably a slip for argmax; reproduced by default (``motif_assignment="argmin"``; use
  ``"argmax"`` for the evident intent). The plan is float32 and, as in the reference, exactly zero where the mass
  underflows, so ties go to the lowest motif index, as ``torch.min`` does there.
- **the OT loop is IPOT** (proximal point: the kernel is multiplied by the previous plan each step), not plain
  entropic Sinkhorn; reproduced by default (``ot_method="ipot"``, ``beta=0.5``, 50 steps, uniform marginals); see
  :mod:`class_hf.models.sinkhorn`. The plan only feeds the (non-differentiable) assignment, so it is computed without
  gradient.
- **batch-position dependence**: the local and mid molecule vectors of pair ``b`` are grouped with the text at the same
  position ``b``, so the logit between text ``i`` and molecule ``j`` uses molecule ``j`` seen through text ``j``.
  The training loss is exactly ORMA's; ``score_mode="faithful"`` reproduces ORMA's evaluation with it.
- ``temp`` starts at 0.07 and is used as ``exp(temp)`` on both sides (a scale of about 1.15 on the global logits,
  not a temperature of 0.07); the fine grains are scale-free (normalised), so only the global grain uses it.

Deliberate deviations (documented, not bugs of this code):

- **padding takes no part**: ORMA pads texts to 256 tokens and atoms/motifs to 580/140 slots (filled with 1e-8 before
  the per-level Linear) and lets the padding enter its sums, min-max ranges, OT marginals and the argmin (padded
  tokens all go to motif 0). Here every step is masked, so results do not depend on how much padding a batch has,
  and padding to the batch's longest molecule is equivalent to padding to ``max_atoms`` / ``max_motifs``.
  SPARC weights are ``(s - min + eps) / (max - min + eps)`` over the real atoms (ORMA: no ``eps`` in the numerator),
  so a molecule with one atom, or equal similarities, gets uniform weights instead of zeros.
  A motif that no token picked has no phrase and is left out of the mid-grain sums.
- **truncation**: a molecule with more than ``max_atoms`` atoms (``max_motifs`` motifs) keeps its first ones for the
  fine grains (as ORMA's ``group_padding``) and a warning is logged once; all atoms still take part in the GCN.
- **motifs**: the graph's ``atom2motif`` (class_hf.data.graphs: every atom in exactly one motif) defines the motif
  nodes. ORMA's cliques may share atoms and it drops a clique spanning the whole molecule (then atoms link straight
  to the molecule node); a graph with ``num_motifs == 0`` is handled that way here too (its ``atom2motif`` is
  ignored).
- **atom features**: ``atom_features="rdkit"`` (default) embeds the categorical RDKit features (learned); ORMA used
  Text2Mol's frozen mol2vec vectors, available with ``atom_features="mol2vec"`` (see
  :class:`~class_hf.data.mol2vec.Mol2VecIndexer`). Bond
  features are not used (GCN), as in ORMA.

Retrieval scores (``score_mode``):

- ``global`` (default): cosine of the query-independent global embeddings (``encode_text`` / ``encode_molecule``).
  Every text and molecule is embedded once and any pool, e.g. all 33,010 ChEBI-20 molecules (Text2Mol protocol),
  is ranked with chunked matrix products; difficulty scoring needs the same. ORMA's fine grains cannot do that: their
  molecule side depends on the paired text.
- ``faithful``: ORMA's evaluation score, the weighted sum of the three grains' logits as its ``record_metrics``
  computes it, block by block with the batch-position pairing above (:meth:`OrmaModel.score_pairs`,
  :meth:`OrmaModel.score_blocks`); only meaningful within equally sized blocks of one split.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GCNConv
from torch_geometric.utils import scatter, to_dense_batch
from transformers import AutoConfig, AutoModel
from transformers import initialization as init

from ..data.mol2vec import load_mol2vec_embeddings
from ..data.text_features import text_inputs
from .base import RetrievalPreTrainedModel, loading_checkpoint
from .configuration_orma import OrmaConfig
from .losses import clamped_logit_scale, contrastive_loss
from .modules import AtomEncoder, checked_fingerprints, feature_norm, pool_tokens
from .outputs import RetrievalOutput
from .sinkhorn import transport_plan, uniform_marginals

logger = logging.getLogger(__name__)
_WARNED: set[str] = set()  # keys already warned about in this process (see OrmaModel._warn_once)

GRAINS = ("global", "mid", "local")

# ---------------------------------------------------------------------------------------------------------------
# Molecule encoder
# ---------------------------------------------------------------------------------------------------------------


class OrmaGCN(nn.Module):
    """ORMA's ``GCNModel`` plus its ``mol_ln``: GCN layers, a 3-layer MLP and a LayerNorm over every node.

    Every GCN layer is ``GCNConv -> dropout -> ReLU`` (no ReLU after the last); the MLP is ``Linear -> dropout ->
    ReLU -> Linear -> dropout -> ReLU -> Linear``; then LayerNorm.

    Args:
        in_dim (int): width of the input node features.
        emb_dim (int): width of every layer.
        num_layers (int): GCN layers.
        dropout (float): dropout probability.
    """

    def __init__(self, in_dim: int, emb_dim: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(GCNConv(in_dim if i == 0 else emb_dim, emb_dim) for i in range(num_layers))
        self.mlp = nn.ModuleList(nn.Linear(emb_dim, emb_dim) for _ in range(3))
        self.norm = nn.LayerNorm(emb_dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = F.dropout(conv(x, edge_index), p=self.dropout, training=self.training)
            if i < len(self.convs) - 1:
                x = F.relu(x)
        for i, linear in enumerate(self.mlp):
            x = linear(x)
            if i < len(self.mlp) - 1:
                x = F.relu(F.dropout(x, p=self.dropout, training=self.training))
        return self.norm(x)


# ---------------------------------------------------------------------------------------------------------------
# Features and grains
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class OrmaTextFeatures:
    """Text representations of a batch (before any ``exp(temp)`` scaling).

    Attributes:
        sentence (torch.Tensor): ``[B, D]`` global text embeddings.
        multi_token (torch.Tensor): ``[B, L, D]``.
        token (torch.Tensor): ``[B, L, D]``.
        mask (torch.Tensor): ``[B, L]`` bool, True for real tokens.
    """

    sentence: torch.Tensor
    multi_token: torch.Tensor
    token: torch.Tensor
    mask: torch.Tensor


@dataclass
class OrmaMoleculeFeatures:
    """Molecule representations of a batch (before any ``exp(temp)`` scaling).

    Attributes:
        molecule (torch.Tensor): ``[B, D]`` global molecule embeddings.
        motif (torch.Tensor): ``[B, K, D]`` with ``K <= max_motifs``; ``motif_mask`` ``[B, K]``.
        atom (torch.Tensor): ``[B, A, D]`` with ``A <= max_atoms``; ``atom_mask`` ``[B, A]``.
    """

    molecule: torch.Tensor
    motif: torch.Tensor
    motif_mask: torch.Tensor
    atom: torch.Tensor
    atom_mask: torch.Tensor


def sparc_grouping(
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_mask: torch.Tensor,
    key_mask: torch.Tensor,
    eps: float = 1e-8,
    group_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ORMA's SPARC-style grouping of each pair's keys onto its queries, summed into one vector per side.

    For pair ``b``: ``s = queries[b] @ keys[b].T``; each query row is min-max normalised over the real keys
    (``(s - min + eps) / (max - min + eps)``), masked keys get weight 0, rows are normalised to sum to 1, and the
    grouped key of each query is the weighted sum of the keys. Queries and grouped keys are L2-normalised and summed
    over the real queries, then LayerNorm-ed (no affine).

    Args:
        queries (torch.Tensor): ``[B, Q, D]`` (tokens or phrases).
        keys (torch.Tensor): ``[B, K, D]`` (atoms or motifs).
        query_mask (torch.Tensor): ``[B, Q]`` bool.
        key_mask (torch.Tensor): ``[B, K]`` bool.
        eps (float): ORMA's epsilon.
        group_size (int, optional): computes the pairs in groups of this many, sorted by their number of keys, each
            group padded only to its own longest key list (the keys must be left-aligned, as ``to_dense_batch``
            puts them; otherwise the whole batch is computed at once). The results are the same up to float
            rounding; with molecules of very different sizes it saves most of the work. ``None``: one batch.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: the text-side and molecule-side vectors, each ``[B, D]``; their dot
        products across pairs are the grain's logits.
    """
    counts = key_mask.sum(dim=-1)
    positions = torch.arange(key_mask.shape[-1], device=key_mask.device)
    left_aligned = bool((key_mask == (positions < counts[:, None])).all())
    if group_size is None or queries.shape[0] <= group_size or not left_aligned:
        return _sparc_grouping(queries, keys, query_mask, key_mask, eps)
    # Pairs sorted by their number of keys, in groups cut to the group's longest key list: each pair's result is
    # the same, without the padding of every pair to the batch's largest molecule.
    order = torch.argsort(counts, stable=True)
    sorted_counts = counts[order].tolist()
    parts = []
    for start in range(0, queries.shape[0], group_size):
        index = order[start : start + group_size]
        width = max(1, sorted_counts[start : start + group_size][-1])  # the group's largest, at least 1
        parts.append(
            _sparc_grouping(queries[index], keys[index, :width], query_mask[index], key_mask[index, :width], eps)
        )
    restore = torch.argsort(order)
    text = torch.cat([part[0] for part in parts])[restore]
    mol = torch.cat([part[1] for part in parts])[restore]
    return text, mol


def _sparc_grouping(
    queries: torch.Tensor, keys: torch.Tensor, query_mask: torch.Tensor, key_mask: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    sim = torch.bmm(queries, keys.transpose(1, 2))
    valid = key_mask.unsqueeze(1)
    low = sim.masked_fill(~valid, float("inf")).amin(dim=-1, keepdim=True)
    high = sim.masked_fill(~valid, float("-inf")).amax(dim=-1, keepdim=True)
    has_key = key_mask.any(dim=-1).view(-1, 1, 1)
    low = torch.where(has_key, low, torch.zeros_like(low))
    high = torch.where(has_key, high, torch.zeros_like(high))
    weights = ((sim - low + eps) / (high - low + eps)).masked_fill(~valid, 0.0)
    weights = weights / (weights.sum(dim=-1, keepdim=True) + eps)
    grouped = torch.bmm(weights, keys)
    q_mask = query_mask.unsqueeze(-1).to(queries.dtype)
    text = (F.normalize(queries, dim=-1) * q_mask).sum(dim=1)
    mol = (F.normalize(grouped, dim=-1) * q_mask).sum(dim=1)
    dim = queries.shape[-1]
    return F.layer_norm(text, (dim,)), F.layer_norm(mol, (dim,))


# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------


class OrmaPreTrainedModel(RetrievalPreTrainedModel):
    """Weight initialisation and checkpoint loading of :class:`OrmaModel`."""

    config_class = OrmaConfig
    base_model_prefix = "orma"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's default initialisation, as ORMA (which never re-initialises); ``temp`` = ``temperature_init``.

        GCN layers: glorot weights and zero biases (PyG's default); Linear and LayerNorm layers as
        :meth:`RetrievalPreTrainedModel._init_weights`. The frozen mol2vec table is left alone (filled from its file in
        ``__init__``, or from the checkpoint).
        """
        if isinstance(module, OrmaModel):
            if module.temp is not None:
                init.constant_(module.temp, module.config.temperature_init)
            if module.logit_scale is not None:
                init.constant_(module.logit_scale, math.log(module.config.logit_scale_init))
        elif isinstance(module, GCNConv):
            init.xavier_uniform_(module.lin.weight)  # PyG's glorot
            if module.bias is not None:
                init.zeros_(module.bias)
        else:
            super()._init_weights(module)


class OrmaModel(OrmaPreTrainedModel):
    """ORMA backbone: text encoder, hierarchical-graph GCN and three contrastive grains (see the module docstring).

    Parameters of the text tower live under ``text_encoder.`` (:meth:`param_groups`; ORMA trains it at lr 3e-5 and the
    rest at 1e-4, Adam, weight decay 1e-4 on all). ``temp`` is ORMA's learnable scale: the global logits are
    ``exp(temp)**2 * sentence @ molecule.T``; with ``global_similarity="cosine"`` they are ``exp(logit_scale)`` times
    the cosine instead, and ``temp`` is None. With ``intensity`` (curriculum stage multiplier,
    ``supports_intensity = True``) the logits of every grain are multiplied by it. :meth:`score` is the cosine of the
    global embeddings (``score_mode="global"``, the only score computable from per-item embeddings); ORMA's faithful
    score needs the fine-grained features of whole blocks (:meth:`score_pairs`, :meth:`score_blocks`).

    Args:
        config (OrmaConfig): the configuration. With ``text_encoder_name_or_path`` the pretrained text encoder is
            loaded here (not under :meth:`from_pretrained`), and with ``atom_features="mol2vec"`` the table is read
            from ``mol2vec_embeddings_path``.

    Example::

        >>> model = OrmaModel(OrmaConfig(text_config=bert_config, text_encoder_name_or_path=None))
        >>> out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], graph=batch["graph"])
        >>> out.per_sample_loss.shape, sorted(out.loss_components)
        (torch.Size([B]), ['loss_global', 'loss_local', 'loss_mid'])
    """

    supports_intensity = True

    def __init__(self, config: OrmaConfig) -> None:
        super().__init__(config)
        self.text_encoder = self._build_text_encoder(config.pooling)
        hidden, dim = config.text_config.hidden_size, config.emb_dim
        self.sentence_norm = feature_norm(hidden * config.sentence_layers) if config.text_input_norm else None
        self.sent_proj = nn.Linear(hidden * config.sentence_layers, dim)
        self.sent_norm = nn.LayerNorm(dim)
        self.multi_token_proj = nn.Linear(hidden, dim)
        self.token_proj = nn.Linear(hidden, dim)

        if config.atom_features == "mol2vec":
            self.atom_encoder = None
            self.mol2vec = nn.Embedding(config.mol2vec_vocab_size, config.mol2vec_dim)
            self.mol2vec.weight.requires_grad_(False)
            in_dim = config.mol2vec_dim
        else:
            self.atom_encoder = AtomEncoder(dim)
            self.mol2vec = None
            in_dim = dim
        self.gcn = OrmaGCN(in_dim, dim, config.num_gnn_layers, config.dropout)
        self.mol_proj = nn.Linear(dim, dim)
        self.motif_proj = nn.Linear(dim, dim)
        self.atom_proj = nn.Linear(dim, dim)
        self.fingerprint_projection = nn.Linear(config.fingerprint_dim, dim) if config.use_fingerprint else None
        # one learnable scale of the global grain: ORMA's ``temp`` (dot) or CLIP's ``logit_scale`` (cosine)
        cosine = config.global_similarity == "cosine"
        self.temp = None if cosine else nn.Parameter(torch.tensor(float(config.temperature_init)))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(config.logit_scale_init))) if cosine else None
        self.post_init()
        if self.mol2vec is not None and not loading_checkpoint():  # a checkpoint holds the table
            self._load_mol2vec_table()
        self._apply_freeze_text_encoder()

    def _after_checkpoint_load(self) -> None:
        if self.mol2vec is not None:  # loading swaps in new Parameters, which forgets requires_grad=False
            self.mol2vec.weight.requires_grad_(False)
        self._apply_freeze_text_encoder()

    def _load_mol2vec_table(self) -> None:
        path = self.config.mol2vec_embeddings_path
        if path is None:
            raise ValueError(
                "`atom_features='mol2vec'` needs `mol2vec_embeddings_path` (the .npz of Text2Mol's token embeddings, "
                "e.g. data/chebi20/text2mol/token_embeddings.npz)."
            )
        _, vectors = load_mol2vec_embeddings(path)
        if vectors.shape != tuple(self.mol2vec.weight.shape):
            raise ValueError(
                f"{path} holds a {vectors.shape} table but the config expects [{self.config.mol2vec_vocab_size}, "
                f"{self.config.mol2vec_dim}]; set `mol2vec_vocab_size` and `mol2vec_dim` to match the file."
            )
        with torch.no_grad():
            self.mol2vec.weight.copy_(torch.from_numpy(vectors))

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        """Logs ``message`` the first time ``key`` comes up in this process: the warm-up scorer's copy, the trained
        model and a reloaded checkpoint share it, so the warning appears once, not once per copy."""
        if key not in _WARNED:
            _WARNED.add(key)
            logger.warning(message, *args)

    # ------------------------------------------------------------------------------------------------- text
    def _hidden_state(self, hidden_states: Sequence[torch.Tensor], index: int, name: str) -> torch.Tensor:
        position = index if index >= 0 else len(hidden_states) + index
        if not 0 <= position < len(hidden_states):
            self._warn_once(
                f"{name}={index}",
                "The text encoder gives %d hidden states, so `%s=%d` does not exist; using hidden_states[0] (the "
                "embedding output) instead.",
                len(hidden_states),
                name,
                index,
            )
            position = 0
        return hidden_states[position]

    def _sentence(self, layers: Sequence[torch.Tensor], attention_mask, pooler_output) -> torch.Tensor:
        """The sentence vector from ``layers`` (last, multi-token, token states; the first ``sentence_layers`` are
        pooled and concatenated, last layer first), standardised with ``text_input_norm``, projected and normalised."""
        mode, k = self.config.pooling, self.config.sentence_layers
        pooled = torch.cat([pool_tokens(h, attention_mask, mode, pooler_output) for h in layers[:k]], dim=-1)
        if self.sentence_norm is not None:
            pooled = self.sentence_norm(pooled)
        return self.sent_norm(self.sent_proj(pooled))

    text_feature_layout = "tokens"

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The text encoder's part of ORMA's text tower, ``[B, L, 3 * hidden]``: the token layer's, the multi-token
        layer's and the last layer's states, side by side (what a frozen encoder's cache holds).

        Raises:
            ValueError: with ``pooling='pooler'`` (the pooler's output is not a token state; cache with 'mean' or
                'cls').
        """
        if self.config.pooling == "pooler":
            raise ValueError(
                "ORMA's text features hold token states; `pooling='pooler'` needs the encoder's pooling layer on "
                "every call. Use `pooling='mean'` or 'cls' to cache frozen text features."
            )
        context = torch.no_grad() if self.text_encoder_frozen else contextlib.nullcontext()
        with context:
            out = self.text_encoder(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, return_dict=True
            )
            hidden = out.hidden_states
            token = self._hidden_state(hidden, self.config.token_layer, "token_layer")
            multi = self._hidden_state(hidden, self.config.multi_token_layer, "multi_token_layer")
            return torch.cat([token, multi, out.last_hidden_state], dim=-1)

    def text_feature_settings(self) -> dict:
        c = self.config
        return {"pooling": c.pooling, "token_layer": c.token_layer, "multi_token_layer": c.multi_token_layer}

    def text_grains(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
    ) -> OrmaTextFeatures:
        """Sentence, multi-token and token representations of a batch of texts.

        Args:
            input_ids (torch.Tensor | None): ``[B, L]``.
            attention_mask (torch.Tensor | None): ``[B, L]``, 1 for real tokens.
            text_features (torch.Tensor | None): ``[B, L, 3 * hidden]`` cached :meth:`text_features` instead of the
                token ids (with their ``attention_mask``).
        """
        if text_features is None and self.config.pooling == "pooler":
            out = self.text_encoder(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, return_dict=True
            )
            hidden = out.hidden_states
            token = self._hidden_state(hidden, self.config.token_layer, "token_layer")
            multi = self._hidden_state(hidden, self.config.multi_token_layer, "multi_token_layer")
            sentence = self._sentence([out.last_hidden_state], attention_mask, out.pooler_output)
        else:
            if text_features is None:
                text_features = self.text_features(input_ids, attention_mask)
            text_features = text_features.to(self.token_proj.weight.dtype)
            token, multi, last = text_features.chunk(3, dim=-1)
            sentence = self._sentence([last, multi, token], attention_mask, None)
        return OrmaTextFeatures(
            sentence=sentence,
            multi_token=self.multi_token_proj(multi),
            token=self.token_proj(token),
            mask=attention_mask.bool(),
        )

    # ------------------------------------------------------------------------------------------------- molecule
    def _atom_inputs(self, graph) -> torch.Tensor:
        if self.mol2vec is None:
            return self.atom_encoder(graph.x)
        index = getattr(graph, "mol2vec_index", None)
        if index is None:
            raise ValueError(
                "`atom_features='mol2vec'` needs the `mol2vec_index` graph column: add it with "
                "`MoleculeFeatures.for_model(model).featurize(dataset)` (class_hf.data.features) and keep it in the "
                "collated graph."
            )
        index = index.view(-1).long()
        if index.numel() != graph.num_nodes:
            raise ValueError(
                f"`graph.mol2vec_index` has {index.numel()} entries for {graph.num_nodes} atoms; recompute it from "
                "the same SMILES as the graph columns."
            )
        if index.numel() and (index.min() < 0 or index.max() >= self.mol2vec.num_embeddings):
            raise ValueError(
                f"`graph.mol2vec_index` must lie in [0, {self.mol2vec.num_embeddings}); recompute it with the "
                "vocabulary of `mol2vec_embeddings_path`."
            )
        return self.mol2vec(index)

    def _check_graph(self, graph, num_graphs: int, atom_counts: torch.Tensor, atom2motif: torch.Tensor, motif2graph):
        """Every molecule has atoms; in a molecule with motifs, every atom's ``atom2motif`` is one of its motifs."""
        empty = (atom_counts == 0).nonzero().view(-1)
        if empty.numel():
            raise ValueError(
                f"Molecules {empty.tolist()} of the batch have no atoms; remove them from the dataset (featurization "
                "never produces such graphs)."
            )
        if atom2motif.shape != (graph.num_nodes,):
            raise ValueError(f"`graph.atom2motif` must have one entry per atom ([{graph.num_nodes}]).")
        num_motifs = motif2graph.numel()
        assigned = (torch.bincount(motif2graph, minlength=num_graphs) > 0)[graph.batch]
        in_range = (atom2motif >= 0) & (atom2motif < num_motifs)
        own = motif2graph[atom2motif.clamp(0, max(num_motifs - 1, 0))] == graph.batch if num_motifs else in_range
        bad = assigned & ~(in_range & own)
        if bad.any():
            first = int(graph.batch[bad.nonzero()[0, 0]])
            raise ValueError(
                f"`graph.atom2motif` of molecule {first} does not index that molecule's motifs: every atom needs a "
                "motif in [0, num_motifs) of its own graph, offset by the motifs of the graphs before it (build the "
                "batch with the class_hf collator)."
            )
        return assigned

    def molecule_features(self, graph) -> OrmaMoleculeFeatures:
        """Encodes the hierarchical graphs and splits the node outputs into molecule, motif and atom levels.

        Args:
            graph (torch_geometric.data.Batch): the collator's batch (moved to the model's device here).
        """
        graph = graph.to(self.device)
        num_graphs = int(graph.num_graphs)
        num_atoms = int(graph.num_nodes)
        batch = graph.batch if graph.batch is not None else graph.x.new_zeros(num_atoms)
        graph.batch = batch
        num_motifs_per_graph = graph.num_motifs.view(-1).long()
        motif2graph = torch.repeat_interleave(torch.arange(num_graphs, device=batch.device), num_motifs_per_graph)
        num_motifs = motif2graph.numel()
        atom2motif = graph.atom2motif.view(-1).long()
        atom_counts = torch.bincount(batch, minlength=num_graphs)
        assigned = self._check_graph(graph, num_graphs, atom_counts, atom2motif, motif2graph)

        atom_x = self._atom_inputs(graph)
        atom_ids = torch.arange(num_atoms, device=batch.device)
        motif_x = scatter(atom_x[assigned], atom2motif[assigned], dim=0, dim_size=num_motifs, reduce="mean")
        has_motifs = num_motifs_per_graph > 0
        mol_x = torch.where(
            has_motifs.unsqueeze(-1),
            scatter(motif_x, motif2graph, dim=0, dim_size=num_graphs, reduce="mean"),
            scatter(atom_x, batch, dim=0, dim_size=num_graphs, reduce="mean"),
        )
        motif_offset, mol_offset = num_atoms, num_atoms + num_motifs
        direct = ~assigned  # ORMA: a molecule without motifs links its atoms to the molecule node
        edge_index = torch.cat(
            [
                graph.edge_index,
                torch.stack([atom_ids[assigned], motif_offset + atom2motif[assigned]]),
                torch.stack([motif_offset + torch.arange(num_motifs, device=batch.device), mol_offset + motif2graph]),
                torch.stack([atom_ids[direct], mol_offset + batch[direct]]),
            ],
            dim=1,
        )
        nodes = self.gcn(torch.cat([atom_x, motif_x, mol_x]), edge_index)

        max_atoms_here = int(atom_counts.max())
        max_motifs_here = int(num_motifs_per_graph.max()) if num_graphs else 0
        if max_atoms_here > self.config.max_atoms:
            self._warn_once(
                f"max_atoms={self.config.max_atoms}",
                "A molecule has %d atoms, more than `max_atoms=%d`: the token-atom grain keeps its first %d atoms (as "
                "ORMA). Logged once.",
                max_atoms_here,
                self.config.max_atoms,
                self.config.max_atoms,
            )
        if max_motifs_here > self.config.max_motifs:
            self._warn_once(
                f"max_motifs={self.config.max_motifs}",
                "A molecule has %d motifs, more than `max_motifs=%d`: the multi-token-motif grain keeps its first %d "
                "motifs (as ORMA). Logged once.",
                max_motifs_here,
                self.config.max_motifs,
                self.config.max_motifs,
            )
        # projected before padding: one row per real atom (ORMA pads first; padded rows never reach the grains)
        atom, atom_mask = to_dense_batch(
            self.atom_proj(nodes[:num_atoms]),
            batch,
            max_num_nodes=min(max_atoms_here, self.config.max_atoms),
            batch_size=num_graphs,
        )
        motif, motif_mask = to_dense_batch(
            nodes[motif_offset:mol_offset],
            motif2graph,
            max_num_nodes=max(1, min(max_motifs_here, self.config.max_motifs)),
            batch_size=num_graphs,
        )
        molecule = self.mol_proj(nodes[mol_offset:])
        if self.fingerprint_projection is not None:
            fp = checked_fingerprints(graph, self.config.fingerprint_dim)
            molecule = molecule + self.fingerprint_projection(fp.to(molecule.dtype))
        return OrmaMoleculeFeatures(
            molecule=molecule,
            motif=self.motif_proj(motif),
            motif_mask=motif_mask,
            atom=atom,
            atom_mask=atom_mask,
        )

    # ------------------------------------------------------------------------------------------------- grains
    def _phrases(self, text: OrmaTextFeatures, mol: OrmaMoleculeFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """Assigns every multi-token to one motif with the OT plan; a phrase is the mean of its motif's tokens."""
        config = self.config
        with torch.no_grad():
            x = F.normalize(text.multi_token, dim=-1)
            y = F.normalize(mol.motif, dim=-1)
            cost = 1.0 - torch.bmm(x, y.transpose(1, 2))
            a, b = uniform_marginals(text.mask, mol.motif_mask)
            plan = transport_plan(
                cost, a, b, method=config.ot_method, reg=config.ot_beta, num_iters=config.ot_iterations
            )
            if config.motif_assignment == "argmin":
                choice = plan.masked_fill(~mol.motif_mask.unsqueeze(1), float("inf")).argmin(dim=-1)
            else:
                choice = plan.argmax(dim=-1)
        one_hot = F.one_hot(choice, num_classes=mol.motif.shape[1]).to(text.multi_token.dtype)
        one_hot = one_hot * text.mask.unsqueeze(-1).to(one_hot.dtype)  # [B, L, K]
        counts = one_hot.sum(dim=1)  # [B, K]
        phrases = torch.bmm(one_hot.transpose(1, 2), text.multi_token) / (counts.unsqueeze(-1) + config.epsilon)
        return phrases, mol.motif_mask & (counts > 0)

    def grain_embeddings(
        self, text: OrmaTextFeatures, mol: OrmaMoleculeFeatures
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Text-side and molecule-side vectors of every grain; pair ``b`` pairs text ``b`` with molecule ``b``.

        Returns:
            dict[str, tuple[torch.Tensor, torch.Tensor]]: ``global``, ``mid``, ``local`` -> (text ``[B, D]``, molecule
            ``[B, D]``); a grain's logits are ``text @ molecule.T`` times its :meth:`grain_scales` entry. With
            ``global_similarity="cosine"`` the global pair is L2-normalised.
        """
        if text.sentence.shape[0] != mol.molecule.shape[0]:
            raise ValueError(
                f"{text.sentence.shape[0]} texts and {mol.molecule.shape[0]} molecules: the fine grains pair them by "
                "batch position, so both sides need the same batch size."
            )
        device_type = text.token.device.type
        with torch.autocast(device_type=device_type, enabled=False):  # min-max ranges and OT in float32
            text32 = OrmaTextFeatures(text.sentence, text.multi_token.float(), text.token.float(), text.mask)
            mol32 = OrmaMoleculeFeatures(
                mol.molecule, mol.motif.float(), mol.motif_mask, mol.atom.float(), mol.atom_mask
            )
            eps = self.config.epsilon
            group = self.config.grain_group_size
            local = sparc_grouping(text32.token, mol32.atom, text32.mask, mol32.atom_mask, eps, group)
            phrases, phrase_mask = self._phrases(text32, mol32)
            mid = sparc_grouping(phrases, mol32.motif, phrase_mask, mol32.motif_mask, eps, group)
        sentence, molecule = text.sentence, mol.molecule
        if self.logit_scale is not None:
            sentence, molecule = F.normalize(sentence, dim=-1), F.normalize(molecule, dim=-1)
        return {"global": (sentence, molecule), "mid": mid, "local": local}

    def grain_scales(self) -> dict[str, torch.Tensor | float]:
        """Logit multiplier of every grain: for ``global``, ``exp(temp)**2`` (both sides scaled; ``global_similarity``
        ``dot``) or ``exp(logit_scale)`` clamped at 100 (``cosine``); 1 for the others."""
        if self.logit_scale is not None:
            return {"global": clamped_logit_scale(self.logit_scale), "mid": 1.0, "local": 1.0}
        return {"global": torch.exp(2.0 * self.temp), "mid": 1.0, "local": 1.0}

    def grain_weights(self) -> dict[str, float]:
        """``global_weight``, ``mid_weight``, ``local_weight`` by grain name."""
        c = self.config
        return {"global": float(c.global_weight), "mid": float(c.mid_weight), "local": float(c.local_weight)}

    # ------------------------------------------------------------------------------------------------- contract
    def encode_text(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Global text embeddings ``[B, emb_dim]`` (``LayerNorm(Linear(pooled))``, unscaled), from token ids or cached
        :meth:`text_features`."""
        if text_features is None and self.config.sentence_layers == 1:
            context = torch.no_grad() if self.text_encoder_frozen else contextlib.nullcontext()
            with context:
                out = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
                pooled_from = out.last_hidden_state, getattr(out, "pooler_output", None)
            return self._sentence([pooled_from[0]], attention_mask, pooled_from[1])
        if text_features is None:
            text_features = self.text_features(input_ids, attention_mask)
        token, multi, last = text_features.to(self.sent_proj.weight.dtype).chunk(3, dim=-1)
        return self._sentence([last, multi, token], attention_mask, None)

    def encode_molecule(self, graph) -> torch.Tensor:
        """Global molecule embeddings ``[B, emb_dim]`` (the molecule node after the GCN and its Linear, unscaled)."""
        return self.molecule_features(graph).molecule

    def _block_scores(self, text: OrmaTextFeatures, mol: OrmaMoleculeFeatures) -> torch.Tensor:
        if self.config.score_mode == "global":
            return self.score(text.sentence, mol.molecule)
        grains = self.grain_embeddings(text, mol)
        scales, weights = self.grain_scales(), self.grain_weights()
        return sum(weights[g] * scales[g] * (grains[g][0] @ grains[g][1].T) for g in GRAINS)

    @torch.no_grad()
    def score_pairs(self, batch: Mapping[str, Any], mol_batch: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Scores the texts of ``batch`` against the molecules of ``mol_batch`` (default: ``batch``) by ``score_mode``.

        ``global``: cosine of the global embeddings. ``faithful``: ORMA's ``combine_grain`` of the global, mid and
        local logits, with the mid/local molecule side of column ``j`` grouped by the text at position ``j`` of
        ``batch`` (ORMA's batch-position pairing); both blocks must then have the same size. Call ``model.eval()``
        first, as ORMA's evaluation does.

        Args:
            batch (Mapping): collator output with ``input_ids``, ``attention_mask`` (and ``graph``).
            mol_batch (Mapping | None): collator output whose ``graph`` gives the molecules.

        Returns:
            torch.Tensor: ``[B_text, B_mol]`` scores.
        """
        graph = (mol_batch if mol_batch is not None else batch)["graph"]
        text = self.text_grains(**text_inputs(batch, self.device))
        return self._block_scores(text, self.molecule_features(graph))

    @torch.no_grad()
    def score_blocks(self, batches: Iterable[Mapping[str, Any]]) -> torch.Tensor:
        """The full score matrix of a split, block by block, as ORMA's ``record_metrics``.

        Every batch is encoded once; block ``(i, j)`` scores the texts of batch ``i`` against the molecules of batch
        ``j`` with :meth:`score_pairs` semantics. In ``faithful`` mode, batches whose size differs from the first
        batch's are skipped (ORMA drops the last partial batch); the number of skipped rows is logged. Holds every
        batch's token-level features in memory: meant for a split-sized pool (a few thousand pairs).

        Args:
            batches (Iterable[Mapping]): collator outputs, in a fixed order (row ``k`` of the result is the ``k``-th
                kept text).

        Returns:
            torch.Tensor: ``[N, N]`` scores, rows texts and columns molecules, in batch order.
        """
        texts, mols, skipped, size = [], [], 0, None
        for batch in batches:
            n = int(batch["graph"].num_graphs)
            size = n if size is None else size
            if n != size and self.config.score_mode == "faithful":
                skipped += n
                continue
            texts.append(self.text_grains(**text_inputs(batch, self.device)))
            mols.append(self.molecule_features(batch["graph"]))
        if skipped:
            logger.warning(
                "score_blocks skipped %d rows in batches smaller than the first (%d), as ORMA's evaluation does.",
                skipped,
                size,
            )
        if not texts:
            raise ValueError("`batches` is empty: nothing to score.")
        rows = [torch.cat([self._block_scores(text, mol) for mol in mols], dim=1) for text in texts]
        return torch.cat(rows, dim=0)

    def encode_pair(self, text_inputs: dict[str, Any], graph) -> tuple[OrmaTextFeatures, OrmaMoleculeFeatures]:
        """Both towers at every grain (sentence, multi-token, token; molecule, motif, atom) for :meth:`pair_loss`."""
        return self.text_grains(**text_inputs), self.molecule_features(graph)

    def pair_loss(self, text: OrmaTextFeatures, mol: OrmaMoleculeFeatures, intensity: float | None) -> RetrievalOutput:
        """ORMA's three-grain loss, one value per pair (the loss hook of
        :meth:`~class_hf.models.base.RetrievalPreTrainedModel.forward`).

        Args:
            text (OrmaTextFeatures): the batch's text features.
            mol (OrmaMoleculeFeatures): the batch's molecule features; molecule ``i`` is the partner of text ``i``.
            intensity (float | None): curriculum stage multiplier of every grain's logits.

        Returns:
            RetrievalOutput: ``loss`` (mean of ``per_sample_loss``), ``per_sample_loss`` ``[B]`` (``0.3 * global +
            0.2 * mid + 0.5 * local`` per pair), the global ``text_embeds`` / ``mol_embeds`` and ``loss_components``
            (``loss_global``, ``loss_mid``, ``loss_local``: unweighted batch means).
        """
        grains = self.grain_embeddings(text, mol)
        scales, weights = self.grain_scales(), self.grain_weights()
        per_sample, components = 0.0, {}
        for name in GRAINS:
            scale = scales[name] * (1.0 if intensity is None else intensity)
            losses = contrastive_loss(*grains[name], scale, gather_across_ranks=self.config.gather_across_ranks)
            per_sample = per_sample + weights[name] * losses["per_sample_loss"]
            components[f"loss_{name}"] = losses["per_sample_loss"].mean().detach()
        return RetrievalOutput(
            loss=per_sample.mean(),
            per_sample_loss=per_sample,
            text_embeds=text.sentence,
            mol_embeds=mol.molecule,
            loss_components=components,
        )


AutoConfig.register("class_orma", OrmaConfig, exist_ok=True)
AutoModel.register(OrmaConfig, OrmaModel, exist_ok=True)

__all__ = [
    "OrmaConfig",
    "OrmaGCN",
    "OrmaModel",
    "OrmaMoleculeFeatures",
    "OrmaPreTrainedModel",
    "OrmaTextFeatures",
    "sparc_grouping",
]
