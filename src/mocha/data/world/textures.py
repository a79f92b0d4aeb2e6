"""Texture sources: the sample photos bundled in scikit-image, with procedural noise as fallback."""

from __future__ import annotations

import functools
import logging

import numpy as np

log = logging.getLogger(__name__)

PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
               "colorwheel")


@functools.lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    """RGB uint8 photos that load offline; empty when none do (callers fall back to procedural textures)."""
    out = []
    try:
        import skimage.data as skd
    except Exception:  # noqa: BLE001 - any import failure means: no photos
        log.warning("mochaworld: scikit-image not importable; using procedural textures only")
        return ()
    for name in PHOTO_NAMES:
        try:
            img = np.asarray(getattr(skd, name)())
        except Exception:  # noqa: BLE001 - a missing bundled file only removes that photo
            log.warning("mochaworld: sample photo %s unavailable; skipped", name)
            continue
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out.append(np.ascontiguousarray(img[..., :3].astype(np.uint8)))
    if not out:
        log.warning("mochaworld: no sample photos load; using procedural textures only")
    return tuple(out)


def procedural(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour noise (sum of upsampled random grids), uint8 (size, size, 3)."""
    acc = np.zeros((size, size, 3), np.float32)
    for cells, w in ((4, 0.5), (8, 0.3), (16, 0.2)):
        grid = rng.random((cells, cells, 3)).astype(np.float32)
        rep = -(-size // cells)
        acc += w * np.kron(grid, np.ones((rep, rep, 1), np.float32))[:size, :size]
    return (acc * 255).clip(0, 255).astype(np.uint8)


def crop(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop (resized to `size`) of a real photo, or procedural noise without photos."""
    from PIL import Image

    ph = photos()
    if not ph:
        return procedural(rng, size)
    img = ph[int(rng.integers(len(ph)))]
    h, w = img.shape[:2]
    side = int(rng.integers(min(h, w) // 4, min(h, w) // 2 + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return np.asarray(Image.fromarray(img[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR))
