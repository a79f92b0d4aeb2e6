"""`mocha bench translator`: one distillation step's region work, batched vs one region at a time.

Both variants compute the same thing for 16 images × 8 regions: box pooling of P3/P4/P5 (f_A), the
translator, L_dist + L_emb and their backward pass. "loop" is the reference call pattern (pool and
translate each region on its own, then the losses on the stacked rows); "batched" is ours (one pooling
call over all boxes, one translator call).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from mocha.bench.core import BenchResult
from mocha.distill.losses import dist_loss, emb_loss
from mocha.models.pooling import pool_regions
from mocha.models.translator import Translator

STRIDES = (8, 16, 32)
DIMS = (64, 128, 256)


def _inputs(
    images: int, regions: int, imgsz: int, d_t: int
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(images, c, imgsz // s, imgsz // s, generator=g) for c, s in zip(DIMS, STRIDES, strict=True)]
    boxes = []
    for _ in range(images):
        xy = torch.rand(regions, 2, generator=g) * imgsz * 0.6
        wh = 16 + torch.rand(regions, 2, generator=g) * imgsz * 0.35
        boxes.append(torch.cat([xy, (xy + wh).clamp(max=imgsz)], 1))
    return feats, boxes, torch.randn(images * regions, d_t, generator=g)


def _step_batched(t: Translator, feats: list[torch.Tensor], boxes: list[torch.Tensor], y: torch.Tensor) -> float:
    pred = t(pool_regions(feats, boxes, STRIDES))
    loss = dist_loss(pred, y) + emb_loss(pred, y)
    loss.backward()
    return loss.item()


def _step_loop(t: Translator, feats: list[torch.Tensor], boxes: list[torch.Tensor], y: torch.Tensor) -> float:
    rows = []
    for i, bx in enumerate(boxes):
        one_image = [f[i : i + 1] for f in feats]
        for b in bx:
            rows.append(t(pool_regions(one_image, [b[None]], STRIDES)))
    pred = torch.cat(rows)
    loss = dist_loss(pred, y) + emb_loss(pred, y)
    loss.backward()
    return loss.item()


def _time(fn, reps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def run(out_dir: Path, quick: bool) -> BenchResult:
    """Seconds per step for both variants, side by side in one process; `batched_speedup` = loop / batched."""
    del out_dir
    images, regions, imgsz, d_t = 16, 8, 256, 512
    feats, boxes, y = _inputs(images, regions, imgsz, d_t)
    torch.manual_seed(0)
    t = Translator(448, d_t)
    reps = 3 if quick else 10
    la, lb = _step_batched(t, feats, boxes, y), _step_loop(t, feats, boxes, y)
    if abs(la - lb) > 1e-3 * max(1.0, abs(la)):
        raise RuntimeError(f"batched and loop losses differ: {la} vs {lb}")
    batched = _time(lambda: _step_batched(t, feats, boxes, y), reps)
    loop = _time(lambda: _step_loop(t, feats, boxes, y), max(1, reps // 2))
    n = images * regions
    rows = [
        {"variant": "batched", "ms_per_step": batched * 1e3, "regions_per_s": n / batched},
        {"variant": "loop (one region per call)", "ms_per_step": loop * 1e3, "regions_per_s": n / loop},
    ]
    return BenchResult(
        name="translator",
        rows=rows,
        summary={
            "batched_speedup": loop / batched,
            "batched_ms": batched * 1e3,
            "loop_ms": loop * 1e3,
            "regions": n,
            "torch_threads": torch.get_num_threads(),
        },
        targets={"batched_speedup": ">= 10"},
        notes=f"{images} images x {regions} regions at {imgsz} px, d_t={d_t}: pooling + translator + "
        "L_dist + L_emb forward and backward; same loss value checked for both variants",
    )
