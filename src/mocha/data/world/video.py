"""`mocha world video`: clips in which personal instances move, rotate, get occluded and leave/re-enter the
frame among same-category look-alikes, with ground-truth tracks and identities (deterministic by seed).

The instances are mochaworld's own personal instances (same world size and seed → same ids, names and
looks), so a gallery enrolled from the world's personal split knows them. Layout of `out/`:
`video.json` (instances, names, clips), and per clip `clip_XXX/video.mp4` (mp4v) + `clip_XXX/gt.txt`
(MOT rows `frame,id,x,y,w,h,1,class,instance`, frame 1-based, pixels).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from mocha.data.world import render, shapes
from mocha.data.world.generate import SIZES as WORLD_SIZES
from mocha.data.world.generate import make_instances
from mocha.errors import ConfigError, DataError
from mocha.io import atomic_dir
from mocha.track.mot import MotTable, write_mot

JSON_NAME = "video.json"
FOURCC = "mp4v"  # opencv-python's bundled ffmpeg writes and reads it back (tests/test_world_video.py)
MIN_VISIBLE = 0.3  # an object is in the ground truth while at least this fraction of it is visible


@dataclass(frozen=True)
class VideoSize:
    world: str  # mochaworld size whose personal instances appear
    imgsz: int
    clips: int
    frames: int
    fps: int
    others: int  # personal instances of other categories per clip, besides the look-alike group


SIZES = {
    "tiny": VideoSize("tiny", 128, 1, 36, 10, 1),
    "small": VideoSize("small", 256, 6, 150, 15, 1),
}


@dataclass(frozen=True)
class _Motion:
    """Closed-form motion of one object: a bouncing centre, a steady spin, a breathing scale."""

    p0: tuple[float, float]
    v: tuple[float, float]
    lo: float
    hi: float
    angle0: float
    spin: float
    side: float
    depth: int

    def at(self, t: int) -> tuple[float, float, float, float]:
        def bounce(x: float) -> float:  # reflect into [lo, hi] (a triangle wave)
            span = self.hi - self.lo
            r = (x - self.lo) % (2 * span)
            return self.lo + (r if r <= span else 2 * span - r)

        cx, cy = bounce(self.p0[0] + self.v[0] * t), bounce(self.p0[1] + self.v[1] * t)
        side = self.side * (1 + 0.1 * np.sin(t / 9.0 + self.angle0))
        return cx, cy, self.angle0 + self.spin * t, side


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, 17, *keys])


def _sprite(inst: render.Instance, angle: float, side: float, gain: float) -> Image.Image:
    rgba = inst.rgba.copy()
    rgba[..., :3] = (rgba[..., :3].astype(np.float32) * gain).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(rgba, "RGBA").rotate(angle, Image.BILINEAR, expand=True)
    img = img.crop(img.getchannel("A").point(lambda a: 255 if a > 128 else 0).getbbox())
    k = side / max(img.size)
    return img.resize((max(2, round(img.size[0] * k)), max(2, round(img.size[1] * k))), Image.BILINEAR)


def _clip_plan(k: int, cfg: VideoSize, personal: list[render.Instance], seed: int
               ) -> tuple[list[render.Instance], list[_Motion], np.random.Generator]:
    rng = _rng(seed, 1, k)
    cats = sorted({i.coarse for i in personal})
    c = cats[k % len(cats)]
    group = [i for i in personal if i.coarse == c]  # all look-alikes of one category
    rest = [i for i in personal if i.coarse != c]
    picks = group + [rest[int(j)] for j in rng.choice(len(rest), size=min(cfg.others, len(rest)), replace=False)]
    s = cfg.imgsz
    depth = rng.permutation(len(picks))
    leaver = int(rng.integers(len(picks)))  # this one wanders out of the frame and comes back
    motions = []
    for j in range(len(picks)):
        side = s * float(rng.uniform(0.22, 0.32))
        speed = s * float(rng.uniform(0.012, 0.025))
        ang = float(rng.uniform(0, 2 * np.pi))
        lo, hi = (-side, s + side) if j == leaver else (side / 2, s - side / 2)
        p0 = (float(rng.uniform(side / 2, s - side / 2)), float(rng.uniform(side / 2, s - side / 2)))
        motions.append(_Motion(p0, (speed * np.cos(ang), speed * np.sin(ang)), lo, hi,
                               float(rng.uniform(0, 360)), float(rng.uniform(-4, 4)), side, int(depth[j])))
    return picks, motions, rng


def _render_frame(bg: np.ndarray, picks: list[render.Instance], motions: list[_Motion], gains: list[float],
                  occ: tuple[float, float, float, np.ndarray], t: int
                  ) -> tuple[np.ndarray, list[tuple[int, int, int, int] | None]]:
    """One frame and each object's visible box (x0, y0, x1, y1 pixels) or None when too little shows."""
    s = bg.shape[0]
    canvas = Image.fromarray(bg)
    owner = np.full((s, s), -1, np.int32)
    full = [0] * len(picks)
    for j in sorted(range(len(picks)), key=lambda j: motions[j].depth):
        cx, cy, angle, side = motions[j].at(t)
        sp = _sprite(picks[j], angle, side, gains[j])
        x, y = round(cx - sp.size[0] / 2), round(cy - sp.size[1] / 2)
        a = np.asarray(sp.getchannel("A")) > 128
        full[j] = int(a.sum())
        canvas.paste(sp, (x, y), sp)
        ys, xs = np.nonzero(a)
        ys, xs = ys + y, xs + x
        inside = (xs >= 0) & (xs < s) & (ys >= 0) & (ys < s)
        owner[ys[inside], xs[inside]] = j
    # A bar sweeping across the scene hides whatever it passes (an unlabelled occluder).
    x0_frac, speed, width, colour = occ
    ox = int(((x0_frac + speed * t) % 1.6 - 0.3) * s)
    ow = int(width * s)
    arr = np.asarray(canvas).copy()
    lo, hi = max(0, ox), min(s, ox + ow)
    if hi > lo:
        arr[:, lo:hi] = colour
        owner[:, lo:hi] = -2
    boxes: list[tuple[int, int, int, int] | None] = []
    for j in range(len(picks)):
        ys, xs = np.nonzero(owner == j)
        if len(xs) < MIN_VISIBLE * max(1, full[j]):
            boxes.append(None)
        else:
            boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    img = Image.fromarray(arr).filter(ImageFilter.GaussianBlur(0.6))
    return np.asarray(img), boxes


