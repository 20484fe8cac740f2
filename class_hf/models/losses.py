"""Per-sample retrieval losses and cross-rank gathering.

Every loss here returns one value per pair of the (local) batch, shape ``[batch]``, so that the curriculum can
weight samples before the single reduction in :meth:`CurriculumTrainer.compute_loss`. Learnable temperatures live
in the models (as open_clip's ``logit_scale``); the losses take the already-exponentiated scale.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

LOGIT_SCALE_MAX = 100.0  # ceiling of a learnable logit scale, as CLIP and open_clip


def clamped_logit_scale(log_scale: torch.Tensor) -> torch.Tensor:
    """``exp(log_scale)`` clamped at :data:`LOGIT_SCALE_MAX`: the multiplier of the logits (``1 / temperature``) from
    a model's learnable ``logit_scale`` parameter, as open_clip."""
    return log_scale.clamp(max=math.log(LOGIT_SCALE_MAX)).exp()


class _AllGatherWithGrad(torch.autograd.Function):
    """``all_gather`` of batches of any sizes, whose backward returns each rank its slice of the summed gradient."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        gathered = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(gathered, padded.contiguous())
        ctx.start = sum(sizes[: dist.get_rank()])
        ctx.batch = tensor.shape[0]
        return torch.cat([part[:size] for part, size in zip(gathered, sizes, strict=True)], dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad_output.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.start + ctx.batch], None


def gather_features(features: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Gathers ``features`` from every rank, keeping the gradient of the local slice.

    Ranks may hold batches of different sizes (a curriculum epoch's batches differ by at most one sample).

    Args:
        features (torch.Tensor): local features, shape ``[batch, ...]``.

    Returns:
        tuple[torch.Tensor, int]: the features of all ranks concatenated in rank order, shape
        ``[sum of the batches, ...]``, and the offset of this rank's rows in it.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return features, 0
    size = torch.tensor([features.shape[0]], device=features.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    return _AllGatherWithGrad.apply(features, sizes), sum(sizes[: dist.get_rank()])


def enable_gather_across_ranks(model: torch.nn.Module) -> None:
    """Turns on cross-rank negatives in ``model`` (its config's or its own ``gather_across_ranks``).

    Raises:
        ValueError: when the model has no such setting.
    """
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "gather_across_ranks"):
        config.gather_across_ranks = True
    elif hasattr(model, "gather_across_ranks"):
        model.gather_across_ranks = True
    else:
        raise ValueError(
            f"`gather_across_ranks=True`, but {type(model).__name__} has no `gather_across_ranks` setting (in its "
            "config or as an attribute). Set `gather_across_ranks=False` or use a backbone that gathers in-batch "
            "negatives across ranks."
        )


def enable_gradient_cache(model: torch.nn.Module, chunk_size: int | None) -> None:
    """Turns on gradient caching of a backbone's fine-tuned text encoder (``text_chunk_size``).

    Args:
        model (torch.nn.Module): a backbone with ``enable_gradient_cache(chunk_size)`` (every
            :class:`~class_hf.models.base.RetrievalPreTrainedModel`).
        chunk_size (int | None): texts per chunk; None leaves the model as it is.

    Raises:
        ValueError: when the model cannot encode its texts in chunks.
    """
    if chunk_size is None:
        return
    if not callable(getattr(model, "enable_gradient_cache", None)):
        raise ValueError(
            f"`text_chunk_size={chunk_size}`, but {type(model).__name__} has no `enable_gradient_cache(chunk_size)`; "
            "build the backbone on class_hf.models.RetrievalPreTrainedModel or leave `text_chunk_size` unset."
        )
    model.enable_gradient_cache(chunk_size)


def configure_negatives(model: torch.nn.Module, gather_across_ranks: bool, text_chunk_size: int | None) -> None:
    """Sets how many in-batch negatives the backbone's loss sees (the trainer's ``gather_across_ranks`` and
    ``text_chunk_size``): see :func:`enable_gather_across_ranks` and :func:`enable_gradient_cache`."""
    if gather_across_ranks:
        enable_gather_across_ranks(model)
    enable_gradient_cache(model, text_chunk_size)


def contrastive_loss(
    text_embeds: torch.Tensor,
    mol_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float = 1.0,
    gather_across_ranks: bool = False,
) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE (CLIP loss) with one loss value per pair.

    ``logits = logit_scale * text_embeds @ mol_embeds.T``; the pair ``i`` loss is the mean of its text->molecule
    and molecule->text cross-entropies. With ``gather_across_ranks=True`` the candidates of every rank are
    gathered (with gradient, as open_clip's ``gather_with_grad``) so each local query sees the global batch as
    negatives; the mean of the returned per-sample losses over all ranks then equals the single-process loss on
    the same global batch.

    Args:
        text_embeds (torch.Tensor): ``[batch, dim]`` text embeddings (normalised or not, as the backbone wants).
        mol_embeds (torch.Tensor): ``[batch, dim]`` molecule embeddings; row ``i`` is the partner of text ``i``.
        logit_scale (torch.Tensor | float): multiplier of the logits, i.e. ``1 / temperature``.
        gather_across_ranks (bool): use every rank's samples as negatives.

    Returns:
        dict[str, torch.Tensor]: ``per_sample_loss`` ``[batch]``, ``t2m`` and ``m2t`` (each ``[batch]``).
    """
    if text_embeds.shape != mol_embeds.shape:
        raise ValueError(
            f"text and molecule embeddings must have the same shape, got {tuple(text_embeds.shape)} and "
            f"{tuple(mol_embeds.shape)}."
        )
    all_text, offset = gather_features(text_embeds) if gather_across_ranks else (text_embeds, 0)
    all_mol, _ = gather_features(mol_embeds) if gather_across_ranks else (mol_embeds, 0)
    labels = torch.arange(text_embeds.shape[0], device=text_embeds.device) + offset
    logits_t2m = logit_scale * text_embeds @ all_mol.T  # [batch, global_batch]
    logits_m2t = logit_scale * mol_embeds @ all_text.T  # [batch, global_batch]
    t2m = F.cross_entropy(logits_t2m.float(), labels, reduction="none")
    m2t = F.cross_entropy(logits_m2t.float(), labels, reduction="none")
    return {"per_sample_loss": (t2m + m2t) / 2, "t2m": t2m, "m2t": m2t}


