"""Configuration of the ORMA backbone (:class:`~class_hf.models.modeling_orma.OrmaModel`)."""

import logging
from typing import Literal, get_args

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig

from ._compat import SubConfigSpec, text_config_spec
from .auto_registration import register_config
from .sinkhorn import OtMethod
from .text_config import text_config_from

logger = logging.getLogger(__name__)

AtomFeatureMode = Literal["rdkit", "mol2vec"]
ScoreMode = Literal["global", "faithful"]
MotifAssignment = Literal["argmin", "argmax"]
ATOM_FEATURE_MODES: tuple[str, ...] = get_args(AtomFeatureMode)
SCORE_MODES: tuple[str, ...] = get_args(ScoreMode)
MOTIF_ASSIGNMENTS: tuple[str, ...] = get_args(MotifAssignment)


@strict
class OrmaConfig(PreTrainedConfig):
    r"""Configuration of ORMA (Min, Liu et al., BIBM 2024; code DeepLearnXMU/Orma), defaults as its ``config.json``.

    Args:
        text_config (PreTrainedConfig | dict | None): config of the Hugging Face text encoder (any ``AutoModel``
            encoder). When None, it is read from ``text_encoder_name_or_path`` when the model is built and stored here,
            so saved checkpoints carry it.
        text_encoder_name_or_path (str | None): Hub id or local path whose weights the text encoder is initialised
            from when the model is built (not when it is loaded with ``from_pretrained``, whose checkpoint already
            holds them). ORMA uses SciBERT.
        pooling (str): sentence vector of the text encoder: ``pooler`` (ORMA: BERT's ``pooler_output``), ``cls``
            or ``mean``.
        sentence_layers (int): how many of the three text layers (last, multi-token, token; in that order) are pooled
            and concatenated for the sentence vector (ORMA: 1, the last layer). More layers need ``pooling`` ``mean``
            or ``cls``.
        text_input_norm (bool): standardise the pooled sentence features with running statistics before the
            projection (a class-hf extension, as the dual encoder's).
        multi_token_layer (int): index into the encoder's ``hidden_states`` of the multi-token representation
            (ORMA: -2, the output of the second-to-last layer).
        token_layer (int): index of the token representation (ORMA: -3). An index beyond the encoder's depth falls
            back to ``hidden_states[0]`` (the embedding output), with a warning.
        emb_dim (int): size of every representation (ORMA: 300).
        num_gnn_layers (int): GCN layers (ORMA: 3).
        dropout (float): dropout after every GCN layer and MLP layer (ORMA: 0.1).
        atom_features (str): ``rdkit`` (learned embeddings of the categorical RDKit atom features) or ``mol2vec``
            (Text2Mol's frozen 300-d mol2vec substructure vectors, as ORMA; needs the ``mol2vec_index`` graph column).
        mol2vec_embeddings_path (str | None): ``.npz`` with ``tokens`` and ``vectors`` (Text2Mol's
            ``token_embedding_dict.npy`` without pickle); read when the model is built with
            ``atom_features="mol2vec"``.
        mol2vec_vocab_size (int): rows of the mol2vec table (3,138 for Text2Mol's, ``UNK`` included).
        mol2vec_dim (int): width of the mol2vec vectors (300).
        max_atoms (int): atoms per molecule kept for the token-atom grain (ORMA ``num_atom``: 580); further atoms
            still take part in the GCN.
        max_motifs (int): motifs per molecule kept for the multi-token-motif grain (ORMA ``num_motif``: 140).
        temperature_init (float): initial value of the learnable ``temp``; both sides of the global grain are
            multiplied by ``exp(temp)`` (ORMA: 0.07). Used with ``global_similarity="dot"``.
        global_similarity (str): logits of the global grain: ``dot`` (ORMA: ``exp(temp)**2 * sentence @ molecule.T``
            on the unnormalised embeddings) or ``cosine`` (a class-hf extension, as CLIP: both sides L2-normalised and
            multiplied by a learnable ``logit_scale``, the same cosine that retrieval and difficulty scoring rank by).
        logit_scale_init (float): initial multiplier of the cosine logits with ``global_similarity="cosine"``
            (``1 / temperature``; CLIP: 1 / 0.07); learnable, clamped at 100.
        global_weight (float): weight of the sentence-molecule loss (0.3).
        mid_weight (float): weight of the multi-token-motif loss (0.2).
        local_weight (float): weight of the token-atom loss (0.5).
        ot_method (str): ``ipot`` (the proximal-point loop ORMA runs) or ``sinkhorn`` (entropic OT).
        ot_beta (float): OT step size / regularisation (ORMA: 0.5).
        ot_iterations (int): OT iterations (ORMA: 50).
        motif_assignment (str): how a token picks its motif from the plan: ``argmin`` (ORMA's code) or ``argmax``.
        epsilon (float): ORMA's numerical epsilon (1e-8).
        grain_group_size (int | None): the fine grains compute their pairs in groups of this many, sorted by the
            molecule's number of atoms (motifs), each group padded to its own largest molecule instead of the
            batch's (:func:`~class_hf.models.modeling_orma.sparc_grouping`); the same result up to float rounding,
            with less work where molecule sizes vary (a class-hf optimisation). ``None``: the whole batch at once.
        score_mode (str): ``global`` (cosine of the global embeddings, the default) or ``faithful`` (ORMA's weighted
            sum of the three grains' logits); see :class:`~class_hf.models.modeling_orma.OrmaModel`.
        gather_across_ranks (bool): use the samples of every rank as negatives in the contrastive losses.
        text_encoder_learning_rate (float | None): learning rate of the ``text_encoder`` parameter group in the
            CurriculumTrainer (unless the training arguments set ``text_encoder_learning_rate``); None = the base
            rate (ORMA: 3e-5, with 1e-4 for the rest). The model itself does not read it.
        use_fingerprint (bool): add a linear map of the molecule's Morgan count fingerprint (``graph.fp``) to its
            global embedding (a class-hf extension, not ORMA's; the fine grains are unchanged).
        fingerprint_dim (int): length of ``graph.fp``.
        freeze_text_encoder (bool): keep the text encoder fixed (no gradients, eval mode); its token states can then
            be cached (:func:`~class_hf.data.text_features.add_text_features`, with ``pooling`` ``mean`` or ``cls``).
    """

    model_type = "class_orma"
    if SubConfigSpec is not None:  # the nested text config, declared for the installed transformers (_compat.py)
        sub_configs_defaults = {"text_config": text_config_spec(optional=True)}
    else:
        sub_configs = {"text_config": AutoConfig}

    text_config: PreTrainedConfig | dict | None = None
    text_encoder_name_or_path: str | None = "allenai/scibert_scivocab_uncased"
    pooling: Literal["pooler", "cls", "mean"] = "pooler"
    sentence_layers: int = 1
    text_input_norm: bool = False
    multi_token_layer: int = -2
    token_layer: int = -3
    emb_dim: int = 300
    num_gnn_layers: int = 3
    dropout: float | int = 0.1
    atom_features: AtomFeatureMode = "rdkit"
    mol2vec_embeddings_path: str | None = None
    mol2vec_vocab_size: int = 3138
    mol2vec_dim: int = 300
    max_atoms: int = 580
    max_motifs: int = 140
    temperature_init: float | int = 0.07
    global_similarity: Literal["dot", "cosine"] = "dot"
    logit_scale_init: float | int = 1 / 0.07
    global_weight: float | int = 0.3
    mid_weight: float | int = 0.2
    local_weight: float | int = 0.5
    ot_method: OtMethod = "ipot"
    ot_beta: float | int = 0.5
    ot_iterations: int = 50
    motif_assignment: MotifAssignment = "argmin"
    epsilon: float = 1e-8
    grain_group_size: int | None = 16
    score_mode: ScoreMode = "global"
    gather_across_ranks: bool = False
    text_encoder_learning_rate: float | int | None = 3e-5
    use_fingerprint: bool = False
    fingerprint_dim: int = 2048
    freeze_text_encoder: bool = False

    def __post_init__(self, **kwargs) -> None:
        if isinstance(self.text_config, dict):
            self.text_config = text_config_from(self.text_config, None)
        super().__post_init__(**kwargs)

    def validate_orma(self) -> None:
        """Checks what the field annotations cannot say (``@strict`` checks the types and choices itself): ranges
        and combinations of fields. Run by ``@strict`` after ``__init__`` and by ``config.validate()``."""
        sizes = ("emb_dim", "num_gnn_layers", "max_atoms", "max_motifs", "ot_iterations", "mol2vec_vocab_size")
        sizes = (*sizes, "fingerprint_dim")
        for name in (*sizes, "mol2vec_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")
        if self.grain_group_size is not None and self.grain_group_size < 1:
            raise ValueError(f"`grain_group_size` must be >= 1 or None, got {self.grain_group_size}.")
        if not 1 <= self.sentence_layers <= 3:
            raise ValueError(f"`sentence_layers` must be 1, 2 or 3, got {self.sentence_layers}.")
        if self.sentence_layers > 1 and self.pooling == "pooler":
            raise ValueError("`sentence_layers > 1` pools token states: use `pooling='mean'` or 'cls', not 'pooler'.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {self.dropout}.")
        if self.logit_scale_init <= 0:
            raise ValueError(f"`logit_scale_init` must be > 0, got {self.logit_scale_init}.")
        if self.ot_beta <= 0:
            raise ValueError(f"`ot_beta` must be > 0, got {self.ot_beta}.")
        weights = (self.global_weight, self.mid_weight, self.local_weight)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                f"`global_weight`, `mid_weight`, `local_weight` must be >= 0 with a positive sum, got {weights}."
            )
        if self.text_encoder_learning_rate is not None and self.text_encoder_learning_rate <= 0:
            raise ValueError(
                "`text_encoder_learning_rate` must be positive or None (the base learning rate), got "
                f"{self.text_encoder_learning_rate}."
            )


# Importing this module may fire class_hf's registration hook before the class exists: register it now.
register_config(OrmaConfig)

__all__ = ["OrmaConfig"]
