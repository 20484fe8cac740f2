"""Configuration of the AMAN-like backbone (:class:`~class_hf.models.modeling_aman.AmanModel`)."""

import logging
from typing import Literal, get_args

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig

from ._compat import SubConfigSpec, text_config_spec
from .auto_registration import register_config
from .text_config import text_config_from

logger = logging.getLogger(__name__)

TextPooling = Literal["pooler", "mean", "cls"]
AdversarialMode = Literal["gradient_reversal", "wgan_gp"]
TEXT_POOLING_MODES: tuple[str, ...] = get_args(TextPooling)
ADVERSARIAL_MODES: tuple[str, ...] = get_args(AdversarialMode)


@strict
class AmanConfig(PreTrainedConfig):
    r"""Configuration of :class:`~class_hf.models.modeling_aman.AmanModel`, an AMAN-like retrieval backbone.

    AMAN (Zhao et al., IEEE TAI 2023) has no public code; every default below marked *chosen* is ours, *CMTMR*
    follows DeepLearnXMU/CMTMR (the closest open adversarial + triplet pipeline), *Text2Mol* follows Text2Mol's code.
    See the :class:`~class_hf.models.modeling_aman.AmanModel` docstring for what is known about AMAN.

    > Parameters of the text encoder

    Args:
        text_config (dict | PreTrainedConfig | None): config of the Hugging Face text encoder (a dict needs
            ``model_type``). When None, it is read from ``text_encoder_name_or_path`` when the model is built.
            (default: :obj:`None`)
        text_encoder_name_or_path (str | None): Hub id or local path of pretrained text-encoder weights, loaded when
            the model is constructed (not when a whole AMAN checkpoint is loaded). None builds the text encoder from
            ``text_config`` with random weights. (default: :obj:`"allenai/scibert_scivocab_uncased"`, the paper's
            SciBERT)
        text_pooling (str): sentence vector from the token states: ``pooler`` (BERT's pooler output, as Text2Mol
            and CMTMR), ``mean`` (masked mean) or ``cls``. With ``mean``/``cls`` the encoder's pooler is dropped (it
            would get no gradient). (default: :obj:`"pooler"`)

    > Parameters of the molecule encoder (graph transformer)

    Args:
        graph_hidden_size (int): width of the atom states. (default: :obj:`300`, Text2Mol's mol2vec width)
        graph_num_layers (int): number of graph-transformer blocks. (default: :obj:`3`, chosen as Text2Mol's GCN)
        graph_num_heads (int): attention heads per block; must divide ``graph_hidden_size``. (default: :obj:`4`)
        graph_ffn_size (int): hidden width of each block's feed-forward network. (default: :obj:`600`)
        graph_dropout (float): dropout on attention weights and block outputs. (default: :obj:`0.1`)

    > Parameters of the shared space and the losses

    Args:
        projection_dim (int): size of the shared embedding space. (default: :obj:`300`, Text2Mol/CMTMR)
        triplet_margin (float): margin of the batch-hard triplet loss on L2-normalised embeddings; the curriculum's
            ``intensity`` multiplies it. (default: :obj:`0.3`, CMTMR)
        adversarial_mode (str): ``gradient_reversal`` (a BCE modality discriminator behind a gradient-reversal
            layer; trains in one optimizer step) or ``wgan_gp`` (CMTMR's WGAN-GP critic, text "real", molecule
            "fake"). (default: :obj:`"gradient_reversal"`, chosen)
        adversarial_weight (float): weight of the encoders' adversarial term: the factor ``lambda`` of the
            gradient-reversal layer (the encoders receive ``-lambda`` times the discriminator-loss gradient), or the
            weight of the WGAN generator term. The discriminator's own loss always enters with weight 1 (its step
            size is its learning rate), so 0 removes the alignment pressure on the encoders while the discriminator
            still trains. (default: :obj:`0.1`, chosen)
        gradient_penalty_weight (float): weight of the WGAN-GP gradient penalty (``wgan_gp`` only).
            (default: :obj:`10.0`, CMTMR)
        discriminator_hidden_sizes (tuple[int, ...]): hidden widths of the discriminator MLP (LeakyReLU 0.2).
            (default: :obj:`(512, 256)`, CMTMR)
        gather_across_ranks (bool): mine triplet negatives among every rank's samples. (default: :obj:`False`)
        freeze_text_encoder (bool): keep the text encoder fixed (no gradients, eval mode); its features can then be
            cached (:func:`~class_hf.data.text_features.add_text_features`). (default: :obj:`False`)
        text_pooling_layers (int | None): pool each of the text encoder's top ``k`` hidden states and concatenate
            them; None pools the last layer only. (default: :obj:`None`)
        text_input_norm (bool): standardise the pooled text features with running statistics before the projection.
            (default: :obj:`False`)
        retrieval_loss (str): ``triplet`` (AMAN's batch-hard triplet), ``triplet+infonce`` (plus CMTMR's optional
            symmetric InfoNCE with a learnable temperature) or ``infonce``. (default: :obj:`"triplet"`)
        logit_scale_init (float): initial ``1 / temperature`` of the InfoNCE term. (default: :obj:`1 / 0.07`)
        use_fingerprint (bool): add a linear map of the molecule's Morgan count fingerprint (``graph.fp``) to its
            embedding before the head's BatchNorm (a class-hf extension, not AMAN's). (default: :obj:`False`)
        fingerprint_dim (int): length of ``graph.fp``. (default: :obj:`2048`)

    > Learning rates of the parameter groups of :meth:`AmanModel.param_groups` (``<group>_learning_rate``), for
    the trainer or recipe that builds the optimiser; the model itself does not read them.

    Args:
        text_encoder_learning_rate (float | None): learning rate of the ``text_encoder`` group; None = the base rate.
            (default: :obj:`3e-5`, Text2Mol/CMTMR)
        discriminator_learning_rate (float | None): learning rate of the ``discriminator`` group; None = the base
            rate. (default: :obj:`1e-4`, CMTMR's discriminator Adam)
    """

    model_type = "class_aman"
    if SubConfigSpec is not None:  # the nested text config, declared for the installed transformers (_compat.py)
        sub_configs_defaults = {"text_config": text_config_spec(optional=True)}
    else:
        sub_configs = {"text_config": AutoConfig}

    text_config: dict | PreTrainedConfig | None = None
    text_encoder_name_or_path: str | None = "allenai/scibert_scivocab_uncased"
    text_pooling: TextPooling = "pooler"
    graph_hidden_size: int = 300
    graph_num_layers: int = 3
    graph_num_heads: int = 4
    graph_ffn_size: int = 600
    graph_dropout: float | int = 0.1
    projection_dim: int = 300
    triplet_margin: float | int = 0.3
    adversarial_mode: AdversarialMode = "gradient_reversal"
    adversarial_weight: float | int = 0.1
    gradient_penalty_weight: float | int = 10.0
    discriminator_hidden_sizes: list[int] | tuple[int, ...] = (512, 256)
    gather_across_ranks: bool = False
    freeze_text_encoder: bool = False
    text_pooling_layers: int | None = None
    text_input_norm: bool = False
    retrieval_loss: Literal["triplet", "triplet+infonce", "infonce"] = "triplet"
    logit_scale_init: float | int = 1 / 0.07
    use_fingerprint: bool = False
    fingerprint_dim: int = 2048
    text_encoder_learning_rate: float | int | None = 3e-5
    discriminator_learning_rate: float | int | None = 1e-4

    def __post_init__(self, **kwargs) -> None:
        self.discriminator_hidden_sizes = list(self.discriminator_hidden_sizes)
        if isinstance(self.text_config, dict):
            self.text_config = text_config_from(self.text_config, None)
        super().__post_init__(**kwargs)

    def validate_aman(self) -> None:
        """Checks what the field annotations cannot say (``@strict`` checks the types and choices itself): ranges
        and combinations of fields. Run by ``@strict`` after ``__init__`` and by ``config.validate()``."""
        for name in ("graph_hidden_size", "graph_num_layers", "graph_num_heads", "graph_ffn_size", "projection_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)!r}.")
        if self.graph_hidden_size % self.graph_num_heads:
            raise ValueError(
                f"`graph_hidden_size` ({self.graph_hidden_size}) must be divisible by `graph_num_heads` "
                f"({self.graph_num_heads}); change one of them."
            )
        if not 0.0 <= self.graph_dropout < 1.0:
            raise ValueError(f"`graph_dropout` must be in [0, 1), got {self.graph_dropout}.")
        if self.fingerprint_dim < 1 or not 0.0 < self.logit_scale_init <= 100.0:
            raise ValueError(
                f"`fingerprint_dim` must be >= 1 and `logit_scale_init` in (0, 100], got {self.fingerprint_dim} and "
                f"{self.logit_scale_init}."
            )
        if self.triplet_margin <= 0:
            raise ValueError(f"`triplet_margin` must be positive, got {self.triplet_margin}.")
        for name in ("adversarial_weight", "gradient_penalty_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        sizes = self.discriminator_hidden_sizes
        if not sizes or min(sizes) < 1:
            raise ValueError(
                f"`discriminator_hidden_sizes` must be a non-empty list of positive integers, got "
                f"{self.discriminator_hidden_sizes!r}."
            )
        for name in ("text_encoder_learning_rate", "discriminator_learning_rate"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"`{name}` must be positive or None (the base learning rate), got {value}.")


# Importing this module may fire class_hf's registration hook before the class exists: register it now.
register_config(AmanConfig)

__all__ = ["AmanConfig"]
