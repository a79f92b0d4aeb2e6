"""The translator t_S: maps each pooled student region feature f_A into the (PCA-reduced) teacher space.

Per region, independently (SPEC): learnable standardization, a residual attention block, a residual
feed-forward block and a bias-free projection. Every region is its own sequence, so the attention never
mixes regions; all N regions run as one batched call. SPEC's region is one token (its box mean), and the
attention over a length-1 sequence is a linear map; with `tokens` > 1 (region features over a grid of the box,
`mocha.models.pooling`) the first token attends to all of the region's tokens and alone goes on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mocha.errors import ConfigError


class Translator(nn.Module):
    """t_S: (N, in_dim) → (N, out_dim). About 2.6 M parameters at 448 → 512."""

    def __init__(self, in_dim: int = 448, out_dim: int = 512, heads: int = 14, ffn_mult: int = 4,
                 tokens: int = 1) -> None:
        super().__init__()
        if in_dim % heads:
            raise ConfigError(f"translator: in_dim {in_dim} is not divisible by heads {heads}")
        self.in_dim, self.out_dim, self.heads, self.ffn_mult, self.tokens = in_dim, out_dim, heads, ffn_mult, tokens
        self.mu = nn.Parameter(torch.zeros(in_dim))
        self.sigma = nn.Parameter(torch.ones(in_dim))
        self.attn = nn.MultiheadAttention(in_dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(in_dim)
        self.ffn = nn.Sequential(nn.Linear(in_dim, ffn_mult * in_dim), nn.ReLU(), nn.Linear(ffn_mult * in_dim, in_dim))
        self.norm2 = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, out_dim, bias=False)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (stored with checkpoints; `tokens` only when a region has more than one)."""
        cfg = {"in_dim": self.in_dim, "out_dim": self.out_dim, "heads": self.heads, "ffn_mult": self.ffn_mult}
        return cfg if self.tokens == 1 else {**cfg, "tokens": self.tokens}

    @property
    def width(self) -> int:
        """Width of the region features it reads: in_dim per token × tokens."""
        return self.in_dim * self.tokens

    def forward(self, f: Tensor) -> Tensor:
        if f.dim() != 2 or f.shape[1] != self.width:
            raise ConfigError(f"translator expects region features (N, {self.width}), got {tuple(f.shape)}")
        seq = (f.reshape(len(f), self.tokens, self.in_dim) - self.mu) / self.sigma.clamp_min(1e-5)
        if seq.shape[0] == 0:
            return seq.new_zeros((0, self.out_dim))
        # one sequence per region: attention stays within it; the box-mean token queries, the rest are context
        a, _ = self.attn(seq[:, :1], seq, seq, need_weights=False)
        x = seq[:, 0] + self.norm1(a.squeeze(1))
        x = x + self.norm2(self.ffn(x))
        return self.proj(x)
