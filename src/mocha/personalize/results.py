"""Personalized detections of one image in ultralytics / supervision conventions.

    r = p.detect("kitchen.jpg")
    r.boxes.xyxy, r.boxes.conf, r.boxes.cls, r.boxes.instance, r.boxes.similarity, r.boxes.known
    r.names[int(r.boxes.cls[0])]            # coarse id → coarse name (ultralytics' `names`)
    r.instances[int(r.boxes.instance[0])]   # instance id → instance name (-1: unknown)
    r[r.boxes.known]                        # a Results with the named boxes only
    r.labels, r.plot(), r.save("out.jpg"), r.to_json(), r.to_supervision()
    r.to_detections()                       # the tracker's input (mocha.track.frames.Detections)
    for r in p.track("video.mp4", stream=True): r.boxes.id    # track ids (None when not tracked)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mocha.errors import MochaError

UNKNOWN_COLOR = (160, 160, 160)


@dataclass(frozen=True, eq=False)  # arrays: no elementwise-ambiguous ==
class Boxes:
    """Per-box arrays (n rows), boxes in original-image pixels.

    `conf`: the detector's coarse confidence; `cls`: coarse class id; `instance`: instance id (the gallery's)
    or -1 (open set: no enrolled instance is similar enough, or none of that class); `similarity`: cosine to
    the nearest prototype of the box's class (NaN: no candidate); `instance_conf`: calibrated probability
    that the instance is right (0 for unknowns); `score` = conf × instance_conf for named boxes, conf for
    unknowns (the strict protocol's ranking score); `id`: track id per box when the boxes come from
    `Personalizer.track` (None otherwise, as ultralytics' `boxes.id`).
    """

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    instance: np.ndarray
    similarity: np.ndarray
    instance_conf: np.ndarray
    score: np.ndarray
    orig_shape: tuple[int, int]  # (height, width)
    id: np.ndarray | None = None  # (n,) track ids; None when not tracked

    @classmethod
    def empty(cls, orig_shape: tuple[int, int]) -> Boxes:
        f, i = np.zeros(0, np.float32), np.zeros(0, np.int64)
        return cls(np.zeros((0, 4), np.float32), f, i, i, f, f, f, orig_shape)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Boxes:
        """Rows by an int (kept 2-D), a slice, an index array or a boolean mask."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        rows = {k: getattr(self, k)[index] for k in _ROWS}
        return replace(self, **rows, id=None if self.id is None else self.id[index])

    @property
    def is_track(self) -> bool:
        """True when the boxes carry track ids (`Personalizer.track`)."""
        return self.id is not None

    @property
    def known(self) -> np.ndarray:
        """Boolean mask of boxes named as an enrolled instance."""
        return self.instance >= 0

    @property
    def xywh(self) -> np.ndarray:
        """(n, 4) centre x, centre y, width, height in pixels."""
        b = self.xyxy
        return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)

    @property
    def xyxyn(self) -> np.ndarray:
        """xyxy divided by the image width / height."""
        h, w = self.orig_shape
        return self.xyxy / np.array([w, h, w, h], np.float32)

    @property
    def xywhn(self) -> np.ndarray:
        h, w = self.orig_shape
        return self.xywh / np.array([w, h, w, h], np.float32)


_ROWS = ("xyxy", "conf", "cls", "instance", "similarity", "instance_conf", "score")


@dataclass(eq=False, repr=False)
class Results:
    """Detections of one image (or video frame) with their identities.

    `names`: coarse id → coarse name (the detector's vocabulary, as ultralytics' `names`); `instances`:
    instance id → instance name (the gallery's enrolled instances when detected); `orig_img`: the RGB uint8
    image; `speed`: milliseconds per stage (preprocess, inference, embed, postprocess); `path`: the source
    file (None for arrays); `frame`: index inside a video (None for stills). `similarities`: (n, K) cosine
    similarity of every box to every enrolled instance, columns in `gallery_ids` order (the gallery's instance
    ids, increasing), minus the Personalizer's `coarse_penalty` for instances of another coarse class than the
    box (-1 there with an infinite penalty: the conditional learner never names those): the raw evidence before
    any threshold, which the tracker's identity rule accumulates.
    """

    orig_img: np.ndarray
    boxes: Boxes
    names: dict[int, str]
    instances: dict[int, str]
    path: str | None = None
    frame: int | None = None
    speed: dict[str, float] = field(default_factory=dict)
    similarities: np.ndarray | None = None
    gallery_ids: tuple[int, ...] = ()

    @property
    def orig_shape(self) -> tuple[int, int]:
        return self.boxes.orig_shape

    def __repr__(self) -> str:  # the image and arrays would drown the useful part
        where = self.path or "<array>"
        where += f" frame {self.frame}" if self.frame is not None else ""
        h, w = self.orig_shape
        return (f"Results({where}, {w}×{h}, {len(self)} boxes, {int(self.boxes.known.sum())} named: "
                f"{sorted(set(self[self.boxes.known].labels))})")

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: Any) -> Results:
        """The same image with a subset of boxes: `r[0]`, `r[:3]`, `r[r.boxes.known]`, `r[r.boxes.conf > .5]`."""
        sims = self.similarities
        if sims is not None:
            sims = sims[[int(index)] if isinstance(index, int | np.integer) else index]
        return replace(self, boxes=self.boxes[index], similarities=sims)

    def to_detections(self) -> Any:
        """The tracking pipeline's per-frame input (`mocha.track.frames.Detections`): boxes in original pixels,
        detector confidence, coarse class and the (n, K) similarities in `gallery_ids` order."""
        from mocha.track.frames import Detections

        b = self.boxes
        sims = self.similarities if self.similarities is not None else np.zeros((len(b), len(self.gallery_ids)))
        return Detections(b.xyxy, b.conf, b.cls, sims)

    def coarse_name(self, i: int) -> str:
        c = int(self.boxes.cls[i])
        return self.names.get(c, str(c))

    def instance_name(self, i: int) -> str | None:
        k = int(self.boxes.instance[i])
        return self.instances.get(k) if k >= 0 else None

    @property
    def labels(self) -> list[str]:
        """Per box: the instance name, or `unknown <coarse>` (open set)."""
        return [self.instance_name(i) or f"unknown {self.coarse_name(i)}" for i in range(len(self))]

    def to_json(self) -> dict[str, Any]:
        """The JSON `mocha detect` writes per image (docs/personalize.md, "Results"): image size, source and one
        entry per box with its name, instance (name and id), coarse class (name and id) and scores."""
        h, w = self.orig_shape
        b = self.boxes

        def num(x: float) -> float | None:
            return None if not np.isfinite(x) else round(float(x), 5)

        return {
            "source": self.path,
            "width": int(w),
            "height": int(h),
            "detections": [
                {
                    "box": [round(float(v), 2) for v in b.xyxy[i]],
                    "name": label,
                    "instance": self.instance_name(i),
                    "instance_id": int(b.instance[i]),
                    "coarse": self.coarse_name(i),
                    "coarse_id": int(b.cls[i]),
                    "det_score": num(b.conf[i]),
                    "similarity": num(b.similarity[i]),
                    "instance_score": num(b.instance_conf[i]),
                    "score": num(b.score[i]),
                    **({"track_id": int(b.id[i])} if b.id is not None else {}),
                }
                for i, label in enumerate(self.labels)
            ],
        }

    def to_supervision(self) -> Any:
        """A `supervision.Detections`: xyxy, confidence (detector), class_id (coarse id); `data` holds
        `class_name`, `instance_id` (-1 unknown), `instance_name` ("" unknown), `label`, `similarity`, `score`.
        Needs the optional extra: `pip install mocha[supervision]`."""
        try:
            import supervision as sv
        except ImportError:
            raise MochaError("to_supervision() needs the supervision package: pip install 'mocha[supervision]' "
                             "(or pip install supervision==0.31.2)") from None
        b = self.boxes
        n = len(b)
        return sv.Detections(
            xyxy=np.asarray(b.xyxy, np.float32).reshape(n, 4),
            confidence=np.asarray(b.conf, np.float32),
            class_id=np.asarray(b.cls, int),
            tracker_id=None if b.id is None else np.asarray(b.id, int),
            data={
                "class_name": np.array([self.coarse_name(i) for i in range(n)], dtype=str),
                "instance_id": np.asarray(b.instance, int),
                "instance_name": np.array([self.instance_name(i) or "" for i in range(n)], dtype=str),
                "label": np.array(self.labels, dtype=str),
                "similarity": np.asarray(b.similarity, np.float32),
                "score": np.asarray(b.score, np.float32),
            },
        )

    def plot(self, line_width: int | None = None, font_size: int | None = None) -> np.ndarray:
        """The image with boxes and labels drawn: an RGB uint8 copy (ultralytics' `plot()` returns BGR; here
        `Image.fromarray(r.plot())` is right, for OpenCV convert with cv2.COLOR_RGB2BGR). Named instances in
        colour, unknowns grey."""
        from PIL import Image, ImageDraw, ImageFont

        im = Image.fromarray(np.ascontiguousarray(self.orig_img))
        draw = ImageDraw.Draw(im)
        h, w = self.orig_shape
        lw = line_width or max(1, round(0.003 * (h + w)))
        size = font_size or max(10, round(0.02 * (h + w)))
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # very old Pillow
            font = ImageFont.load_default()
        for i, label in enumerate(self.labels):
            inst = self.instance_name(i)
            color = label_color(inst)
            x1, y1, x2, y2 = (float(v) for v in self.boxes.xyxy[i])
            draw.rectangle((x1, y1, x2, y2), outline=color, width=lw)
            text = f"{label} {self.boxes.score[i]:.2f}"
            if self.boxes.id is not None:
                text = f"#{int(self.boxes.id[i])} {text}"
            tb = draw.textbbox((0, 0), text, font=font)
            tw, th = tb[2] - tb[0], tb[3] - tb[1]
            ty = y1 - th - 2 * lw if y1 - th - 2 * lw >= 0 else y1
            tx = max(0.0, min(x1, w - tw - 2 * lw))  # keep the label inside the image at the right edge
            draw.rectangle((tx, ty, tx + tw + 2 * lw, ty + th + 2 * lw), fill=color)
            draw.text((tx + lw, ty + lw - tb[1]), text, fill=(255, 255, 255), font=font)
        return np.asarray(im)

    def save(self, path: str | Path) -> Path:
        """Write the annotated image atomically (format from the suffix); returns the path."""
        from PIL import Image

        from mocha.io import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            Image.fromarray(self.plot()).save(tmp, format=_pil_format(path))
        return path


def label_color(instance: str | None) -> tuple[int, int, int]:
    """The drawing colour of an instance name (stable across runs); grey for unknowns (None)."""
    return _color(instance) if instance is not None else UNKNOWN_COLOR


def _color(name: str) -> tuple[int, int, int]:
    import zlib

    palette = [(4, 42, 255), (11, 219, 235), (0, 192, 38), (255, 111, 221), (255, 0, 0), (255, 128, 0),
               (140, 0, 255), (0, 128, 128), (200, 150, 0), (0, 90, 200)]
    return palette[zlib.crc32(name.encode()) % len(palette)]


def _pil_format(path: Path) -> str:
    ext = path.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
            ".tif": "TIFF", ".tiff": "TIFF"}.get(ext, "PNG")
