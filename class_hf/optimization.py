"""One learning rate per parameter group of a backbone, on top of the Trainer's own optimizer.

A class-hf backbone names its parameter groups (``param_groups()``: ``text_encoder``, AMAN's ``discriminator``, ...);
group ``g`` trains at ``<g>_learning_rate`` of the training arguments when set, else of the model config (ORMA and
AMAN: text encoder 3e-5), else at ``learning_rate``. :func:`apply_group_learning_rates` splits the parameter groups
the Trainer built (decaying / not decaying) by those names and sets each group's rate, so every optimizer the
Trainer can build keeps its own options.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


def named_parameter_groups(model: nn.Module) -> dict[str, list[str]]:
    """The backbone's ``param_groups()``, or ``text_encoder`` = the parameters named ``text_encoder.*``."""
    if callable(getattr(model, "param_groups", None)):
        return model.param_groups()
    return {"text_encoder": [n for n, _ in model.named_parameters() if n.startswith("text_encoder.")]}


def group_learning_rates(model: nn.Module, args: Any) -> dict[str, float]:
    """The learning rate of every named group that has one (from ``args``, else from ``model.config``).

    ``args.text_encoder_learning_rate`` is ignored (with a note in the log) when the model's text encoder is frozen
    (``model.text_encoder_frozen``), e.g. a recipe's default with ``freeze_text_encoder=True``.

    Raises:
        ValueError: when ``args.text_encoder_learning_rate`` is set but the model has no text-encoder parameters
            (and no frozen text encoder).
    """
    named = named_parameter_groups(model)
    if getattr(args, "text_encoder_learning_rate", None) is not None and not named.get("text_encoder"):
        if not getattr(model, "text_encoder_frozen", False):
            raise ValueError(
                f"`text_encoder_learning_rate` is set but {type(model).__name__} has no text-encoder parameters "
                "(none in `param_groups()['text_encoder']` nor named `text_encoder.*`). Unset it or rename the module."
            )
        logger.info(
            "`text_encoder_learning_rate` is not used: the text encoder of %s is frozen.", type(model).__name__
        )
    config = getattr(model, "config", None)
    rates: dict[str, float] = {}
    for group in (g for g in named if g != "other" and named[g]):
        key = f"{group}_learning_rate"
        for where, value in (
            ("training arguments", getattr(args, key, None)),
            ("model config", getattr(config, key, None)),
        ):
            if value is not None:
                rates[group] = float(value)
                logger.info("Parameter group %r: learning rate %g (`%s` of the %s).", group, value, key, where)
                break
    return rates


def apply_group_learning_rates(optimizer: torch.optim.Optimizer, model: nn.Module, rates: dict[str, float]) -> None:
    """Splits every parameter group of ``optimizer`` by the model's named groups and sets each named group's rate.

    Call it before the learning-rate scheduler is built (the scheduler reads every group's initial rate).
    """
    params = dict(model.named_parameters())
    owner = {
        id(params[name]): group
        for group, names in named_parameter_groups(model).items()
        if group in rates
        for name in names
    }
    groups = []
    for group in optimizer.param_groups:
        buckets: dict[str | None, list[nn.Parameter]] = defaultdict(list)
        for param in group["params"]:
            buckets[owner.get(id(param))].append(param)
        for name, members in buckets.items():
            groups.append({**group, "params": members, **({"lr": rates[name]} if name is not None else {})})
    optimizer.param_groups = groups


def open_clip_decay_names(model: nn.Module, names: list[str]) -> list[str]:
    """``names`` without the parameters of fewer than two dimensions (biases, norms, ``logit_scale``), as open_clip."""
    dims = {n: p.ndim for n, p in model.named_parameters()}
    return [n for n in names if dims.get(n, 0) >= 2]


__all__ = ["apply_group_learning_rates", "group_learning_rates", "named_parameter_groups", "open_clip_decay_names"]
