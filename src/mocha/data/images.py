"""Image decoding and letterboxing, with the mapping back to original image coordinates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mocha.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
PAD_VALUE = 114  # ultralytics' letterbox grey


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image fully to (H,W,3) uint8 RGB; DataError naming the file if unreadable or truncated."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()  # full decode: truncated files fail here, not later
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or corrupt image ({exc})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header, verifying the file is a complete image."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            size = im.size
            im.load()
        return size
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or corrupt image ({exc})") from None


@dataclass(frozen=True)
class Letterbox:
    """Scale and padding applied to an (orig_w × orig_h) image to make it size × size."""

    scale: float
    pad_x: float
    pad_y: float
    orig_w: int
    orig_h: int
    size: int

    def to_letterbox(self, xyxy: np.ndarray) -> np.ndarray:
        """Original-image pixel boxes → letterboxed pixel boxes."""
        b = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4).copy()
        b[:, [0, 2]] = b[:, [0, 2]] * self.scale + self.pad_x
        b[:, [1, 3]] = b[:, [1, 3]] * self.scale + self.pad_y
        return b

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """Letterboxed pixel boxes → original-image pixel boxes (clipped to the image)."""
        b = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4).copy()
        b[:, [0, 2]] = ((b[:, [0, 2]] - self.pad_x) / self.scale).clip(0, self.orig_w)
        b[:, [1, 3]] = ((b[:, [1, 3]] - self.pad_y) / self.scale).clip(0, self.orig_h)
        return b


def letterbox(img: np.ndarray, size: int = 640) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio and pad (centred, grey) to size × size."""
    import cv2

    h, w = img.shape[:2]
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else img
    out = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    out[py : py + nh, px : px + nw] = resized
    # effective per-axis scale equals `scale` up to rounding; use the exact one for the x axis mapping
    return out, Letterbox(scale=nw / w, pad_x=float(px), pad_y=float(py), orig_w=w, orig_h=h, size=size)


def norm_cxcywh_to_xyxy(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    """Normalized cx,cy,w,h → pixel x1,y1,x2,y2."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    out = np.empty_like(b)
    out[:, 0] = (b[:, 0] - b[:, 2] / 2) * w
    out[:, 1] = (b[:, 1] - b[:, 3] / 2) * h
    out[:, 2] = (b[:, 0] + b[:, 2] / 2) * w
    out[:, 3] = (b[:, 1] + b[:, 3] / 2) * h
    return out
