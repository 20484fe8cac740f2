"""Batched, masked, differentiable optimal transport in the log domain.

Two solvers for a batch of problems ``min_P <P, C>`` with marginals ``P 1 = a``, ``P^T 1 = b``:

- :func:`sinkhorn`: entropic OT (Sinkhorn-Knopp with regularisation ``reg``), the textbook algorithm.
- :func:`ipot`: the inexact proximal-point method (IPOT, Xie et al., UAI 2020), which is what ORMA's
  ``get_phrase_rep`` loop computes: every outer step multiplies the Gibbs kernel ``exp(-C / beta)`` by the previous
  plan and runs one Sinkhorn sweep (warm-started column scaling). It converges to the *unregularised* OT plan; with
  ``beta=0.5`` and 50 steps the effective regularisation is about ``beta / 50``.

Both take per-problem marginals ``a [B, n]`` and ``b [B, m]`` in which zeros mark padding: padded rows and columns get
no mass, so problems of different sizes share one padded tensor. :func:`uniform_marginals` builds ``a`` and ``b``
from boolean masks. The iterations run in float32 (float64 for a float64 cost) in the log domain (no underflow of
``exp(-C / reg)``) and are plain tensor operations, so autograd differentiates through the unrolled loop and they
run on any device.

Why not a library: POT's batched solvers (``ot.batch``; a proximal-point one since POT PR #832, July 2026) iterate
inner loops to a tolerance, so ORMA's fixed loop (50 steps of one warm-started sweep each) and the masking of padded
rows would still need code of our own, and POT is not a dependency of class-hf; geomloss returns the dual potentials
of point-cloud losses rather than plans for given cost matrices. The two loops below are short and tested against
the marginal constraints, ORMA's linear-space loop and ``torch.autograd.gradcheck``.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

# Log-marginal of a padded row/column: finite (so no inf - inf = nan anywhere) yet exp() of it is exactly 0.
_LOG_ZERO = -1e4

OtMethod = Literal["ipot", "sinkhorn"]
OT_METHODS: tuple[str, ...] = get_args(OtMethod)


def uniform_marginals(x_mask: torch.Tensor, y_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform marginals over the valid positions of each problem.

    Args:
        x_mask (torch.Tensor): ``[B, n]`` bool, True for real rows.
        y_mask (torch.Tensor): ``[B, m]`` bool, True for real columns.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``a [B, n]`` and ``b [B, m]`` (float32), ``1 / count`` on valid positions
        and 0 on padding; a problem without any valid row (column) gets an all-zero ``a`` (``b``).
    """
    x = x_mask.float()
    y = y_mask.float()
    a = x / x.sum(-1, keepdim=True).clamp(min=1.0)
    b = y / y.sum(-1, keepdim=True).clamp(min=1.0)
    return a, b


def _prepare(cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, reg: float, reg_name: str):
    """Checks the inputs; returns the log-kernel ``-cost / reg`` and the log-marginals in the working dtype.

    The working dtype is float32, or float64 for a float64 cost (half precision is too coarse for the potentials).
    A zero marginal (padding) gets a finite log (``exp`` of it is exactly 0), so no ``inf - inf`` ever appears.
    """
    if cost.dim() != 3:
        raise ValueError(f"`cost` must be [batch, n, m], got shape {tuple(cost.shape)}.")
    batch, n, m = cost.shape
    if a.shape != (batch, n) or b.shape != (batch, m):
        raise ValueError(
            f"marginals must be a [{batch}, {n}] and b [{batch}, {m}] for a cost of shape {tuple(cost.shape)}, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}."
        )
    if reg <= 0:
        raise ValueError(f"`{reg_name}` must be > 0, got {reg}.")
    dtype = torch.float64 if cost.dtype == torch.float64 else torch.float32

    def log_marginal(p: torch.Tensor) -> torch.Tensor:
        p = p.to(dtype)
        return torch.where(p > 0, p.clamp(min=1e-38).log(), torch.full_like(p, _LOG_ZERO))

    return -cost.to(dtype) / reg, log_marginal(a), log_marginal(b)


def _finish(log_plan: torch.Tensor, a: torch.Tensor, b: torch.Tensor, return_log: bool):
    support = (a > 0).unsqueeze(-1) & (b > 0).unsqueeze(-2)
    log_plan = log_plan.masked_fill(~support, float("-inf"))
    plan = log_plan.exp()
    return (plan, log_plan) if return_log else plan