def render_clip(k: int, cfg: VideoSize, personal: list[render.Instance], seed: int
                ) -> tuple[list[render.Instance], Iterator[tuple[np.ndarray, list[tuple[int, int, int, int] | None]]]]:
    """Clip `k`'s objects and a lazy stream of (frame RGB, visible box per object or None)."""
    picks, motions, rng = _clip_plan(k, cfg, personal, seed)
    bg = render.background(rng, cfg.imgsz)
    gains = [float(rng.uniform(0.85, 1.15)) for _ in picks]
    occ = (float(rng.uniform(0, 1)), float(rng.uniform(0.01, 0.02)), float(rng.uniform(0.08, 0.14)),
           rng.integers(60, 200, size=3).astype(np.uint8))
    return picks, (_render_frame(bg, picks, motions, gains, occ, t) for t in range(cfg.frames))


def _write_clip(folder: Path, k: int, cfg: VideoSize, personal: list[render.Instance], seed: int, bar: object
                ) -> dict:
    import cv2

    picks, stream = render_clip(k, cfg, personal, seed)
    name = f"clip_{k:03d}"
    (folder / name).mkdir()
    writer = cv2.VideoWriter(str(folder / name / "video.mp4"), cv2.VideoWriter_fourcc(*FOURCC), cfg.fps,
                             (cfg.imgsz, cfg.imgsz))
    if not writer.isOpened():
        raise DataError(f"opencv cannot write {FOURCC} video here")
    rows: list[tuple[int, int, tuple[int, int, int, int], int, int]] = []
    for t, (img, boxes) in enumerate(stream):
        writer.write(np.ascontiguousarray(img[..., ::-1]))
        rows += [(t + 1, j + 1, b, picks[j].coarse, picks[j].id) for j, b in enumerate(boxes) if b is not None]
        bar.update()  # type: ignore[attr-defined]
    writer.release()
    col = lambda i: np.array([r[i] for r in rows], np.int64)  # noqa: E731
    xyxy = np.array([r[2] for r in rows], np.float32).reshape(-1, 4)
    write_mot(folder / name / "gt.txt", MotTable(col(0), col(1), xyxy, np.ones(len(rows), np.float32), col(3), col(4)))
    return {"name": name, "video": f"{name}/video.mp4", "gt": f"{name}/gt.txt", "frames": cfg.frames,
            "category": picks[0].coarse, "objects": [{"id": j + 1, "instance": p.id} for j, p in enumerate(picks)]}


