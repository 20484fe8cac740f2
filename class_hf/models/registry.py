"""The one list of class-hf backbones, and loading a saved backbone with its tokenizer.

Every part of class-hf that needs to know the shipped backbones asks :data:`BACKBONES`: the recipes (which backbone
``recipes/orma.py`` builds), the CLI (the warm-up scorer's default backbone), the search index (registering the
architectures before ``AutoModel.from_pretrained``), the model card (the backbone's name and citation) and the
benchmarks. An entry names its classes by module and attribute, so reading the list imports nothing heavy; the classes
are imported on first use.

Which molecule features a backbone's molecule tower reads (graphs; Morgan fingerprints with ``use_fingerprint``;
mol2vec ids with ``atom_features="mol2vec"``) is decided from its config by
:meth:`class_hf.data.features.MoleculeFeatures.for_model`, the one answer every entry point asks.

Example::

    >>> from class_hf.models.registry import get_backbone
    >>> spec = get_backbone("orma")
    >>> spec.model_type, spec.default_text_encoder
    ('class_orma', 'allenai/scibert_scivocab_uncased')
    >>> model = spec.model_class(spec.config_class(text_config=..., text_encoder_name_or_path=None))
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "Backbone",
    "backbone_for_model_type",
    "get_backbone",
    "load_backbone",
    "register_backbones",
]


@dataclass(frozen=True)
class Backbone:
    """One shipped backbone.

    Attributes:
        name (str): the recipe name (``recipes/<name>.py``).
        model_type (str): the config's ``model_type``, as ``AutoConfig`` knows it.
        display_name (str): a readable name (model cards, plots).
        config_module (str): module of the config class.
        config_class_name (str): the ``PreTrainedConfig`` subclass.
        modeling_module (str): module of the model class; importing it registers the backbone with
            ``AutoConfig`` / ``AutoModel``.
        model_class_name (str): the ``PreTrainedModel`` subclass.
        citation (str): BibTeX of the backbone's paper.
    """

    name: str
    model_type: str
    display_name: str
    config_module: str
    config_class_name: str
    modeling_module: str
    model_class_name: str
    citation: str

    @property
    def config_class(self) -> type:
        """The config class (imports its module)."""
        return getattr(importlib.import_module(self.config_module), self.config_class_name)

    @property
    def model_class(self) -> type:
        """The model class (imports its module, which registers it with ``AutoModel``)."""
        return getattr(importlib.import_module(self.modeling_module), self.model_class_name)

    @property
    def default_text_encoder(self) -> str | None:
        """The text encoder a new model starts from: the config's ``text_encoder_name_or_path`` default."""
        field = self.config_class.__dataclass_fields__.get("text_encoder_name_or_path")
        return None if field is None or field.default is dataclasses.MISSING else field.default

    def build(self, **config_kwargs: Any) -> Any:
        """A new model of this backbone from ``config_class(**config_kwargs)``."""
        return self.model_class(self.config_class(**config_kwargs))


_MODELS = "class_hf.models"

