"""Instance appearance (shared palettes, own pattern + photo texture) and per-view rendering into a scene."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from mocha.data.world import shapes, textures

CANON = 160  # canonical instance canvas, pixels
PATTERNS = ("stripes", "dots", "checker", "bands", "rings", "plain")

# A few shared palettes per category (primary, secondary): colour alone must not identify an instance.
_PALETTES = [((200, 60, 50), (240, 220, 200)), ((50, 90, 170), (230, 230, 235)), ((60, 140, 80), (35, 35, 40))]


@dataclass
class Instance:
    id: int
    name: str
    coarse: int
    split: str
    rgba: np.ndarray  # (CANON, CANON, 4) uint8 appearance


def _pattern(kind: str, rng: np.random.Generator, s: int) -> np.ndarray:
    """Float mask in [0,1] where the secondary colour shows."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    ang = float(rng.uniform(0, np.pi))
    f = float(rng.uniform(3, 9))
    u = xx * np.cos(ang) + yy * np.sin(ang)
    if kind == "stripes":
        return (np.sin(2 * np.pi * f * u) > float(rng.uniform(-0.4, 0.4))).astype(np.float32)
    if kind == "dots":
        v = -xx * np.sin(ang) + yy * np.cos(ang)
        return ((np.sin(2 * np.pi * f * u) * np.sin(2 * np.pi * f * v)) > 0.55).astype(np.float32)
    if kind == "checker":
        v = -xx * np.sin(ang) + yy * np.cos(ang)
        return ((np.floor(u * f) + np.floor(v * f)) % 2).astype(np.float32)
    if kind == "bands":
        c = float(rng.uniform(0.3, 0.7))
        return (np.abs(yy - c) < float(rng.uniform(0.05, 0.15))).astype(np.float32)
    if kind == "rings":
        r = np.hypot(xx - float(rng.uniform(0.3, 0.7)), yy - float(rng.uniform(0.3, 0.7)))
        return (np.sin(2 * np.pi * f * r) > 0.3).astype(np.float32)
    return np.zeros((s, s), np.float32)


def make_instance(iid: int, name: str, coarse: int, split: str, rng: np.random.Generator,
                  palette: int | None = None, photo_names: tuple[str, ...] = textures.PHOTO_NAMES) -> Instance:
    """Fix an instance: shape parameters, a shared palette (given, or drawn), its own pattern and a texture cut
    from one of the `photo_names` photos."""
    cat = shapes.CATEGORIES[coarse]
    s = CANON
    m = np.asarray(shapes.mask(cat, shapes.sample_params(cat, rng), s), np.float32) / 255
    swap = rng.random() < 0.5
    if palette is None:
        palette = int(rng.integers(2 * len(_PALETTES)))
    elif swap:
        palette = palette ^ 1  # look-alikes may only swap the roles of one palette's two colours
    c1, c2 = (np.array(c, np.float32) for c in _PALETTES[(palette // 2) % len(_PALETTES)])
    if palette % 2:
        c1, c2 = c2, c1
    kind = PATTERNS[int(rng.integers(len(PATTERNS)))]
    pat = _pattern(kind, rng, s)[..., None]
    tex = textures.crop(rng, s, photo_names).astype(np.float32)
    # Texture modulates luminance strongly (fine detail a CNN sees), keeps the palette's hue.
    lum = tex.mean(axis=2, keepdims=True) / 128.0
    t = float(rng.uniform(0.45, 0.8))
    base = c1 * (1 - pat) + c2 * pat
    col = base * ((1 - t) + t * lum) * 0.85 + tex * 0.15
    shade = 0.75 + 0.35 * np.sin(np.linspace(0, np.pi, s, dtype=np.float32))[None, :, None]
    rgb = (col * shade).clip(0, 255)
    rgba = np.concatenate([rgb, m[..., None] * 255], axis=2).astype(np.uint8)
    return Instance(iid, name, coarse, split, rgba)


def background(rng: np.random.Generator, size: int, photo_names: tuple[str, ...] = textures.PHOTO_NAMES) -> np.ndarray:
    """A crop of one of the `photo_names` photos (softened) or procedural noise, uint8 (size, size, 3)."""
    if rng.random() < 0.3 or not textures.photos(photo_names):
        bg = textures.procedural(rng, size)
    else:
        bg = textures.crop(rng, size, photo_names)
    img = Image.fromarray(bg).filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 3.0))))
    return (np.asarray(img, np.float32) * float(rng.uniform(0.6, 1.0))).astype(np.uint8)


