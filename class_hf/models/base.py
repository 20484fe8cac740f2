"""The backbone contract and what every class-hf retrieval backbone shares.

:class:`RetrievalBackbone` is the contract (a runtime-checkable ``typing.Protocol``): the trainer, the curriculum's
difficulty scoring, the evaluation and the search index talk to a backbone only through it, so any module that
follows it trains under CLASS unchanged::

    class MyBackbone(torch.nn.Module):
        def forward(self, input_ids, attention_mask, graph, **kwargs) -> RetrievalOutput: ...  # loss, per_sample_loss
        def encode_text(self, input_ids, attention_mask) -> torch.Tensor: ...  # [B, D]
        def encode_molecule(self, graph) -> torch.Tensor: ...  # [B, D]
        def score(self, text_embeds, mol_embeds) -> torch.Tensor: ...  # [texts, molecules]

    assert isinstance(MyBackbone(), RetrievalBackbone)

(``examples/own_backbone.py`` is a complete one.) :class:`RetrievalPreTrainedModel` is the ``PreTrainedModel`` base
of :class:`~class_hf.models.DualEncoderModel`, :class:`~class_hf.models.OrmaModel` and
:class:`~class_hf.models.AmanModel`:

- **building vs loading.** ``config.text_encoder_name_or_path`` names pretrained text-encoder weights that are loaded
  when the model is *built* (``Model(config)``, ``AutoModel.from_config``), but not when a saved class-hf checkpoint is
  *loaded* (``from_pretrained``), whose state dict holds the (fine-tuned) encoder; the named weights may not even be
  reachable then. :meth:`RetrievalPreTrainedModel.from_pretrained` sets a context variable for the duration of the
  load and :func:`loading_checkpoint` reads it. Unlike a check for the meta device, this also holds under DeepSpeed
  ZeRO-3, where ``from_pretrained`` builds the model under ``deepspeed.zero.Init`` instead of on the meta device.
- the shared :meth:`~RetrievalPreTrainedModel.forward`: the checks (unknown keyword arguments, one molecule per
  text, ``intensity``), both towers, then the backbone's loss hook :meth:`~RetrievalPreTrainedModel.pair_loss`, so a
  backbone writes only its encoders and its loss;
- the cosine :meth:`score`, :meth:`param_groups` and the initialisation of the module types the backbones have in
  common.

:func:`optimizer_param_groups` turns :meth:`~RetrievalPreTrainedModel.param_groups` into ``torch.optim`` parameter
groups with one learning rate per group and open_clip's weight-decay rule; ``CurriculumTrainer.create_optimizer`` uses
it, and a hand-written training loop can too.
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import Collection, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn
from torch_geometric.nn.dense.linear import Linear as PygLinear
from transformers import PreTrainedModel
from transformers import initialization as init

from ..evaluation.retrieval import cosine_scores
from .modules import build_text_encoder
from .outputs import RetrievalOutput
from .text_config import text_config_from

logger = logging.getLogger(__name__)

# Batch keys that ``forward`` accepts and ignores, so that ``model(**collator_output)`` works: the collator's
# per-sample bookkeeping and the Trainer's loss kwarg (the backbones never need it: `accepts_loss_kwargs = False`).
IGNORED_FORWARD_KWARGS = frozenset({"sample_idx", "difficulty", "num_items_in_batch"})

# True while `RetrievalPreTrainedModel.from_pretrained` builds a model from a saved checkpoint.
_LOADING_CHECKPOINT: contextvars.ContextVar[bool] = contextvars.ContextVar("class_hf_loading", default=False)


@runtime_checkable
class RetrievalBackbone(Protocol):
    """The backbone contract: what the trainer, difficulty scoring, evaluation and search call.

    ``isinstance(model, RetrievalBackbone)`` checks that the four methods exist (``typing.runtime_checkable`` does not
    check signatures or return types). Every tensor is batch-first; row ``i`` of the texts pairs with molecule ``i``.
    """

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        graph: Any,
        return_loss: bool = True,
        intensity: float | None = None,
        **kwargs: Any,
    ) -> RetrievalOutput:
        """Encodes a batch of pairs; returns ``loss``, ``per_sample_loss`` ``[B]``, ``text_embeds`` and ``mol_embeds``.

        ``graph`` is the collator's ``torch_geometric`` ``Batch``; ``intensity`` (when the backbone sets
        ``supports_intensity = True``) is the curriculum's stage multiplier; the collator's ``sample_idx`` and
        ``difficulty`` arrive in ``kwargs`` and are ignored.
        """
        ...

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` text embeddings."""
        ...

    def encode_molecule(self, graph: Any) -> torch.Tensor:
        """``[B, D]`` molecule embeddings of a graph ``Batch``."""
        ...

    def score(self, text_embeds: torch.Tensor, mol_embeds: torch.Tensor) -> torch.Tensor:
        """``[texts, molecules]`` retrieval scores (higher is a better match)."""
        ...