BACKBONES: dict[str, Backbone] = {
    "dual_encoder": Backbone(
        name="dual_encoder",
        model_type="class_dual_encoder",
        display_name="Text2Mol-style dual encoder",
        config_module=f"{_MODELS}.configuration_dual_encoder",
        config_class_name="DualEncoderConfig",
        modeling_module=f"{_MODELS}.modeling_dual_encoder",
        model_class_name="DualEncoderModel",
        citation="""@inproceedings{edwards2021text2mol,
  title     = {{Text2Mol}: Cross-Modal Molecule Retrieval with Natural Language Queries},
  author    = {Edwards, Carl and Zhai, ChengXiang and Ji, Heng},
  booktitle = {Proceedings of the 2021 Conference on Empirical Methods in Natural Language Processing},
  pages     = {595--607},
  year      = {2021}
}""",
    ),
    "orma": Backbone(
        name="orma",
        model_type="class_orma",
        display_name="ORMA",
        config_module=f"{_MODELS}.configuration_orma",
        config_class_name="OrmaConfig",
        modeling_module=f"{_MODELS}.modeling_orma",
        model_class_name="OrmaModel",
        citation="""@inproceedings{min2024orma,
  title     = {Exploring Optimal Transport-Based Multi-Grained Alignments for Text-Molecule Retrieval},
  author    = {Min, Zijun and Liu, Bingshuai and Zhang, Liang and Song, Jia and Su, Jinsong and He, Song and
               Bo, Xiaochen},
  booktitle = {IEEE International Conference on Bioinformatics and Biomedicine (BIBM)},
  year      = {2024},
  doi       = {10.1109/BIBM62325.2024.10822800}
}""",
    ),
    "aman": Backbone(
        name="aman",
        model_type="class_aman",
        display_name="AMAN",
        config_module=f"{_MODELS}.configuration_aman",
        config_class_name="AmanConfig",
        modeling_module=f"{_MODELS}.modeling_aman",
        model_class_name="AmanModel",
        citation="""@article{zhao2023aman,
  title   = {Adversarial Modality Alignment Network for Cross-Modal Molecule Retrieval},
  author  = {Zhao, Wenyu and Zhou, Dong and Cao, Buqing and Zhang, Kai and Chen, Jinjun},
  journal = {IEEE Transactions on Artificial Intelligence},
  year    = {2023}
}""",
    ),
}
"""Recipe name -> :class:`Backbone`, in the order the documentation lists them."""

DEFAULT_BACKBONE = "dual_encoder"
"""The backbone built when only a text encoder is given (e.g. ``class-hf score --source warmup --text-encoder``)."""


def get_backbone(name: str) -> Backbone:
    """The backbone of a recipe name.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {sorted(BACKBONES)}.")
    return BACKBONES[name]


def backbone_for_model_type(model_type: str | None) -> Backbone | None:
    """The shipped backbone whose config has this ``model_type`` (None for a user's own backbone)."""
    return next((spec for spec in BACKBONES.values() if spec.model_type == model_type), None)


def register_backbones() -> None:
    """Registers every backbone with ``AutoConfig`` / ``AutoModel`` (``import class_hf`` already did: the configs at
    once, the models as stand-ins that import their modeling module when first built or loaded; see
    :mod:`class_hf.models.auto_registration`)."""
    from .auto_registration import register_backbones as register

    register()


def load_backbone(
    name_or_path: str, *, revision: str | None = None, tokenizer: str | None = None, device: str | None = None
) -> tuple[Any, Any]:
    """Loads a saved class-hf checkpoint and its tokenizer (``AutoModel`` / ``AutoTokenizer``), in eval mode.

    Args:
        name_or_path (str): checkpoint folder or Hub id.
        revision (str | None): Hub revision (commit hash, branch or tag).
        tokenizer (str | None): the tokenizer's folder or Hub id when it is not saved with the model.
        device (str | None): where to put the model (default: where it was loaded, the CPU).

    Returns:
        tuple: ``(model, tokenizer)``.

    Raises:
        OSError: the model or its tokenizer cannot be loaded (the message says what to pass instead).
    """
    from transformers import AutoModel, AutoTokenizer

    register_backbones()
    try:
        model = AutoModel.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as err:
        raise OSError(
            f"Could not load the model {name_or_path!r}" + (f" at revision {revision}" if revision else "") + f": "
            f"{err}. Pass a class-hf checkpoint folder (with config.json and model.safetensors) or a Hub id that is "
            "in the local cache."
        ) from err
    tokenizer_path = tokenizer or name_or_path
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer_path, revision=revision if tokenizer is None else None)
    except (OSError, ValueError) as err:
        raise OSError(
            f"Could not load a tokenizer from {tokenizer_path!r}: {err}. Save the tokenizer next to the model "
            "(tokenizer.save_pretrained(checkpoint)) or pass its path with `tokenizer` / --tokenizer."
        ) from err
    if device is not None:
        model = model.to(device)
    return model.eval(), tok
