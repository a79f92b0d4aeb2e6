"""Parametric shape families, one per coarse category: params -> a mask on a canonical square canvas."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = ("mug", "bottle", "ball", "book", "box", "can", "shoe", "toy")


def sample_params(cat: str, rng: np.random.Generator) -> dict[str, float]:
    """Fixed shape parameters of one instance (the family is shared, the numbers differ)."""
    u = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    return {"w": u(0.45, 0.75), "h": u(0.55, 0.9), "a": u(0.0, 1.0), "b": u(0.0, 1.0)}


def mask(cat: str, p: dict[str, float], s: int) -> Image.Image:
    """Binary 'L' mask of the shape, size s x s, drawn from parameters `p`."""
    m = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(m)
    w, h = p["w"] * s, p["h"] * s
    cx, cy = s / 2, s / 2
    x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    a, b = p["a"], p["b"]
    if cat == "mug":
        bw = w * 0.75
        d.rounded_rectangle((x0, y0, x0 + bw, y1), radius=int(s * 0.04), fill=255)
        t = int(s * (0.05 + 0.05 * a))
        hy = (h * (0.25 + 0.2 * b))
        d.ellipse((x0 + bw - w * 0.1, cy - hy, x1, cy + hy), outline=255, width=t)
    elif cat == "bottle":
        neck = w * (0.25 + 0.2 * a)
        sh = y0 + h * (0.25 + 0.2 * b)
        d.rounded_rectangle((x0, sh, x1, y1), radius=int(w * 0.2), fill=255)
        d.polygon([(x0, sh + w * 0.1), (cx - neck / 2, y0 + h * 0.1), (cx + neck / 2, y0 + h * 0.1),
                   (x1, sh + w * 0.1)], fill=255)
        d.rectangle((cx - neck / 2, y0, cx + neck / 2, y0 + h * 0.12), fill=255)
    elif cat == "ball":
        r = min(w, h) / 2 * (0.9 + 0.2 * a)
        d.ellipse((cx - r, cy - r * (0.9 + 0.1 * b), cx + r, cy + r * (0.9 + 0.1 * b)), fill=255)
    elif cat == "book":
        d.rectangle((x0, y0, x1, y1), fill=255)
        sp = w * (0.06 + 0.08 * a)
        d.rectangle((x0 - sp, y0 + 2, x0, y1 - 2), fill=255)
    elif cat == "box":
        dx, dy = w * (0.15 + 0.2 * a), h * (0.1 + 0.15 * b)
        d.polygon([(x0, y0 + dy), (x1 - dx, y0 + dy), (x1 - dx, y1), (x0, y1)], fill=255)
        d.polygon([(x0, y0 + dy), (x0 + dx, y0), (x1, y0), (x1 - dx, y0 + dy)], fill=255)
        d.polygon([(x1 - dx, y0 + dy), (x1, y0), (x1, y1 - dy), (x1 - dx, y1)], fill=255)
    elif cat == "can":
        ew = h * (0.08 + 0.06 * a)
        cw = w * (0.7 + 0.3 * b)
        d.rectangle((cx - cw / 2, y0 + ew, cx + cw / 2, y1 - ew), fill=255)
        d.ellipse((cx - cw / 2, y0, cx + cw / 2, y0 + 2 * ew), fill=255)
        d.ellipse((cx - cw / 2, y1 - 2 * ew, cx + cw / 2, y1), fill=255)
    elif cat == "shoe":
        hh = h * (0.35 + 0.2 * a)
        top = y1 - hh
        d.polygon([(x0, y1), (x0, top), (x0 + w * (0.3 + 0.15 * b), top), (x0 + w * 0.55, y1 - hh * 0.45),
                   (x1 - w * 0.05, y1 - hh * 0.35), (x1, y1)], fill=255)
        d.ellipse((x1 - w * 0.25, y1 - hh * 0.45, x1, y1), fill=255)
    elif cat == "toy":  # a plush bear: head, ears, body
        hr = w * (0.22 + 0.08 * a)
        er = hr * (0.35 + 0.25 * b)
        hcy = y0 + hr + er
        d.ellipse((cx - hr, hcy - hr, cx + hr, hcy + hr), fill=255)
        for ex in (cx - hr * 0.8, cx + hr * 0.8):
            d.ellipse((ex - er, hcy - hr * 0.8 - er, ex + er, hcy - hr * 0.8 + er), fill=255)
        d.ellipse((cx - w / 2, hcy + hr * 0.6, cx + w / 2, y1), fill=255)
    else:
        raise ValueError(f"unknown category {cat!r}")
    return m
