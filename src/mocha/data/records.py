"""Reading and validating one split: image files paired with YOLO label files.

Every bad item raises one DataError naming the file (and line). With `skip_bad=True` every problem is
reported instead — logged as one line '<file>[:<line>]: <reason>' and collected in a SkipReport — and the
image it belongs to is skipped (an image is never kept with part of its labels dropped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mocha.data.images import IMAGE_SUFFIXES, image_size
from mocha.data.schema import DatasetSpec, SplitSpec
from mocha.errors import DataError

log = logging.getLogger("mocha.data")
EPS = 1e-6  # slack for boxes touching the image border after float rounding


@dataclass
class ImageRecord:
    """One image and its ground truth: normalized cx,cy,w,h boxes with coarse and instance ids."""

    image: Path
    label: Path | None
    boxes: np.ndarray  # (n, 4) float32
    coarse: np.ndarray  # (n,) int64
    instance: np.ndarray  # (n,) int64, -1 where the split is labelled with coarse ids
    size: tuple[int, int] = (0, 0)  # (width, height) as displayed; (0, 0) when not read


@dataclass
class SkipReport:
    """Problems met with `skip_bad=True`, each as '<file>[:<line>]: <reason>' (also logged, one line each)."""

    items: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.items.append(message)
        log.warning("skipped %s", message)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)


class Records(list):
    """`list[ImageRecord]` returned by read_split, carrying the SkipReport of what was skipped as `.skipped`."""

    skipped: SkipReport

    def __init__(self, items=(), skipped: SkipReport | None = None) -> None:
        super().__init__(items)
        self.skipped = skipped if skipped is not None else SkipReport()


def _label_errors(path: Path, lines: list[str], split: SplitSpec, spec: DatasetSpec) -> list[str]:
    """Every problem of a label file as '<file>:<line>: <reason>' (slow path, only when something is wrong)."""
    errors = []
    for n, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{n}"
        if len(parts) != 5:
            errors.append(f"{where}: expected 5 fields 'class cx cy w h', got {len(parts)}: {line.strip()!r}")
            continue
        try:
            cls_f, cx, cy, w, h = (float(v) for v in parts)
        except ValueError:
            errors.append(f"{where}: non-numeric field in {line.strip()!r}")
            continue
        if not np.isfinite([cls_f, cx, cy, w, h]).all():
            errors.append(f"{where}: non-finite value in {line.strip()!r}")
        elif not cls_f.is_integer() or cls_f < 0:
            errors.append(f"{where}: class id must be a non-negative integer, got {parts[0]!r}")
        elif w <= 0 or h <= 0:
            errors.append(f"{where}: box has zero or negative area (w={w:g}, h={h:g})")
        elif cx - w / 2 < -EPS or cy - h / 2 < -EPS or cx + w / 2 > 1 + EPS or cy + h / 2 > 1 + EPS:
            errors.append(f"{where}: box {cx:g} {cy:g} {w:g} {h:g} extends outside the image [0,1]")
        elif split.label_ids == "coarse" and int(cls_f) >= len(spec.names):
            errors.append(f"{where}: class id {int(cls_f)} not in the dataset's names (0..{len(spec.names) - 1})")
        elif split.label_ids == "instance" and int(cls_f) not in spec.instances:
            errors.append(f"{where}: instance id {int(cls_f)} not in the dataset's instances")
    return errors


def parse_label_text(
    path: Path, text: str, split: SplitSpec, spec: DatasetSpec
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray] | None, list[str]]:
    """Parse a YOLO label file's text → ((boxes, coarse, instance), []) or (None, errors)."""
    lines = text.splitlines()
    tokens = [ln.split() for ln in lines]
    rows = [t for t in tokens if t]
    if not rows:
        empty = np.zeros((0,), np.int64)
        return (np.zeros((0, 4), np.float32), empty, empty.copy()), []
    try:  # fast path: one vectorized conversion and check per file
        if any(len(t) != 5 for t in rows):
            raise ValueError
        arr = np.asarray(rows, dtype=np.float64)
    except ValueError:
        return None, _label_errors(path, lines, split, spec)
    cls, xywh = arr[:, 0], arr[:, 1:]
    half = xywh[:, 2:] / 2
    ok = (
        np.isfinite(arr).all(1)
        & (cls >= 0)
        & (cls == np.floor(cls))
        & (xywh[:, 2:] > 0).all(1)
        & (xywh[:, :2] - half >= -EPS).all(1)
        & (xywh[:, :2] + half <= 1 + EPS).all(1)
    )
    ids = cls.astype(np.int64) if ok.all() else None
    if ids is not None:
        known = ids < len(spec.names) if split.label_ids == "coarse" else np.isin(ids, list(spec.instances))
        if not known.all():
            ids = None
    if ids is None:
        return None, _label_errors(path, lines, split, spec)
    boxes = xywh.astype(np.float32)
    if split.label_ids == "instance":
        coarse = np.fromiter((spec.instances[int(i)].coarse for i in ids), np.int64, len(ids))
        return (boxes, coarse, ids), []
    return (boxes, ids, np.full(len(ids), -1, dtype=np.int64)), []


