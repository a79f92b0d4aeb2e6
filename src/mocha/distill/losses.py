"""Distillation losses of SPEC: local alignment L_dist and relational consistency L_emb."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mocha.errors import DataError


def _check(pred: Tensor, target: Tensor, name: str) -> None:
    if pred.shape != target.shape or pred.dim() != 2:
        raise DataError(f"{name}: prediction {tuple(pred.shape)} and target {tuple(target.shape)} must both be (N, d)")


def dist_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L_dist = MSE + L1 between translated features and targets (means over regions × dims)."""
    _check(pred, target, "dist_loss")
    if pred.shape[0] == 0:
        raise DataError("dist_loss: empty batch (no regions); every batch needs at least one box")
    target = target.detach()
    return F.mse_loss(pred, target) + F.l1_loss(pred, target)


def _offdiag(m: Tensor) -> Tensor:
    """(N,N) → (N,N-1) without the diagonal."""
    n = m.shape[0]
    return m.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)


def emb_loss(pred: Tensor, target: Tensor, temperature: float = 1.0, relative: bool = False) -> Tensor:
    """L_emb: cross-entropy between softmax(-D_y/T) and log_softmax(-D_x/T) over the other regions; 0 for N < 2.

    `relative`: T is `temperature` × the mean target distance of the group (not a constant). With SPEC's T = 1 and
    distances divided by d the softmax is nearly uniform and L_emb sits at ≈ log(N−1) whatever the geometry; tied
    to the targets' own scale, T = 0.1 makes the nearest targets dominate, so the loss teaches who is near whom.
    """
    _check(pred, target, "emb_loss")
    n, d = pred.shape
    if n < 2:
        return pred.sum() * 0.0  # keeps the graph (and the device) without contributing
    dx = _offdiag(torch.cdist(pred, pred)) / d
    with torch.no_grad():
        dy = _offdiag(torch.cdist(target, target)) / d
        t = temperature * dy.mean().clamp_min(1e-12) if relative else temperature
        py = torch.softmax(-dy / t, dim=1)
    return -(py * torch.log_softmax(-dx / t, dim=1)).sum(1).mean()