def loading_checkpoint() -> bool:
    """Whether a class-hf checkpoint is being loaded (inside :meth:`RetrievalPreTrainedModel.from_pretrained`).

    A backbone's ``__init__`` reads it to skip what the checkpoint provides: the pretrained text encoder named by
    ``text_encoder_name_or_path``, ORMA's mol2vec table file.
    """
    return _LOADING_CHECKPOINT.get()


class RetrievalPreTrainedModel(PreTrainedModel):
    """Base of the class-hf backbones: loading, the shared forward, cosine score, parameter groups, initialisation.

    Subclasses set ``config_class`` and ``base_model_prefix``, write ``encode_text``, ``encode_molecule`` and
    :meth:`pair_loss` (and :meth:`encode_pair` when the loss needs more than the two embeddings), and may set:

    - ``intensity_target``: what ``intensity`` multiplies, for the error message of a non-positive one;

    - ``param_group_prefixes``: group name -> parameter-name prefix for :meth:`param_groups` (``other`` collects the
      rest); each group ``g`` may have a learning rate ``config.<g>_learning_rate`` or ``<g>_learning_rate`` in the
      training arguments;
    - ``init_scheme``: ``"torch"`` (PyTorch's default ``nn.Linear`` init) or ``"xavier"`` (Xavier-uniform
      weights and zero biases for ``nn.Linear`` and PyG ``Linear``, Xavier-uniform embeddings); see
      :meth:`_init_weights`;
    - :meth:`_after_checkpoint_load`: re-applies what loading a checkpoint undoes (e.g. ``requires_grad=False``).
    """

    main_input_name = "input_ids"
    # The loss is a per-batch mean; never let the Trainer pass or rescale by `num_items_in_batch`.
    accepts_loss_kwargs = False
    param_group_prefixes: ClassVar[dict[str, str]] = {"text_encoder": "text_encoder."}
    init_scheme: ClassVar[str] = "torch"
    intensity_target: ClassVar[str] = "the logits"
    # Texts per chunk of a fine-tuned text encoder in training (gradient caching, see `enable_gradient_cache`).
    text_chunk_size: int | None = None

    # ------------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any):
        """Loads a saved class-hf checkpoint; the text encoder's weights come from it, not from
        ``config.text_encoder_name_or_path``. Arguments and return value as
        :meth:`transformers.PreTrainedModel.from_pretrained` (with ``output_loading_info=True``: ``(model, info)``).
        """
        token = _LOADING_CHECKPOINT.set(True)
        try:
            loaded = super().from_pretrained(*args, **kwargs)
        finally:
            _LOADING_CHECKPOINT.reset(token)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model._after_checkpoint_load()
        return loaded

    def _after_checkpoint_load(self) -> None:
        """Called on the model returned by :meth:`from_pretrained`; loading swaps in new ``Parameter`` objects, which
        forgets ``requires_grad=False``: subclasses with frozen parameters set it again here."""

    def _build_text_encoder(self, pooling: str) -> PreTrainedModel:
        """Builds the text encoder from ``config.text_config`` / ``config.text_encoder_name_or_path``.

        The pretrained weights are loaded unless a checkpoint is being loaded (:func:`loading_checkpoint`). The
        encoder follows the parent's train/eval mode, ``config.text_config`` becomes the encoder's own config object
        (so ``config.json`` matches it), and the encoder's pooler is dropped unless ``pooling == "pooler"`` (an unused
        pooler would get no gradient and trip DDP's unused-parameter check).

        Args:
            pooling (str): the backbone's sentence pooling mode.
        """
        config = self.config
        config.text_config = text_config_from(config.text_config, config.text_encoder_name_or_path)
        load_weights = config.text_encoder_name_or_path is not None and not loading_checkpoint()
        encoder = build_text_encoder(config.text_config, config.text_encoder_name_or_path, load_weights)
        encoder.train()  # `from_pretrained` returns it in eval mode
        config.text_config = encoder.config
        if pooling != "pooler" and getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None
        return encoder

    # ------------------------------------------------------------------------------------------------- init
    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialises the module types the backbones share; the text encoder uses its own ``_init_weights``.

        ``PreTrainedModel.initialize_weights`` dispatches every Hugging Face sub-model (the text encoder) to its own
        ``_init_weights`` and skips modules and parameters flagged ``_is_hf_initialized`` (loaded from a checkpoint,
        or already initialised, e.g. a pretrained text encoder loaded in ``__init__``); the
        ``transformers.initialization`` functions used here honour the same flag. It also never calls this for a
        module without parameters of its own (e.g. a :class:`~class_hf.models.modules.CategoricalEmbedding`, whose
        tables are its ``nn.Embedding`` children; it draws them Xavier-uniform itself when built).

        - ``init_scheme="torch"``: ``nn.Linear`` as PyTorch's default (Kaiming-uniform weights, uniform biases);
          embeddings keep the initialisation they got when built.
        - ``init_scheme="xavier"``: ``nn.Linear`` and PyG ``Linear``: Xavier-uniform weights, zero biases;
          ``nn.Embedding``: Xavier-uniform.
        - both: ``nn.LayerNorm`` (affine) and ``nn.BatchNorm1d``: weight 1, bias 0, fresh running statistics.
        """
        xavier = self.init_scheme == "xavier"
        if isinstance(module, nn.Linear) or (xavier and isinstance(module, PygLinear)):
            if xavier:
                init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    init.zeros_(module.bias)
            else:
                init.kaiming_uniform_(module.weight, a=math.sqrt(5))
                if module.bias is not None:
                    bound = 1.0 / math.sqrt(module.in_features)
                    init.uniform_(module.bias, -bound, bound)
        elif xavier and isinstance(module, nn.Embedding):
            init.xavier_uniform_(module.weight)
        elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            if module.affine:
                init.ones_(module.weight)
                init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)

    # ------------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        graph: Any = None,
        return_loss: bool = True,
        intensity: float | None = None,
        text_features: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> RetrievalOutput:
        """Encodes a batch of pairs and computes the backbone's loss, one value per pair.

        The checks come first (unknown keyword arguments, one molecule per text, a positive ``intensity``); then both
        towers (:meth:`encode_pair`) and the backbone's loss (:meth:`pair_loss`). With ``return_loss=False`` only the
        retrieval embeddings are computed (``encode_text`` / ``encode_molecule``).

        Args:
            input_ids (torch.Tensor | None): ``[B, L]`` token ids of the descriptions (or ``text_features``).
            attention_mask (torch.Tensor | None): ``[B, L]``, 1 for real tokens.
            graph (torch_geometric.data.Batch): the ``B`` molecules; molecule ``i`` is the partner of text ``i``.
            return_loss (bool): compute the loss (otherwise only the embeddings).
            intensity (float | None): the curriculum's stage multiplier (of :attr:`intensity_target`).
            text_features (torch.Tensor | None): the frozen text encoder's cached output (:meth:`text_features`)
                instead of ``input_ids``.
            **kwargs: ``sample_idx``, ``difficulty`` and ``num_items_in_batch`` are accepted and ignored; anything
                else is an error.

        Returns:
            RetrievalOutput: ``loss``, ``per_sample_loss`` ``[B]``, ``text_embeds``, ``mol_embeds`` and
            ``loss_components`` (see the backbone's :meth:`pair_loss`); only the embeddings without the loss.
        """
        self._check_forward_kwargs(kwargs)
        texts = text_features if text_features is not None else input_ids
        if texts is None:
            raise ValueError(f"{type(self).__name__}.forward needs `input_ids` (or cached `text_features`).")
        self._check_pair_inputs(texts, graph)
        self._check_intensity(intensity, self.intensity_target)
        text_inputs = (
            {"input_ids": input_ids, "attention_mask": attention_mask}
            if text_features is None
            else {"text_features": text_features, "attention_mask": attention_mask}
        )
        if not return_loss:
            return RetrievalOutput(text_embeds=self.encode_text(**text_inputs), mol_embeds=self.encode_molecule(graph))
        if text_features is None and self._caches_gradients(input_ids):
            features = self.chunked_text_features(input_ids, attention_mask)
            text_inputs = {"text_features": features, "attention_mask": attention_mask}
        text, mol = self.encode_pair(text_inputs, graph)
        return self.pair_loss(text, mol, intensity)

    def encode_pair(self, text_inputs: dict[str, Any], graph: Any) -> tuple[Any, Any]:
        """Both towers of a training batch, as :meth:`pair_loss` takes them: by default the retrieval embeddings.

        ``text_inputs`` holds ``input_ids`` and ``attention_mask``, or cached ``text_features`` (and their
        ``attention_mask`` for token states): the keyword arguments of ``encode_text``. A backbone whose loss needs
        more than the embeddings (ORMA's token and motif features) returns its own.
        """
        return self.encode_text(**text_inputs), self.encode_molecule(graph)

    def pair_loss(self, text: Any, mol: Any, intensity: float | None) -> RetrievalOutput:
        """The loss hook: the backbone's loss of a batch of pairs from :meth:`encode_pair`'s output.

        Args:
            text: the text side of :meth:`encode_pair` (``[B, D]`` embeddings by default).
            mol: the molecule side.
            intensity (float | None): the curriculum's stage multiplier, already checked to be positive.

        Returns:
            RetrievalOutput: ``loss``, ``per_sample_loss`` ``[B]``, the embeddings and ``loss_components``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `pair_loss(text, mol, intensity)`.")

    # --------------------------------------------------------------------------------------------- text encoder
    def enable_gradient_cache(self, chunk_size: int | None) -> None:
        """Runs a fine-tuned text encoder over at most ``chunk_size`` texts at a time in training (gradient caching).

        The loss still contrasts the whole batch: every text's features are computed chunk by chunk without keeping
        the encoder's activations (each chunk is checkpointed), the loss and its gradient are computed on the whole
        batch, and in the backward pass each chunk is encoded again, with the same dropout, and back-propagated on its
        own. Gradients equal those of the whole batch at once; the text encoder's activation memory is that of one
        chunk, for one more forward pass of it. This is the idea of sentence-transformers'
        ``CachedMultipleNegativesRankingLoss`` (Gao et al., 2021), applied inside the backbone so that it composes
        with the curriculum's small early pools, the per-sample weights and ``gather_across_ranks``. A frozen text
        encoder keeps no activations and is not chunked.

        Args:
            chunk_size (int | None): texts per chunk; None turns chunking off.

        Raises:
            ValueError: for a chunk size below 1, or an encoder whose features cannot be computed apart from the rest
                of the text tower (ORMA with ``pooling='pooler'``).
        """
        if chunk_size is not None:
            if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
                raise ValueError(f"`text_chunk_size` must be a positive integer or None, got {chunk_size!r}.")
            tokens = getattr(self, "text_feature_layout", "pooled") == "tokens"
            if tokens and getattr(self.config, "pooling", None) == "pooler":
                raise ValueError(
                    f"{type(self).__name__} with `pooling='pooler'` cannot encode texts in chunks "
                    "(`text_chunk_size`): use `pooling='mean'` or 'cls'."
                )
        self.text_chunk_size = chunk_size

    def _caches_gradients(self, input_ids: torch.Tensor) -> bool:
        chunk = self.text_chunk_size
        return (
            chunk is not None
            and self.training
            and torch.is_grad_enabled()
            and input_ids.shape[0] > chunk
            and not self.text_encoder_frozen
        )

    def chunked_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """:meth:`text_features` of a batch, ``text_chunk_size`` texts at a time, each chunk checkpointed (its
        activations are recomputed, with the same random state, when the backward pass reaches it)."""
        from torch.utils.checkpoint import checkpoint

        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        chunks = [
            checkpoint(self.text_features, ids, mask, use_reentrant=False, preserve_rng_state=True)
            for ids, mask in zip(
                input_ids.split(self.text_chunk_size), attention_mask.split(self.text_chunk_size), strict=True
            )
        ]
        return torch.cat(chunks)

    @property
    def text_encoder_frozen(self) -> bool:
        """Whether no text-encoder parameter trains (the encoder then runs in eval mode under ``torch.no_grad``)."""
        encoder = getattr(self, "text_encoder", None)
        return encoder is not None and not any(p.requires_grad for p in encoder.parameters())

    def _apply_freeze_text_encoder(self) -> None:
        """Freezes the text encoder when ``config.freeze_text_encoder`` (no gradients, eval mode)."""
        if getattr(self.config, "freeze_text_encoder", False):
            self.text_encoder.requires_grad_(False)
            self.text_encoder.eval()

    def train(self, mode: bool = True):
        """As :meth:`torch.nn.Module.train`, but a fully frozen text encoder stays in eval mode (no dropout)."""
        super().train(mode)
        if self.text_encoder_frozen:
            self.text_encoder.eval()
        return self

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The text encoder's part of the text tower: what :func:`~class_hf.data.text_features.add_text_features`
        caches when the encoder is frozen (``[B, D]``, or ``[B, L, D]`` token states for ``text_feature_layout ==
        "tokens"``)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its text features.")

    def text_feature_settings(self) -> dict[str, Any]:
        """What, besides the encoder's weights, decides :meth:`text_features` (layers, pooling); for the cache key."""
        return {}

    def text_feature_key(self) -> str:
        """Identifies :meth:`text_features`: the encoder's configuration and weights, and the backbone's settings.

        Two models with the same key compute the same features (whatever their class), so a dataset column cached by
        one serves the other.
        """
        from ..data.text_features import encoder_feature_key

        settings = {"layout": getattr(self, "text_feature_layout", "pooled"), **self.text_feature_settings()}
        return encoder_feature_key(self.text_encoder, self.config.text_config, settings)

    def estimate_tokens(self, input_dict: dict[str, Any]) -> int:
        """Tokens of a batch for the Trainer's FLOPs count: from ``input_ids``, or the mask of cached features."""
        if "input_ids" in input_dict:
            return input_dict["input_ids"].numel()
        if "attention_mask" in input_dict:
            return int(input_dict["attention_mask"].sum())
        features = input_dict.get("text_features")
        return int(features.shape[0]) if features is not None else 0

    def _check_forward_kwargs(self, kwargs: Mapping[str, Any]) -> None:
        """Rejects keyword arguments other than the ignored batch keys (``sample_idx``, ``difficulty``,
        ``num_items_in_batch``)."""
        unknown = set(kwargs) - IGNORED_FORWARD_KWARGS
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.forward got unexpected arguments {sorted(unknown)}; it takes input_ids, "
                "attention_mask, graph, return_loss and intensity."
            )

    @staticmethod
    def _check_intensity(intensity: float | None, target: str) -> None:
        """Raises unless ``intensity`` is None or positive; ``target`` names what it multiplies."""
        if intensity is not None and not intensity > 0:
            raise ValueError(f"`intensity` multiplies {target} and must be positive, got {intensity}.")

    @staticmethod
    def _check_pair_inputs(texts: torch.Tensor, graph: Any) -> None:
        """Raises unless ``graph`` holds exactly one molecule per text of ``texts`` (token ids or text features)."""
        num_texts, num_molecules = int(texts.shape[0]), int(getattr(graph, "num_graphs", 1))
        if num_texts != num_molecules:
            raise ValueError(
                f"The batch holds {num_texts} texts but `graph` {num_molecules} molecules; every text needs exactly "
                "one molecule (the same batch size on both sides)."
            )

    def score(self, text_embeds: torch.Tensor, mol_embeds: torch.Tensor) -> torch.Tensor:
        """Retrieval score: cosine similarity of every text with every molecule.

        Args:
            text_embeds (torch.Tensor): ``[Nt, D]`` from ``encode_text``.
            mol_embeds (torch.Tensor): ``[Nm, D]`` from ``encode_molecule``.

        Returns:
            torch.Tensor: ``[Nt, Nm]`` cosine similarities.
        """
        return cosine_scores(text_embeds, mol_embeds)

    # ------------------------------------------------------------------------------------------------- training
    def param_groups(self) -> dict[str, list[str]]:
        """Names of the trainable parameters, split so that an optimiser can give each group its own learning rate.

        Returns:
            dict[str, list[str]]: one entry per ``param_group_prefixes`` group (the trainable parameters whose name
            starts with its prefix), then ``other`` (every other trainable parameter). Frozen parameters are in none.
        """
        groups: dict[str, list[str]] = {name: [] for name in self.param_group_prefixes}
        groups["other"] = []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            group = next((g for g, prefix in self.param_group_prefixes.items() if name.startswith(prefix)), "other")
            groups[group].append(name)
        return groups


def optimizer_param_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float = 0.0,
    group_learning_rates: Mapping[str, float | None] | None = None,
    decay_names: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """``torch.optim`` parameter groups: one learning rate per named group, weight decay as open_clip applies it.

    The groups come from ``model.param_groups()`` (name -> parameter names); a model without it has ``text_encoder``
    (parameters named ``text_encoder.*``) and ``other``. Trainable parameters that ``param_groups()`` leaves out join
    ``other``. Group ``g`` trains at ``group_learning_rates[g]`` (``learning_rate`` when missing or None).

    Weight decay (as open_clip's ``exclude``): only parameters with two or more dimensions (weight matrices,
    embedding tables) decay; biases, norm weights and scalars such as ``logit_scale`` / ``temp`` never do. With
    ``decay_names`` a parameter must also be listed there (e.g. ``Trainer.get_decay_parameter_names``).

    Args:
        model (nn.Module): the (unwrapped) backbone.
        learning_rate (float): the base learning rate (group ``other``).
        weight_decay (float): decoupled weight decay of the decaying parameters.
        group_learning_rates (Mapping[str, float | None] | None): learning rate per group name.
        decay_names (Collection[str] | None): names allowed to decay (None: all with ``ndim >= 2``).

    Returns:
        list[dict]: ``{"params", "lr", "weight_decay"}`` per (group, decays) combination that has parameters, in the
        order of ``param_groups()`` with the decaying half first.

    Raises:
        ValueError: when ``param_groups()`` lists a parameter twice or names one the model does not have.
    """
    params = dict(model.named_parameters())
    if callable(getattr(model, "param_groups", None)):
        named = {group: list(names) for group, names in model.param_groups().items()}
    else:
        named = {"text_encoder": [n for n in params if n.startswith("text_encoder.")]}
    named.setdefault("other", [])
    owner: dict[str, str] = {}
    for group, names in named.items():
        for name in names:
            if name not in params:
                raise ValueError(
                    f"{type(model).__name__}.param_groups() lists {name!r} in {group!r}, but the model has no such "
                    "parameter; return the names of `named_parameters()`."
                )
            if name in owner:
                raise ValueError(
                    f"{type(model).__name__}.param_groups() lists {name!r} in both {owner[name]!r} and {group!r}; "
                    "every parameter belongs to one group."
                )
            owner[name] = group
    named["other"] = named["other"] + [n for n, p in params.items() if p.requires_grad and n not in owner]
    rates = dict(group_learning_rates or {})
    allowed = None if decay_names is None else set(decay_names)
    groups = []
    for group, names in named.items():
        lr = rates.get(group)
        lr = learning_rate if lr is None else lr
        trainable = [n for n in names if params[n].requires_grad]
        decaying = [params[n].ndim >= 2 and (allowed is None or n in allowed) for n in trainable]
        for wanted, value in ((True, weight_decay), (False, 0.0)):
            chosen = [params[n] for n, d in zip(trainable, decaying, strict=True) if d is wanted]
            if chosen:
                groups.append({"params": chosen, "lr": lr, "weight_decay": value})
    return groups


__all__ = [
    "IGNORED_FORWARD_KWARGS",
    "RetrievalBackbone",
    "RetrievalPreTrainedModel",
    "loading_checkpoint",
    "optimizer_param_groups",
]
