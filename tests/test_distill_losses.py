"""L_dist and L_emb against deliberately naive loops over regions."""

from __future__ import annotations

import math

import pytest
import torch

from mocha.distill.losses import dist_loss, emb_loss
from mocha.errors import DataError


def naive_dist(x, y):
    n, d = x.shape
    mse = sum((x[i, j] - y[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    l1 = sum(abs(x[i, j] - y[i, j]) for i in range(n) for j in range(d)) / (n * d)
    return mse + l1


def naive_emb(x, y, t):
    n, d = x.shape

    def dist(a, i, j):
        return math.sqrt(sum((a[i, k] - a[j, k]) ** 2 for k in range(d))) / d

    total = 0.0
    for i in range(n):
        others = [j for j in range(n) if j != i]
        ly = [-dist(y, i, j) / t for j in others]
        lx = [-dist(x, i, j) / t for j in others]
        zy = sum(math.exp(v) for v in ly)
        zx = math.log(sum(math.exp(v) for v in lx))
        total += -sum(math.exp(a) / zy * (b - zx) for a, b in zip(ly, lx, strict=True))
    return total / n


def test_dist_loss_matches_naive():
    torch.manual_seed(0)
    x, y = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    assert dist_loss(x, y).item() == pytest.approx(float(naive_dist(x, y)), rel=1e-9)


@pytest.mark.parametrize("temperature", [1.0, 0.05])
def test_emb_loss_matches_naive(temperature):
    torch.manual_seed(1)
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    got = emb_loss(x, y, temperature).item()
    assert got == pytest.approx(naive_emb(x.numpy(), y.numpy(), temperature), rel=1e-9)


def test_emb_loss_small_batches_and_duplicates():
    x = torch.randn(1, 8, requires_grad=True)
    assert emb_loss(x, torch.randn(1, 8)).item() == 0.0
    # duplicate targets and duplicate predictions stay finite, gradients too
    x = torch.randn(4, 8)
    x = torch.cat([x, x[:1]]).requires_grad_(True)
    y = torch.ones(5, 8)
    loss = emb_loss(x, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    # uniform targets: the cross-entropy against a uniform distribution is at least log(N-1)
    assert loss.item() >= math.log(4) - 1e-6


def test_emb_loss_gradient_pulls_toward_target_structure():
    torch.manual_seed(2)
    y = torch.randn(8, 16) * 3
    x = torch.randn(8, 16, requires_grad=True)
    opt = torch.optim.SGD([x], lr=20.0)
    first = emb_loss(x, y, 0.05).item()
    for _ in range(50):
        opt.zero_grad()
        emb_loss(x, y, temperature=0.05).backward()
        opt.step()
    assert emb_loss(x, y, 0.05).item() < 0.9 * first


def test_empty_and_mismatched_inputs_are_errors():
    with pytest.raises(DataError, match="empty batch"):
        dist_loss(torch.zeros(0, 4), torch.zeros(0, 4))
    with pytest.raises(DataError, match="must both be"):
        dist_loss(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(DataError, match="must both be"):
        emb_loss(torch.zeros(3, 4), torch.zeros(2, 4))


def test_relative_temperature_makes_l_emb_see_the_geometry():
    """SPEC's T=1 over distances / d leaves softmax(-D/T) nearly uniform: L_emb ≈ log(N-1) for a right and a
    scrambled geometry alike. Tied to the targets' mean distance, it tells them apart."""
    import math

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 128, generator=g) * 3  # regions come in groups (instances, classes), as real ones do
    target = centres[torch.arange(32) % 8] + 0.5 * torch.randn(32, 128, generator=g)
    right, scrambled = target + 0.01 * torch.randn(32, 128, generator=g), target[torch.randperm(32, generator=g)]
    fixed = [emb_loss(x, target, 1.0).item() for x in (right, scrambled)]
    assert all(abs(v - math.log(31)) < 0.01 for v in fixed)  # the loss teaches nothing
    rel = [emb_loss(x, target, 0.1, relative=True).item() for x in (right, scrambled)]
    assert rel[1] - rel[0] > 1.0
