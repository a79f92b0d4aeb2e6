"""Texture sources: sample photos bundled in our dependencies, with procedural noise as fallback.

The pool is split into disjoint named sets. `default` is the eight colour photos of scikit-image the world has
always used, `heldout` the eight other bundled natural photos of scikit-image (mostly greyscale), so a held-out
world can draw every texture and background from photos the default world never shows. `extra` is the natural
photos other pinned dependencies ship (scikit-learn's two sample images, matplotlib's portrait) and scikit-image's
remaining non-synthetic greyscale ones large enough to crop (a cell, a scanned page, text): never shown by the default
or the held-out world, they widen the surfaces stage 1 sees (`wide` = `default` + `extra`).
A world may also name its own comma-separated subset of the pool.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np

from mocha.errors import ConfigError

log = logging.getLogger(__name__)

PHOTO_SETS: dict[str, tuple[str, ...]] = {
    "default": ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
                "colorwheel"),
    # skimage's `cat` is `chelsea` again and the remaining bundled files are tiny, binary or synthetic: left out
    "heldout": ("motorcycle", "camera", "coins", "clock", "brick", "grass", "gravel", "moon"),
    # `motorcycle_right` is the held-out `motorcycle` from a second camera, so it stays out; `microaneurysms` is 102 px
    "extra": ("china", "flower", "grace_hopper", "cell", "page", "text"),
}
PHOTO_SETS["wide"] = PHOTO_SETS["default"] + PHOTO_SETS["extra"]
PHOTO_NAMES = PHOTO_SETS["default"]
POOL = tuple(dict.fromkeys(n for names in PHOTO_SETS.values() for n in names))


def _sklearn_image(name: str) -> object:
    from sklearn.datasets import load_sample_image

    return load_sample_image(name)


def _matplotlib_image(name: str) -> object:
    import matplotlib.image
    from matplotlib import cbook

    return matplotlib.image.imread(cbook.get_sample_data(name))


# pool names that are not a plain `skimage.data.<name>()` loader
_LOADERS: dict[str, Callable[[object], object]] = {
    "motorcycle": lambda skd: skd.stereo_motorcycle()[0],
    "china": lambda _: _sklearn_image("china.jpg"),
    "flower": lambda _: _sklearn_image("flower.jpg"),
    "grace_hopper": lambda _: _matplotlib_image("grace_hopper.jpg"),
}


def photo_set(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The photo names of a set name (`default`, `heldout`) or of a comma-separated list of pool names."""
    if isinstance(spec, str) and spec in PHOTO_SETS:
        return PHOTO_SETS[spec]
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else [str(n) for n in spec]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in POOL]
    if unknown or not names:
        raise ConfigError(f"photos={spec!r}: {'unknown photo ' + ', '.join(map(repr, unknown)) if unknown else 'empty'}"
                          f"; give {' or '.join(PHOTO_SETS)} or a comma list of: {', '.join(POOL)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"photos={spec!r}: a photo is named twice")
    return tuple(names)


@functools.lru_cache(maxsize=4)
def photos(names: tuple[str, ...] = PHOTO_NAMES) -> tuple[np.ndarray, ...]:
    """RGB uint8 photos that load offline; empty when none do (callers fall back to procedural textures)."""
    out = []
    try:
        import skimage.data as skd
    except Exception:  # noqa: BLE001 - any import failure means: no photos
        log.warning("mochaworld: scikit-image not importable; using procedural textures only")
        return ()
    for name in names:
        try:
            img = np.asarray(_LOADERS[name](skd) if name in _LOADERS else getattr(skd, name)())
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


def crop(rng: np.random.Generator, size: int, names: tuple[str, ...] = PHOTO_NAMES) -> np.ndarray:
    """A random square crop (resized to `size`) of one of the `names` photos, or procedural noise without photos."""
    from PIL import Image

    ph = photos(names)
    if not ph:
        return procedural(rng, size)
    img = ph[int(rng.integers(len(ph)))]
    h, w = img.shape[:2]
    side = int(rng.integers(min(h, w) // 4, min(h, w) // 2 + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return np.asarray(Image.fromarray(img[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR))