def generate_video(out: str | Path, size: str = "small", seed: int = 0, overwrite: bool = False,
                   progress: bool = True) -> Path:
    """Render the clips into `out` (atomically); return the path of its video.json."""
    from mocha.core.progress import progress as progress_bar

    if size not in SIZES:
        raise ConfigError(f"size={size}: unknown video size; choose one of {', '.join(SIZES)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"out={out}: not empty; pass overwrite=true to replace it")
    cfg = SIZES[size]
    wcfg = WORLD_SIZES[cfg.world]
    personal = make_instances(wcfg, seed, base=False)
    bar = progress_bar(total=cfg.clips * cfg.frames, desc="mochaworld video", unit="frame", enable=progress)
    with atomic_dir(out) as tmp:
        clips = [_write_clip(tmp, k, cfg, personal, seed, bar) for k in range(cfg.clips)]
        doc = {"format": "mocha-video/1", "generator": "mochavideo/1", "size": size, "seed": seed,
               "world": {"size": cfg.world, "seed": seed}, "fps": cfg.fps, "imgsz": cfg.imgsz,
               "names": list(shapes.CATEGORIES[: wcfg.categories]),
               "instances": {str(i.id): {"name": i.name, "coarse": i.coarse} for i in personal},
               "clips": clips}
        (tmp / JSON_NAME).write_text(json.dumps(doc, indent=1) + "\n")
    bar.close()
    return out / JSON_NAME


@dataclass
class VideoClip:
    """One generated clip: its video file, ground-truth file and metadata from video.json."""

    name: str
    video: Path
    gt: Path
    frames: int
    objects: list[dict]

    def read_frames(self) -> Iterator[np.ndarray]:
        """Decoded frames, RGB uint8 (H, W, 3)."""
        return read_video(self.video)


@dataclass
class VideoWorld:
    path: Path
    names: list[str]  # coarse category names
    instances: dict[int, dict]  # instance id → {"name", "coarse"}
    clips: list[VideoClip]
    fps: int
    imgsz: int


def load_video_world(path: str | Path) -> VideoWorld:
    """Read `video.json` (or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / JSON_NAME
    if not path.is_file():
        raise DataError(f"{path}: no {JSON_NAME} (generate one with `mocha world video out=...`)")
    doc = json.loads(path.read_text())
    if doc.get("format") != "mocha-video/1":
        raise DataError(f"{path}: not a mocha-video/1 file")
    root = path.parent
    clips = [VideoClip(c["name"], root / c["video"], root / c["gt"], int(c["frames"]), c["objects"])
             for c in doc["clips"]]
    return VideoWorld(path, list(doc["names"]), {int(k): v for k, v in doc["instances"].items()}, clips,
                      int(doc["fps"]), int(doc["imgsz"]))


def read_video(path: str | Path) -> Iterator[np.ndarray]:
    """Frames of a video file as RGB uint8; an unreadable or empty video raises `DataError`."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path}: cannot open the video")
    try:
        n = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            n += 1
            yield bgr[..., ::-1].copy()
        if n == 0:
            raise DataError(f"{path}: no decodable frame")
    finally:
        cap.release()
