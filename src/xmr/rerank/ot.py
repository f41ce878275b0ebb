"""Entropic optimal transport between batches of weighted point sets (Sinkhorn, log domain), differentiable.

``sinkhorn(cost (B, n, m), a (B, n), b (B, m), eps, iters)`` returns the plan ``P`` (B, n, m) of

    min_P <P, C> - eps H(P)   subject to   P 1 = a,  P^T 1 = b,  P >= 0

by alternating the dual updates ``f = eps log a - eps LSE_j((g_j - C_ij) / eps)`` and ``g = eps log b -
eps LSE_i((f_i - C_ij) / eps)`` (Cuturi 2013, "Sinkhorn Distances"; the log-domain form of Peyré & Cuturi,
"Computational Optimal Transport"), ``P_ij = exp((f_i + g_j - C_ij) / eps)``. Zero masses mark padding: their rows
/ columns of ``P`` are exactly 0. The last update is on ``g``, so the column marginals are exact and the row marginals converge with ``iters``.
POT (``ot.sinkhorn_log``) solves one problem at a time; here a whole batch of small problems runs at once.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError

_TINY = 1e-30  # stands in for a zero mass inside the log (padding): exp(log(1e-30) / eps) underflows to 0


def sinkhorn(cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float = 0.05, iters: int = 50) -> torch.Tensor:
    """Entropic OT plan (B, n, m) between masses ``a`` (B, n) and ``b`` (B, m) (each summing to 1) for ``cost``."""
    if cost.dim() != 3 or a.shape != cost.shape[:2] or b.shape != (cost.shape[0], cost.shape[2]):
        raise ConfigError(f"sinkhorn: cost (B, n, m) with a (B, n) and b (B, m), got {tuple(cost.shape)}, "
                          f"{tuple(a.shape)}, {tuple(b.shape)}")
    if eps <= 0 or iters < 1:
        raise ConfigError(f"sinkhorn: eps must be > 0 and iters >= 1, got {eps}, {iters}")
    log_a, log_b = a.clamp(min=_TINY).log(), b.clamp(min=_TINY).log()
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)
    for _ in range(iters):
        f = eps * log_a - eps * torch.logsumexp((g[:, None, :] - cost) / eps, dim=2)
        g = eps * log_b - eps * torch.logsumexp((f[:, :, None] - cost) / eps, dim=1)
    p = torch.exp((f[:, :, None] + g[:, None, :] - cost) / eps)
    return p * ((a > 0)[:, :, None] & (b > 0)[:, None, :]).to(p.dtype)  # padding: exactly 0 (it was ~1e-30)


def uniform_mass(mask: torch.Tensor) -> torch.Tensor:
    """(B, n) bool mask -> masses 1 / (real count) on real positions, 0 on padding."""
    m = mask.to(torch.float32)
    return m / m.sum(dim=1, keepdim=True).clamp(min=1)


def cosine_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, n, d), (B, m, d) -> (B, n, m) ``1 - cos(x_i, y_j)`` in [0, 2]."""
    return 1 - torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(y, dim=-1).transpose(1, 2)


def wasserstein(x: torch.Tensor, xmask: torch.Tensor, y: torch.Tensor, ymask: torch.Tensor, eps: float = 0.05,
                iters: int = 50) -> torch.Tensor:
    """(B,) transport cost ``<P, C>`` between the real nodes of ``x`` and ``y`` (uniform masses, cosine cost)."""
    c = cosine_cost(x, y)
    p = sinkhorn(c, uniform_mass(xmask).to(c.dtype), uniform_mass(ymask).to(c.dtype), eps, iters)
    return (p * c).sum(dim=(1, 2))


__all__ = ["cosine_cost", "sinkhorn", "uniform_mass", "wasserstein"]
