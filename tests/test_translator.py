"""Translator t_S: size, per-region independence, batching, standardization."""

from __future__ import annotations

import pytest
import torch

from mocha.errors import ConfigError
from mocha.models.translator import Translator


def test_parameter_count_about_2_6m():
    n = sum(p.numel() for p in Translator(448, 512).parameters())
    assert 2.55e6 < n < 2.7e6, n


def test_regions_never_mix_and_batched_equals_one_by_one():
    torch.manual_seed(0)
    t = Translator(448, 64).eval()
    f = torch.randn(7, 448)
    batched = t(f)
    single = torch.cat([t(f[i : i + 1]) for i in range(7)])
    assert torch.allclose(batched, single, atol=1e-5)
    f2 = f.clone()
    f2[3] += 5.0  # changing one region changes only its own output
    out2 = t(f2)
    changed = (out2 - batched).abs().sum(1) > 1e-6
    assert changed.tolist() == [False, False, False, True, False, False, False]


def test_matches_naive_definition():
    torch.manual_seed(1)
    t = Translator(56, 32, heads=14).eval()
    with torch.no_grad():
        t.mu.normal_()
        t.sigma.uniform_(0.5, 2.0)
        t.sigma[0] = 0.0  # clamped to 1e-5
    f = torch.randn(5, 56)
    x = (f - t.mu) / torch.clamp(t.sigma, min=1e-5)
    # attention over a single key is the value projection followed by the output projection
    wv = t.attn.in_proj_weight[112:]
    bv = t.attn.in_proj_bias[112:]
    a = (x @ wv.T + bv) @ t.attn.out_proj.weight.T + t.attn.out_proj.bias
    x = x + t.norm1(a)
    x = x + t.norm2(t.ffn[2](torch.relu(t.ffn[0](x))))
    ref = x @ t.proj.weight.T
    assert torch.allclose(t(f), ref, atol=1e-4)
    assert t.proj.bias is None


def test_empty_and_bad_shapes():
    t = Translator(448, 512)
    assert t(torch.zeros(0, 448)).shape == (0, 512)
    with pytest.raises(ConfigError, match="448"):
        t(torch.zeros(3, 100))
    with pytest.raises(ConfigError, match="divisible"):
        Translator(100, 8, heads=14)


def test_tokens_the_box_mean_attends_to_its_grid():
    torch.manual_seed(2)
    t = Translator(28, 16, heads=2, tokens=5).eval()
    with torch.no_grad():
        t.mu.normal_()
        t.sigma.uniform_(0.5, 2.0)
    f = torch.randn(3, 5 * 28)
    x = ((f.reshape(3, 5, 28) - t.mu) / t.sigma)
    q, k, v = (x @ w.T + b for w, b in zip(t.attn.in_proj_weight.chunk(3), t.attn.in_proj_bias.chunk(3),
                                           strict=True))
    heads = [torch.softmax(q[:, :1, h * 14:(h + 1) * 14] @ k[:, :, h * 14:(h + 1) * 14].transpose(1, 2) / 14 ** 0.5,
                           -1) @ v[:, :, h * 14:(h + 1) * 14] for h in range(2)]
    a = torch.cat(heads, 2)[:, 0] @ t.attn.out_proj.weight.T + t.attn.out_proj.bias
    y = x[:, 0] + t.norm1(a)
    y = y + t.norm2(t.ffn(y))
    torch.testing.assert_close(t(f), y @ t.proj.weight.T, atol=1e-5, rtol=1e-5)
    g = f.clone()
    g[1, 3 * 28:4 * 28] += 3.0  # a grid cell of region 1: its output moves, the others' do not
    moved = (t(g) - t(f)).abs().sum(1) > 1e-6
    assert moved.tolist() == [False, True, False]
    assert t.config()["tokens"] == 5 and "tokens" not in Translator(28, 16, heads=2).config()
    with pytest.raises(ConfigError, match="140"):
        t(torch.zeros(2, 28))
