"""User boxes: parse and check the boxes given at enrolment (original-image pixels, xyxy), and IoU."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mocha.errors import ConfigError, DataError

BOX_TOLERANCE = 1.0  # pixels a user box may stick out of the image (rounding of hand-made boxes)


def check_box(box: Sequence[float], w: int, h: int, source: str) -> np.ndarray:
    """A user box (x1,y1,x2,y2 original pixels) inside the image, else DataError naming the source."""
    try:
        b = np.asarray(box, dtype=np.float64).reshape(4)
    except (TypeError, ValueError):
        raise DataError(f"{source}: box must be 4 numbers x1,y1,x2,y2, got {box!r}") from None
    x1, y1, x2, y2 = b
    if not np.isfinite(b).all() or x2 <= x1 or y2 <= y1:
        raise DataError(f"{source}: box {b.tolist()} is empty or not x1<x2, y1<y2")
    t = BOX_TOLERANCE
    if x1 < -t or y1 < -t or x2 > w + t or y2 > h + t:
        raise DataError(f"{source}: box {b.tolist()} lies outside the {w}×{h} image")
    return b.clip(0, [w, h, w, h]).astype(np.float32)


def box_list(boxes: Any, n: int) -> list[Any]:
    """Normalize `boxes` to one entry (4 numbers or None) per image."""
    if boxes is None:
        return [None] * n
    arr = boxes.tolist() if isinstance(boxes, np.ndarray) else boxes
    if len(arr) == 4 and all(isinstance(v, int | float | np.integer | np.floating) for v in arr):
        if n != 1:
            raise ConfigError(f"one box given for {n} images; give one box per image (None = detector's best box)")
        return [list(arr)]
    if len(arr) != n:
        raise ConfigError(f"{len(arr)} boxes for {n} images; give one box per image (None = detector's best box)")
    return list(arr)


def parse_boxes(text: str | None, n: int) -> list[list[float] | None] | None:
    """The CLI's box="x1,y1,x2,y2[;x1,y1,x2,y2...]": one box per source ('-' = the detector's best box)."""
    if not text:
        return None
    parts = [p.strip() for p in str(text).split(";")]
    if len(parts) != n:
        raise ConfigError(f"box: {len(parts)} box(es) for {n} source(s); give one per source separated by ';' "
                          "('-' lets the detector choose)")
    out: list[list[float] | None] = []
    for p in parts:
        if p in ("", "-", "auto"):
            out.append(None)
            continue
        try:
            vals = [float(v) for v in p.split(",")]
        except ValueError:
            raise ConfigError(f"box: expected x1,y1,x2,y2 numbers, got {p!r}") from None
        if len(vals) != 4:
            raise ConfigError(f"box: expected 4 numbers x1,y1,x2,y2, got {p!r}")
        out.append(vals)
    return out


def iou_one(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box a (4,) with boxes b (n,4)."""
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(area, 1e-9)