def sinkhorn(
    cost: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    reg: float = 0.5,
    num_iters: int = 50,
    return_log: bool = False,
):
    """Entropic OT plans for a batch of cost matrices (log-domain Sinkhorn).

    Solves ``min_P <P, C> - reg * H(P)`` subject to ``P 1 = a``, ``P^T 1 = b`` with a fixed number of iterations
    (each updates the row then the column potential, so the column marginals are met exactly and the row marginals
    up to the convergence reached).

    Args:
        cost (torch.Tensor): ``[B, n, m]`` costs (any real values; entries on padding are ignored).
        a (torch.Tensor): ``[B, n]`` row marginals, zeros on padding.
        b (torch.Tensor): ``[B, m]`` column marginals, zeros on padding; ``b.sum(-1)`` should equal ``a.sum(-1)``.
        reg (float): entropic regularisation (> 0).
        num_iters (int): number of Sinkhorn iterations.
        return_log (bool): also return the log-plan (``-inf`` outside the support), exact where the plan underflows.

    Returns:
        torch.Tensor | tuple[torch.Tensor, torch.Tensor]: the plan ``[B, n, m]`` (float32, or float64 for a float64
        cost; zero on padding), and its log when ``return_log``.
    """
    log_k, log_a, log_b = _prepare(cost, a, b, reg, "reg")
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    for _ in range(num_iters):
        f = log_a - torch.logsumexp(log_k + g.unsqueeze(-2), dim=-1)
        g = log_b - torch.logsumexp(log_k + f.unsqueeze(-1), dim=-2)
    return _finish(f.unsqueeze(-1) + log_k + g.unsqueeze(-2), a, b, return_log)


def ipot(
    cost: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    beta: float = 0.5,
    num_iters: int = 50,
    return_log: bool = False,
):
    """Inexact proximal-point OT plans for a batch of cost matrices (the loop of ORMA's ``get_phrase_rep``).

    With ``G = exp(-C / beta)``, ``T_0 = 1`` and ``sigma_0 = b``, every step computes ``Q = G * T``,
    ``delta = a / (Q sigma)``, ``sigma = b / (Q^T delta)`` and ``T = diag(delta) Q diag(sigma)``: a proximal step
    with a KL term to the previous plan, solved by one warm-started Sinkhorn sweep. ORMA (uniform ``a = 1/n``,
    ``b = 1/m``) runs this in linear space; here it runs in the log domain (same plan to float precision, no
    division by an underflowed ``Q sigma``). The returned plan, like ORMA's float32 one, is exactly zero where the
    mass is below float32's range; ``return_log`` gives the log-plan, which keeps those entries distinct.

    Args:
        cost (torch.Tensor): ``[B, n, m]`` costs.
        a (torch.Tensor): ``[B, n]`` row marginals, zeros on padding.
        b (torch.Tensor): ``[B, m]`` column marginals, zeros on padding.
        beta (float): proximal step size (> 0); 0.5 in ORMA.
        num_iters (int): number of proximal steps; 50 in ORMA.
        return_log (bool): also return the log-plan.

    Returns:
        torch.Tensor | tuple[torch.Tensor, torch.Tensor]: as :func:`sinkhorn`.
    """
    log_g, log_a, log_b = _prepare(cost, a, b, beta, "beta")
    log_t = torch.zeros_like(log_g)
    log_sigma = log_b
    for _ in range(num_iters):
        log_q = log_g + log_t
        log_delta = log_a - torch.logsumexp(log_q + log_sigma.unsqueeze(-2), dim=-1)
        log_sigma = log_b - torch.logsumexp(log_q + log_delta.unsqueeze(-1), dim=-2)
        log_t = log_delta.unsqueeze(-1) + log_q + log_sigma.unsqueeze(-2)
    return _finish(log_t, a, b, return_log)


def transport_plan(
    cost: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    method: str = "ipot",
    reg: float = 0.5,
    num_iters: int = 50,
    return_log: bool = False,
):
    """Dispatches to :func:`ipot` (``method="ipot"``, ``reg`` is its ``beta``) or :func:`sinkhorn`."""
    if method == "ipot":
        return ipot(cost, a, b, beta=reg, num_iters=num_iters, return_log=return_log)
    if method == "sinkhorn":
        return sinkhorn(cost, a, b, reg=reg, num_iters=num_iters, return_log=return_log)
    raise ValueError(f"Unknown OT method {method!r}; choose one of {OT_METHODS}.")
