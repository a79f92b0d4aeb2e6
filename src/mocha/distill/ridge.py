"""A closed-form start for the translator: ridge regression from the frozen student's region features to the targets.

With the student frozen, L_dist's squared part is a least-squares problem; its ridge solution is one linear solve
and, on the small sets of real photos where a trained translator overfits (docs/coco_bundle.md), generalises
better than SGD from a random start. The solution lives inside SPEC's translator unchanged: the learnable
standardisation holds the features' mean and spread, both residual blocks are switched off by LayerNorms with
zero weight (the second one's bias carries the intercept), and the bias-free projection holds the ridge weights.
Training may go on from there (`epochs` > 0) or stop at it (`epochs=0`).

Ours, not SPEC's (`translator_init=ridge`). The penalty is chosen among `ridge_alpha` by L_dist over all
validation regions (`best/` later compares the same loss averaged per batch of images).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from mocha.distill.config import RIDGE_ALPHAS
from mocha.distill.losses import dist_loss
from mocha.errors import ConfigError
from mocha.models.translator import Translator

log = logging.getLogger(__name__)


@dataclass
class RidgeFit:
    """Standardisation (mu, sigma), weights (out, in), intercept (out,), the chosen penalty and every penalty's
    validation L_dist."""

    mu: Tensor
    sigma: Tensor
    weight: Tensor
    intercept: Tensor
    alpha: float
    val_dist: dict[float, float]

    def predict(self, x: Tensor) -> Tensor:
        return ((x.double() - self.mu) / self.sigma) @ self.weight.T + self.intercept


def _solve(z: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Ridge on standardised features z (n, d) with an unpenalised intercept: (weight (out, d), intercept)."""
    y_mean = y.mean(0)
    gram = z.T @ z + alpha * torch.eye(z.shape[1], dtype=z.dtype)
    w = torch.linalg.solve(gram, z.T @ (y - y_mean))
    return w.T.contiguous(), y_mean - z.mean(0) @ w


def fit_ridge(x: Tensor, y: Tensor, x_val: Tensor | None = None, y_val: Tensor | None = None,
              alphas: tuple[float, ...] | list[float] = RIDGE_ALPHAS) -> RidgeFit:
    """Fit on (x, y) for every penalty; keep the one of lowest L_dist on (x_val, y_val) (the first without them)."""
    if len(x) != len(y) or len(x) <= y.shape[1]:
        raise ConfigError(f"translator_init=ridge: needs more training regions than target dimensions (the "
                          f"projection carries the intercept only then), got {len(x)} features and {len(y)} "
                          f"targets of dimension {y.shape[1]}")
    if not alphas or any(a <= 0 for a in alphas):
        raise ConfigError(f"ridge_alpha={','.join(map(str, alphas))}: give one or more penalties > 0")
    x, y = x.double(), y.double()
    mu = x.mean(0)
    sigma = x.std(0).clamp_min(1e-5)
    z = (x - mu) / sigma
    fits = {float(a): RidgeFit(mu, sigma, *_solve(z, y, float(a)), float(a), {}) for a in alphas}
    scores = {}
    if x_val is not None and y_val is not None and len(x_val):
        scores = {a: float(dist_loss(f.predict(x_val).float(), y_val.float())) for a, f in fits.items()}
    best = fits[min(scores, key=scores.__getitem__) if scores else float(alphas[0])]
    best.val_dist = scores
    return best


@torch.no_grad()
def load_ridge(translator: Translator, fit: RidgeFit) -> None:
    """Make `translator` compute `fit.predict` on the box-mean token (exactly, up to float32 rounding)."""
    d = translator.in_dim
    if fit.weight.shape != (translator.out_dim, d):
        raise ConfigError(f"translator_init=ridge: weights {tuple(fit.weight.shape)} for a translator "
                          f"{d} → {translator.out_dim}")
    # proj(z + c) = W z + W c: the intercept enters as the constant the second block adds (W c = intercept)
    w = fit.weight.double()
    if translator.out_dim <= d:
        gram = w @ w.T
        c = w.T @ torch.linalg.solve(gram + 1e-12 * gram.diagonal().mean() * torch.eye(len(w), dtype=w.dtype),
                                     fit.intercept.double())  # the least-norm c (lstsq's rank cut-off drops small W)
    else:  # a narrow region vector (stride4_only: 64 → 128): W c spans only d directions of the output
        c = torch.linalg.lstsq(w, fit.intercept.double()[:, None]).solution[:, 0]
        miss = float((w @ c - fit.intercept.double()).norm())
        if miss > 1e-4:  # targets of a PCA fitted on the training split have a zero mean: nothing is lost then
            log.warning("translator_init=ridge: the output (%d) is wider than the region features (%d), so the "
                        "bias-free projection carries the intercept only up to %.3g (its norm %.3g); the "
                        "validation L_dist of epoch 0 includes that", translator.out_dim, d, miss,
                        float(fit.intercept.norm()))
    translator.mu.copy_(fit.mu.float())
    translator.sigma.copy_(fit.sigma.float())
    for norm in (translator.norm1, translator.norm2):
        norm.weight.zero_()
        norm.bias.zero_()
    translator.norm2.bias.copy_(c.float())
    translator.proj.weight.copy_(fit.weight.float())
