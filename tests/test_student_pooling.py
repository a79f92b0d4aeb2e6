"""f_A pooling: the vectorized integral-image mean equals a naive per-box mean over covered cells."""

from __future__ import annotations

import math

import torch

from mocha.models.pooling import pool_regions


def naive_pool(feats, boxes, strides):
    rows = []
    for b, bx in enumerate(boxes):
        for box in bx.tolist():
            parts = []
            for f, s in zip(feats, strides, strict=True):
                _, _, h, w = f.shape
                x1 = min(max(math.floor(box[0] / s), 0), w - 1)
                y1 = min(max(math.floor(box[1] / s), 0), h - 1)
                x2 = max(min(math.ceil(box[2] / s), w), x1 + 1)
                y2 = max(min(math.ceil(box[3] / s), h), y1 + 1)
                parts.append(f[b, :, y1:y2, x1:x2].mean(dim=(1, 2)))
            rows.append(torch.cat(parts))
    return torch.stack(rows)


def test_pool_matches_naive_including_border_and_tiny_boxes():
    torch.manual_seed(0)
    size, strides = 128, (8, 16, 32)
    feats = [torch.randn(3, c, size // s, size // s) * 5 + 3 for c, s in zip((4, 6, 8), strides, strict=True)]
    boxes = [
        torch.tensor([[0.0, 0.0, 128.0, 128.0], [10.3, 20.7, 60.2, 90.9], [0.0, 100.0, 5.0, 128.0]]),
        torch.tensor([[127.0, 127.0, 128.0, 128.0], [50.0, 50.0, 50.5, 50.4]]),  # border corner, tiny box
        torch.tensor([[-3.0, -2.0, 20.0, 140.0]]),  # partly outside the image
    ]
    got = pool_regions(feats, boxes, strides)
    want = naive_pool(feats, boxes, strides)
    assert got.shape == (6, 18)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_pool_whole_image_is_global_mean_and_empty_batch():
    feats = [torch.rand(1, 2, 8, 8), torch.rand(1, 3, 4, 4)]
    out = pool_regions(feats, [torch.tensor([[0.0, 0.0, 64.0, 64.0]])], (8, 16))
    torch.testing.assert_close(out[0, :2], feats[0][0].mean(dim=(1, 2)))
    torch.testing.assert_close(out[0, 2:], feats[1][0].mean(dim=(1, 2)))
    empty = pool_regions(feats, [torch.zeros(0, 4)], (8, 16))
    assert empty.shape == (0, 5)


def test_pool_is_differentiable():
    f = torch.rand(1, 2, 4, 4, requires_grad=True)
    out = pool_regions([f], [torch.tensor([[0.0, 0.0, 16.0, 16.0]])], (8,))
    out.sum().backward()
    # each of the 2x2 covered cells gets 1/4 of the gradient
    assert torch.allclose(f.grad[0, 0, :2, :2], torch.full((2, 2), 0.25))
    assert f.grad[0, 0, 2:, :].abs().sum() == 0


def test_bins_are_the_box_mean_then_its_grid_cells():
    from mocha.models.pooling import bin_boxes

    torch.manual_seed(1)
    strides = (8, 16, 32)
    feats = [torch.randn(2, c, 128 // s, 128 // s) for c, s in zip((4, 6, 8), strides, strict=True)]
    boxes = [torch.tensor([[10.0, 20.0, 110.0, 70.0]]), torch.tensor([[0.0, 0.0, 128.0, 128.0], [60, 60, 61, 62]])]
    got = pool_regions(feats, boxes, strides, bins=2)
    assert got.shape == (3, 5 * 18)
    torch.testing.assert_close(got[:, :18], pool_regions(feats, boxes, strides))  # token 0: SPEC's f_A
    # tokens 1..4: the 2x2 grid row-major, e.g. the first box's top-right quarter is x 60-110, y 20-45
    cells = bin_boxes(boxes[0], 2)
    torch.testing.assert_close(cells, torch.tensor([[10.0, 20, 60, 45], [60, 20, 110, 45], [10, 45, 60, 70],
                                                    [60, 45, 110, 70]]))
    want = naive_pool(feats, [cells.reshape(-1, 4), torch.zeros(0, 4)], strides).reshape(-1)
    torch.testing.assert_close(got[0, 18:], want, rtol=1e-5, atol=1e-5)
    assert pool_regions(feats, [torch.zeros(0, 4)] * 2, strides, bins=3).shape == (0, 10 * 18)