def list_split_files(split: SplitSpec) -> list[tuple[Path, Path]]:
    """(image, its label file) for every image of the split, sorted by image path."""
    out = []
    for images, labels in split.folders():
        if not images.is_dir():
            raise DataError(f"{images}: images folder of split {split.name!r} does not exist")
        files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        out.extend((p, (labels / p.relative_to(images)).with_suffix(".txt")) for p in files)
    return sorted(out)


def _orphan_labels(split: SplitSpec, image_labels: set[Path]) -> list[Path]:
    out = []
    for _, labels in split.folders():
        if labels.is_dir():
            out.extend(p for p in sorted(labels.rglob("*.txt")) if p not in image_labels)
    return out


def read_split(
    spec: DatasetSpec,
    split: str,
    skip_bad: bool = False,
    report: SkipReport | None = None,
    verify_images: bool = False,
) -> Records:
    """All images of a split with validated labels, sorted by image path (a `Records` list, `.skipped` set).

    Each image is checked cheaply (header, PIL verify, JPEG end marker); `verify_images=True` decodes every
    pixel too. An existing empty label file means "no objects"; a missing one is an error. See the module
    docstring for `skip_bad`; `report` (optional) receives the skipped items as well.
    """
    sp = spec.split(split)
    report = report if report is not None else SkipReport()

    def bad(message: str) -> None:
        if not skip_bad:
            raise DataError(message)
        report.add(message)

    files = list_split_files(sp)
    seen: dict[Path, Path] = {}
    records = Records(skipped=report)
    for img, label in files:
        if label in seen:  # a.jpg and a.png would share a.txt
            bad(f"{img}: shares its label file {label.name} with {seen[label].name}")
            continue
        seen[label] = img
        try:
            text = label.read_text()
        except FileNotFoundError:
            bad(f"{img}: image has no label file (expected {label}; an empty file means no objects)")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            bad(f"{label}: unreadable label file ({exc})")
            continue
        parsed, errors = parse_label_text(label, text, sp, spec)
        if parsed is None:
            for message in errors[: 1 if not skip_bad else None]:
                bad(message)
            continue
        try:
            size = image_size(img, full=verify_images)
        except DataError as exc:
            bad(str(exc))
            continue
        records.append(ImageRecord(img, label, *parsed, size=size))
    for lab in _orphan_labels(sp, set(seen)):
        bad(f"{lab}: label file has no image in {sp.images}")
    if not records:
        folders = ", ".join(str(i) for i, _ in sp.folders())
        extra = f" ({len(report)} skipped)" if len(report) else ""
        raise DataError(f"{folders}: split {split!r} has no usable images{extra}")
    return records
