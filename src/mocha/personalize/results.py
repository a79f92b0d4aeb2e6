"""Personalized detections of one image: boxes, identities (or `unknown <coarse>`), scores; plot and JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Results:
    """Detections in original-image pixels. `names[i]` is the instance or `unknown <coarse>` (open set).

    Scores: `det_scores` = the detector's coarse confidence; `similarity` = cosine between the box embedding
    and the nearest prototype of its coarse class (NaN when the class has no instance); `instance_scores` =
    calibrated probability that the identity is right (0 for unknowns); `scores` = det × instance score for
    named boxes, the detector confidence for unknowns.
    """

    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (n, 4) xyxy float32
    names: list[str]
    instances: list[str | None]
    coarse: np.ndarray  # (n,) int
    coarse_names: list[str]
    det_scores: np.ndarray
    similarity: np.ndarray
    instance_scores: np.ndarray
    scores: np.ndarray
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def known(self) -> np.ndarray:
        """Boolean mask of boxes named as an enrolled instance."""
        return np.array([i is not None for i in self.instances], dtype=bool)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: image size, source, one entry per box."""
        h, w = self.image.shape[:2]

        def num(x: float) -> float | None:
            return None if not np.isfinite(x) else round(float(x), 5)

        return {
            "source": self.path,
            "width": int(w),
            "height": int(h),
            "detections": [
                {
                    "box": [round(float(v), 2) for v in self.boxes[i]],
                    "name": self.names[i],
                    "instance": self.instances[i],
                    "coarse": self.coarse_names[i],
                    "coarse_id": int(self.coarse[i]),
                    "det_score": num(self.det_scores[i]),
                    "similarity": num(self.similarity[i]),
                    "instance_score": num(self.instance_scores[i]),
                    "score": num(self.scores[i]),
                }
                for i in range(len(self))
            ],
            **self.extra,
        }

    def plot(self, line_width: int | None = None, font_size: int | None = None) -> np.ndarray:
        """The image with boxes and labels drawn (RGB uint8 copy): named instances in colour, unknowns grey."""
        from PIL import Image, ImageDraw, ImageFont

        im = Image.fromarray(np.ascontiguousarray(self.image))
        draw = ImageDraw.Draw(im)
        h, w = self.image.shape[:2]
        lw = line_width or max(1, round(0.003 * (h + w)))
        size = font_size or max(10, round(0.02 * (h + w)))
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # very old Pillow
            font = ImageFont.load_default()
        for i in range(len(self)):
            inst = self.instances[i]
            color = _color(inst) if inst is not None else (160, 160, 160)
            x1, y1, x2, y2 = (float(v) for v in self.boxes[i])
            draw.rectangle((x1, y1, x2, y2), outline=color, width=lw)
            label = f"{self.names[i]} {self.scores[i]:.2f}"
            tb = draw.textbbox((0, 0), label, font=font)
            tw, th = tb[2] - tb[0], tb[3] - tb[1]
            ty = y1 - th - 2 * lw if y1 - th - 2 * lw >= 0 else y1
            draw.rectangle((x1, ty, x1 + tw + 2 * lw, ty + th + 2 * lw), fill=color)
            draw.text((x1 + lw, ty + lw - tb[1]), label, fill=(255, 255, 255), font=font)
        return np.asarray(im)

    def save(self, path: str | Path) -> Path:
        """Write the annotated image atomically (format from the suffix)."""
        from PIL import Image

        from mocha.io import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            Image.fromarray(self.plot()).save(tmp, format=_pil_format(path))
        return path


def _color(name: str) -> tuple[int, int, int]:
    import zlib

    palette = [(4, 42, 255), (11, 219, 235), (0, 192, 38), (255, 111, 221), (255, 0, 0), (255, 128, 0),
               (140, 0, 255), (0, 128, 128), (200, 150, 0), (0, 90, 200)]
    return palette[zlib.crc32(name.encode()) % len(palette)]


def _pil_format(path: Path) -> str:
    ext = path.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
            ".tif": "TIFF", ".tiff": "TIFF"}.get(ext, "PNG")