def triplet_loss(
    text_embeds: torch.Tensor,
    mol_embeds: torch.Tensor,
    margin: float | torch.Tensor = 0.3,
    gather_across_ranks: bool = False,
) -> dict[str, torch.Tensor]:
    """Batch-hard triplet loss in both directions, one value per pair (as CMTMR's retrieval loss).

    Distances are Euclidean between the given embeddings. For text ``i`` the positive is molecule ``i`` and the
    negative the closest other molecule; symmetric for molecule ``i``. ``loss_i = (relu(d_pos - d_neg_t2m + m) +
    relu(d_pos - d_neg_m2t + m)) / 2``.

    Args:
        text_embeds (torch.Tensor): ``[batch, dim]``.
        mol_embeds (torch.Tensor): ``[batch, dim]``.
        margin (float | torch.Tensor): the margin ``m`` (0.3 in CMTMR).
        gather_across_ranks (bool): mine negatives among every rank's samples.

    Returns:
        dict[str, torch.Tensor]: ``per_sample_loss``, ``t2m``, ``m2t`` (each ``[batch]``).
    """
    all_text, offset = gather_features(text_embeds) if gather_across_ranks else (text_embeds, 0)
    all_mol, _ = gather_features(mol_embeds) if gather_across_ranks else (mol_embeds, 0)
    batch = text_embeds.shape[0]
    rows = torch.arange(batch, device=text_embeds.device)
    d_t2m = torch.cdist(text_embeds.float(), all_mol.float())  # [batch, global_batch]
    d_m2t = torch.cdist(mol_embeds.float(), all_text.float())
    positive = d_t2m[rows, rows + offset]
    mask = torch.zeros_like(d_t2m, dtype=torch.bool)
    mask[rows, rows + offset] = True
    hardest_mol = d_t2m.masked_fill(mask, float("inf")).min(dim=1).values
    hardest_text = d_m2t.masked_fill(mask, float("inf")).min(dim=1).values
    t2m = F.relu(positive - hardest_mol + margin)
    m2t = F.relu(positive - hardest_text + margin)
    if all_mol.shape[0] == 1:  # a single pair has no negative, hence no ranking signal
        t2m = m2t = positive * 0
    return {"per_sample_loss": (t2m + m2t) / 2, "t2m": t2m, "m2t": m2t}