def view(inst: Instance, rng: np.random.Generator, side: int) -> Image.Image:
    """One random view of an instance as an RGBA image about `side` pixels wide."""
    rgba = inst.rgba.astype(np.float32)
    gain = rng.uniform(0.75, 1.2) * rng.uniform(0.88, 1.12, size=3)  # lighting + colour jitter
    rgba[..., :3] = (rgba[..., :3] * gain).clip(0, 255)
    img = Image.fromarray(rgba.astype(np.uint8), "RGBA")
    s = CANON
    j = 0.12 * s
    src = [(float(rng.uniform(-j, j)) + x, float(rng.uniform(-j, j)) + y) for x, y in ((0, 0), (s, 0), (s, s), (0, s))]
    img = img.transform((s, s), Image.QUAD, [c for p in src for c in p], Image.BILINEAR)
    img = img.rotate(float(rng.uniform(-30, 30)), Image.BILINEAR, expand=True)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    bbox = img.getchannel("A").point(lambda v: 255 if v > 128 else 0).getbbox()
    img = img.crop(bbox)
    k = side / max(img.size)
    img = img.resize((max(2, round(img.size[0] * k)), max(2, round(img.size[1] * k))), Image.BILINEAR)
    r = float(rng.uniform(0, 1.2))
    if r > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(r))
    return img


def compose(bg: np.ndarray, views: list[Image.Image], rng: np.random.Generator, occluder: bool
            ) -> tuple[np.ndarray, list[tuple[float, float, float, float] | None]]:
    """Paste views in order; return the image and each object's visible box (cx, cy, w, h normalized) or None
    when the object was dropped because it would hide an earlier one or be mostly hidden."""
    size = bg.shape[0]
    canvas = Image.fromarray(bg)
    owner = np.full((size, size), -1, np.int32)
    area: list[int] = []
    placed: list[bool] = []
    for i, v in enumerate(views):
        a = np.asarray(v.getchannel("A")) > 128
        h, w = a.shape
        ok = False
        for _ in range(8):
            x = int(rng.integers(0, max(1, size - w + 1)))
            y = int(rng.integers(0, max(1, size - h + 1)))
            trial = owner.copy()
            sub = trial[y:y + h, x:x + w]
            sub[a[: sub.shape[0], : sub.shape[1]]] = i
            vis = [(trial == k).sum() / max(1, area[k]) for k in range(i) if placed[k]]
            if all(f >= 0.6 for f in vis):
                ok = True
                break
        area.append(int(a.sum()))
        placed.append(ok)
        if ok:
            owner = trial
            canvas.paste(v, (x, y), v)
    if occluder:  # an unlabelled, non-object blob partially covering the scene
        r = int(size * float(rng.uniform(0.06, 0.12)))
        cx, cy = int(rng.integers(r, size - r)), int(rng.integers(r, size - r))
        yy, xx = np.mgrid[0:size, 0:size]
        blob = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        trial = owner.copy()
        trial[blob] = -2
        if all((trial == k).sum() / max(1, area[k]) >= 0.6 for k in range(len(views)) if placed[k]):
            owner = trial
            arr = np.asarray(canvas).copy()
            arr[blob] = np.array(rng.integers(60, 200, size=3), np.uint8)
            canvas = Image.fromarray(arr)
    boxes: list[tuple[float, float, float, float] | None] = []
    for k in range(len(views)):
        if not placed[k]:
            boxes.append(None)
            continue
        ys, xs = np.nonzero(owner == k)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        boxes.append(((x0 + x1) / 2 / size, (y0 + y1) / 2 / size, (x1 - x0) / size, (y1 - y0) / size))
    return np.asarray(canvas), boxes
