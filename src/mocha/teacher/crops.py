"""Region crops for teachers: the box in original-image pixels, resized to size×size (SPEC: 224)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mocha.errors import DataError


def crop_regions(
    image: np.ndarray, boxes: np.ndarray, size: int = 224, strict: bool = True, where: str = "image"
) -> list[np.ndarray]:
    """Crops (size, size, 3) uint8 of xyxy pixel boxes of an HxWx3 uint8 image.

    Boxes are clipped to the image. With `strict`, a box of zero area or entirely outside the image is a
    DataError naming `where` and the box; without it such a box becomes the nearest 1-pixel crop (detector
    proposals at the border).
    """
    h, w = image.shape[:2]
    out = []
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        if not np.isfinite([x1, y1, x2, y2]).all():
            raise DataError(f"{where}: box {k} has non-finite coordinates {[x1, y1, x2, y2]}")
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
        if strict and (cx2 - cx1 <= 0 or cy2 - cy1 <= 0):
            what = "zero area" if x2 <= x1 or y2 <= y1 else f"outside the {w}x{h} image"
            raise DataError(f"{where}: box {k} [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}] has {what}")
        # integer pixel window covering the box; at least one pixel
        ix1 = int(np.clip(np.floor(cx1), 0, w - 1))
        iy1 = int(np.clip(np.floor(cy1), 0, h - 1))
        ix2 = int(np.clip(np.ceil(cx2), ix1 + 1, w))
        iy2 = int(np.clip(np.ceil(cy2), iy1 + 1, h))
        crop = Image.fromarray(np.ascontiguousarray(image[iy1:iy2, ix1:ix2]))
        out.append(np.asarray(crop.resize((size, size), Image.BILINEAR)))
    return out
