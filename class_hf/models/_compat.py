"""Version shims for transformers, each with the condition under which it can go.

- Nested sub-configs are declared with ``sub_configs_defaults`` and ``SubConfigSpec`` in newer transformers 5 releases
  and with a plain ``sub_configs`` mapping before; class-hf resolves ``text_config`` itself (see
  :func:`~class_hf.models.text_config.text_config_from`), so both declarations hold the same thing. Remove the
  ``sub_configs`` branch once the transformers floor has ``SubConfigSpec``.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig

try:
    from transformers.configuration_utils import SubConfigSpec
except ImportError:  # transformers releases before SubConfigSpec
    SubConfigSpec = None


def text_config_spec(optional: bool) -> Any:
    """The ``sub_configs_defaults`` entry of ``text_config`` (transformers with ``SubConfigSpec``).

    Args:
        optional (bool): whether ``text_config`` may stay None (it is then read from ``text_encoder_name_or_path``
            when the model is built).
    """
    return SubConfigSpec(AutoConfig, model_type="bert", optional=optional)
