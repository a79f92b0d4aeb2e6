"""Which of NanoDet-g's maps still tell instances apart? The within-class nearest-prototype probe of `mocha demo`
(`mocha.data.world.probe.nearest_prototype_accuracy`) on the ground-truth boxes of a split, with the box mean of
each map of the frozen shipped NanoDet-g as the representation: the input pixels, the stem, each CSP stage and
each PAN level (docs/coco_bundle.md, *What limits a frozen detector*).

    python scripts/probe_nanodet_layers.py runs/coco1/data/media.yaml
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mocha.data.world.probe import nearest_prototype_accuracy
from mocha.demo.probe import _region_features, probe_split
from mocha.models.nanodet import load_shipped
from mocha.models.pooling import pool_regions

LEVELS = {"input pixels": (1, 3), "stem": (2, 32), "CSP stage 1": (4, 64), "CSP stage 2": (8, 128),
          "CSP stage 3": (16, 256), "CSP stage 4": (32, 512), "PAN stride 8": (8, 128), "PAN stride 16": (16, 128),
          "PAN stride 32": (32, 128)}  # (stride, channels)


class EveryMap(torch.nn.Module):
    """NanoDet-g's forward, returning every map of LEVELS in that order."""

    def __init__(self) -> None:
        super().__init__()
        self.m = load_shipped().eval()

    def forward(self, x: Tensor) -> tuple[list[Tensor], None]:
        m = self.m
        stem = m.backbone.stem(m.preprocess(x))
        h, outs = F.max_pool2d(stem, 3, 2, padding=1), []
        for stage in m.backbone.stages:
            h = stage(h)
            outs.append(h)
        return [x, stem, *outs, *m.neck(outs[1:])], None


def main(data: str, split: str = "personal", imgsz: int = 416, episodes: int = 100) -> None:
    torch.manual_seed(0)
    _, images, boxes, inst, coarse = probe_split(data, split)
    strides = [s for s, _ in LEVELS.values()]

    def embed(feats: list[Tensor], bxs: list[Tensor]) -> Tensor:
        return torch.cat([pool_regions([f], bxs, [s]) for f, s in zip(feats, strides, strict=True)], 1)

    every = _region_features(EveryMap(), embed, images, boxes, imgsz)
    edges = np.cumsum([0] + [c for _, c in LEVELS.values()])
    parts = {name: every[:, edges[i]:edges[i + 1]] for i, name in enumerate(LEVELS)}
    unit = {k: v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-8) for k, v in parts.items()}
    pan = [f"PAN stride {s}" for s in (8, 16, 32)]
    rows = {**parts, "PAN (the 384-d region vector)": np.concatenate([parts[k] for k in pan], 1),
            "PAN + CSP stage 1 (each L2-normalised)": np.concatenate([unit[k] for k in [*pan, "CSP stage 1"]], 1)}
    print("| map (box mean) | channels | 1-shot | 5-shot |")
    print("|---|---|---|---|")
    for name, x in rows.items():
        acc = [100 * nearest_prototype_accuracy(x, inst, coarse, k, episodes, 0) for k in (1, 5)]
        print(f"| {name} | {x.shape[1]} | {acc[0]:.1f} | {acc[1]:.1f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1])
