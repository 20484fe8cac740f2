"""The nested text-encoder config of a backbone config (imports transformers' config classes only, so that config
modules, and registering them with ``AutoConfig``, never import model code or PyG)."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig

from ..data.sources import resolve_pretrained


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
    return AutoConfig.from_pretrained(resolve_pretrained(name_or_path))


__all__ = ["text_config_from"]
