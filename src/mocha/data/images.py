"""Image checking/decoding and letterboxing, with the exact mapping back to original image coordinates.

Images are read in the orientation ultralytics (cv2) sees them: EXIF orientation applied, so YOLO labels
written against what a viewer shows stay aligned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mocha.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
PAD_VALUE = 114  # ultralytics' letterbox grey
_EXIF_ORIENTATION = 0x0112
# ImportError: once ultralytics is imported, its patched Image.open tries pi_heif on bytes PIL does not know
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
                  ImportError)


def _corrupt(path: Path, exc: BaseException | str) -> DataError:
    return DataError(f"{path}: unreadable or corrupt image ({exc})")


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image fully to (H,W,3) uint8 RGB (EXIF orientation applied); DataError naming the file."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()  # full decode: truncated files fail here, not later
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except _DECODE_ERRORS as exc:
        raise _corrupt(path, exc) from None


def image_size(path: str | Path, full: bool = False) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), checking the file is a complete image.

    Cheap by default: header + PIL `verify()` (CRCs for PNG) + the end-of-image marker for JPEG, which
    `verify()` does not check. `full=True` decodes every pixel instead.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            fmt = im.format
            orientation = _orientation(im.info.get("exif"))  # getexif() would spoil verify()
            if full:
                im.load()
            else:
                im.verify()
        if not full and fmt == "JPEG" and not _jpeg_complete(path):
            raise _corrupt(path, "truncated JPEG: no end-of-image marker")
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except _DECODE_ERRORS as exc:
        raise _corrupt(path, exc) from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _orientation(raw: bytes | None) -> int:
    if not raw:
        return 1
    exif = Image.Exif()
    exif.load(raw)
    return int(exif.get(_EXIF_ORIENTATION, 1))


def _jpeg_complete(path: Path) -> bool:
    """True when the JPEG's end-of-image marker (FFD9) is in its last KiB (some writers pad after it)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        n = f.tell()
        f.seek(max(0, n - 1024))
        return b"\xff\xd9" in f.read()


@dataclass(frozen=True)
class Letterbox:
    """Scale and padding that turned an (orig_w × orig_h) image into a size × size one.

    letterboxed = original · scale + pad; both directions are the same affine map, so they round-trip.
    """

    scale: float
    pad_x: float
    pad_y: float
    orig_w: int
    orig_h: int
    size: int

    def to_letterbox(self, xyxy: np.ndarray) -> np.ndarray:
        """Original-image pixel boxes (n,4) xyxy → letterboxed pixel boxes."""
        b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        out = b * self.scale + np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])
        return out.astype(np.float32)

    def to_original(self, xyxy: np.ndarray, clip: bool = True) -> np.ndarray:
        """Letterboxed pixel boxes (n,4) xyxy → original-image pixel boxes (clipped to the image by default)."""
        b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        out = (b - np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])) / self.scale
        if clip:
            out = out.clip(0, np.array([self.orig_w, self.orig_h, self.orig_w, self.orig_h]))
        return out.astype(np.float32)


def letterbox(img: np.ndarray, size: int = 640) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio and pad (centred, grey 114) to size × size."""
    import cv2

    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"letterbox expects an (H,W,3) image, got shape {img.shape}")
    h, w = img.shape[:2]
    scale = min(size / w, size / h)
    nw, nh = min(size, max(1, round(w * scale))), min(size, max(1, round(h * scale)))
    if (nw, nh) != (w, h):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(img, (nw, nh), interpolation=interp)
    else:
        resized = img
    out = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    out[py : py + nh, px : px + nw] = resized
    # the long side fills `size` exactly, so `scale` is exact there and within half a pixel on the other side
    return out, Letterbox(scale=scale, pad_x=float(px), pad_y=float(py), orig_w=w, orig_h=h, size=size)


def zoom_geometry(size: int, factor: float) -> tuple[int, int, float]:
    """Side, offset and scale of a `size`-square image shrunk by `factor` and centred: a box maps to box·scale + off."""
    side = max(32, int(round(size * factor)))
    return side, (size - side) // 2, side / size


def zoom_out(img: np.ndarray, factor: float) -> tuple[np.ndarray, float, int]:
    """A square (letterboxed) image shrunk by `factor` and centred on grey, the same size; returns it, scale, offset."""
    import cv2

    size = img.shape[0]
    side, off, scale = zoom_geometry(size, factor)
    out = np.full_like(img, PAD_VALUE)
    out[off : off + side, off : off + side] = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    return out, scale, off


def norm_cxcywh_to_xyxy(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    """Normalized cx,cy,w,h (n,4) → pixel x1,y1,x2,y2 in a w × h image."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    half = b[:, 2:] / 2
    wh = np.array([w, h, w, h], dtype=np.float32)
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1) * wh


def xyxy_to_norm_cxcywh(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    """Pixel x1,y1,x2,y2 (n,4) in a w × h image → normalized cx,cy,w,h."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) / np.array([w, h, w, h], dtype=np.float32)
    return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)


def check_imgsz(imgsz: int, name: str = "imgsz") -> int:
    """The one input-size rule: a positive multiple of 32 (the detector's largest stride). ConfigError otherwise."""
    from mocha.errors import ConfigError

    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz <= 0 or imgsz % 32:
        raise ConfigError(f"{name}={imgsz}: must be a positive multiple of 32")
    return imgsz
