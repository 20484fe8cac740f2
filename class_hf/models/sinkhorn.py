"""Batched, masked, differentiable optimal transport.

Two solvers for a batch of problems ``min_P <P, C>`` with marginals ``P 1 = a``, ``P^T 1 = b``:

- :func:`sinkhorn`: entropic OT (Sinkhorn-Knopp with regularisation ``reg``), the textbook algorithm.
- :func:`ipot`: the inexact proximal-point method (IPOT, Xie et al., UAI 2020), which is what ORMA's
  ``get_phrase_rep`` loop computes: every outer step multiplies the Gibbs kernel ``exp(-C / beta)`` by the previous
  plan and runs one Sinkhorn sweep (warm-started column scaling). It converges to the *unregularised* OT plan; with
  ``beta=0.5`` and 50 steps the effective regularisation is about ``beta / 50``.

Both take per-problem marginals ``a [B, n]`` and ``b [B, m]`` in which zeros mark padding: padded rows and columns get
no mass, so problems of different sizes share one padded tensor. :func:`uniform_marginals` builds ``a`` and ``b``
from boolean masks. The iterations run in float32 (float64 for a float64 cost) in the log domain (no underflow of
``exp(-C / reg)``); :func:`ipot` runs a short loop in linear space instead, where no entry can underflow, at a quarter
to a third of the cost. They are plain tensor operations, so autograd differentiates through the unrolled loop and
they run on any device.

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


# Largest exponent ``num_iters * cost span / beta`` for which IPOT runs in linear space: the plan's smallest entry
# (relative to its row's largest) is above ``exp(-limit)``, far from the smallest normal float (exp(-87) in float32).
_LINEAR_LIMIT = {torch.float32: 50.0, torch.float64: 600.0}

OtDomain = Literal["auto", "log", "linear"]


def _ipot_log(log_g: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, num_iters: int) -> torch.Tensor:
    log_t = torch.zeros_like(log_g)
    log_sigma = log_b
    for _ in range(num_iters):
        log_q = log_g + log_t
        log_delta = log_a - torch.logsumexp(log_q + log_sigma.unsqueeze(-2), dim=-1)
        log_sigma = log_b - torch.logsumexp(log_q + log_delta.unsqueeze(-1), dim=-2)
        log_t = log_delta.unsqueeze(-1) + log_q + log_sigma.unsqueeze(-2)
    return log_t


def _ipot_linear(
    log_g: torch.Tensor, a: torch.Tensor, b: torch.Tensor, support: torch.Tensor, num_iters: int
) -> torch.Tensor:
    """ORMA's linear-space loop in factored form; returns the plan (zero off the support).

    ``T_t = diag(u_t) G^t diag(v_t)`` (``G^t`` elementwise, ``u_t`` / ``v_t`` the products of the ``delta`` /
    ``sigma`` scalings so far), so a step is one elementwise product and two batched matrix-vector products. Only
    called where nothing can underflow (see :func:`ipot`); padded rows and columns get a zero kernel and zero
    scalings (``support``: the ``[B, n, m]`` mask of real rows and columns).
    """
    shift = log_g.masked_fill(~support, float("-inf")).amax(dim=(-2, -1), keepdim=True)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))  # a problem without support
    gibbs = (log_g - shift).exp() * support  # a constant factor per problem cancels in every step
    a, b = a.to(gibbs.dtype).unsqueeze(-1), b.to(gibbs.dtype).unsqueeze(-1)

    def scaled(marginal: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        positive = total > 0
        return torch.where(positive, marginal / torch.where(positive, total, torch.ones_like(total)), 0.0)

    kernel = torch.ones_like(gibbs)
    u, v, sigma = torch.ones_like(a), torch.ones_like(b), b
    for _ in range(num_iters):
        kernel = kernel * gibbs  # G^t
        delta = scaled(a, u * torch.bmm(kernel, v * sigma))  # a / (Q_t sigma), Q_t = diag(u) G^t diag(v)
        sigma = scaled(b, v * torch.bmm(kernel.transpose(1, 2), u * delta))  # b / (Q_t^T delta)
        u, v = u * delta, v * sigma
    return u * kernel * v.transpose(1, 2)


def ipot(
    cost: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    beta: float = 0.5,
    num_iters: int = 50,
    return_log: bool = False,
    domain: OtDomain = "auto",
):
    """Inexact proximal-point OT plans for a batch of cost matrices (the loop of ORMA's ``get_phrase_rep``).

    With ``G = exp(-C / beta)``, ``T_0 = 1`` and ``sigma_0 = b``, every step computes ``Q = G * T``,
    ``delta = a / (Q sigma)``, ``sigma = b / (Q^T delta)`` and ``T = diag(delta) Q diag(sigma)``: a proximal step
    with a KL term to the previous plan, solved by one warm-started Sinkhorn sweep. ORMA (uniform ``a = 1/n``,
    ``b = 1/m``) runs this in linear space. After ``t`` steps the plan's entries within a row span up to
    ``exp(t * span / beta)`` (``span``: the largest minus the smallest real cost of the batch), so a long loop
    underflows in linear space; the log domain never does, at three to four times the cost. ``domain="auto"``
    runs the linear loop where ``num_iters * span / beta`` stays below 50 (float32; 600 in float64), where the two
    give the same plan to float precision, and the log-domain loop otherwise. The returned plan, like ORMA's float32
    one, is exactly zero where the mass is below float32's range; ``return_log`` gives the log-plan, which keeps
    those entries distinct.

    Args:
        cost (torch.Tensor): ``[B, n, m]`` costs.
        a (torch.Tensor): ``[B, n]`` row marginals, zeros on padding.
        b (torch.Tensor): ``[B, m]`` column marginals, zeros on padding.
        beta (float): proximal step size (> 0); 0.5 in ORMA.
        num_iters (int): number of proximal steps; 50 in ORMA.
        return_log (bool): also return the log-plan.
        domain (str): ``auto``, ``log`` or ``linear`` (the last raises where the loop could underflow).

    Returns:
        torch.Tensor | tuple[torch.Tensor, torch.Tensor]: as :func:`sinkhorn`.
    """
    if domain not in get_args(OtDomain):
        raise ValueError(f"Unknown `domain` {domain!r}; choose one of {get_args(OtDomain)}.")
    log_g, log_a, log_b = _prepare(cost, a, b, beta, "beta")
    if domain != "log":
        support = (a > 0).unsqueeze(-1) & (b > 0).unsqueeze(-2)
        valid = cost.detach()[support]
        span = float(valid.max() - valid.min()) if valid.numel() else 0.0
        exponent = num_iters * span / beta
        linear = exponent <= _LINEAR_LIMIT[log_g.dtype]
        if domain == "linear" and not linear:
            raise ValueError(
                f"`domain='linear'` would underflow: num_iters * cost span / beta = {exponent:.0f} exceeds "
                f"{_LINEAR_LIMIT[log_g.dtype]:.0f} for {log_g.dtype}; use 'log' or 'auto'."
            )
        if linear:
            plan = _ipot_linear(log_g, a, b, support, num_iters)
            return (plan, plan.log()) if return_log else plan
    return _finish(_ipot_log(log_g, log_a, log_b, num_iters), a, b, return_log)


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
