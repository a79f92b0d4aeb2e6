"""Reading and validating one split: image files paired with YOLO label files.

Every bad item raises one DataError naming the file (and line); with `skip_bad=True` each one is
reported (logged and collected in a SkipReport) and the item is skipped instead.
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
EPS = 1e-6


@dataclass
class ImageRecord:
    """One image and its ground truth: normalized cx,cy,w,h boxes with coarse and instance ids."""

    image: Path
    label: Path | None
    boxes: np.ndarray  # (n, 4) float32
    coarse: np.ndarray  # (n,) int64
    instance: np.ndarray  # (n,) int64, -1 where the split is labelled with coarse ids
    size: tuple[int, int] = (0, 0)  # (width, height), 0 when not read


@dataclass
class SkipReport:
    """Items skipped with `skip_bad=True`, each as '<file>[:<line>]: <reason>'."""

    items: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.items.append(message)
        log.warning("skipped %s", message)

    def __len__(self) -> int:
        return len(self.items)


def parse_label_file(path: Path, split: SplitSpec, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse and validate a YOLO label file → (boxes, coarse, instance); DataError '<file>:<line>: ...'."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable label file ({exc})") from None
    rows: list[list[float]] = []
    ids: list[int] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise DataError(f"{path}:{n}: expected 5 fields 'class cx cy w h', got {len(parts)}: {line.strip()!r}")
        try:
            cls_f = float(parts[0])
            vals = [float(v) for v in parts[1:]]
        except ValueError:
            raise DataError(f"{path}:{n}: non-numeric field in {line.strip()!r}") from None
        if not cls_f.is_integer() or cls_f < 0:
            raise DataError(f"{path}:{n}: class id must be a non-negative integer, got {parts[0]!r}")
        if not all(np.isfinite(vals)):
            raise DataError(f"{path}:{n}: non-finite box value in {line.strip()!r}")
        cx, cy, w, h = vals
        if w <= 0 or h <= 0:
            raise DataError(f"{path}:{n}: box has zero or negative area (w={w}, h={h})")
        if cx - w / 2 < -EPS or cy - h / 2 < -EPS or cx + w / 2 > 1 + EPS or cy + h / 2 > 1 + EPS:
            raise DataError(f"{path}:{n}: box {cx} {cy} {w} {h} extends outside the image [0,1]")
        cid = int(cls_f)
        if split.label_ids == "coarse" and cid >= len(spec.names):
            raise DataError(f"{path}:{n}: class id {cid} not in the dataset's names (0..{len(spec.names) - 1})")
        if split.label_ids == "instance" and cid not in spec.instances:
            raise DataError(f"{path}:{n}: instance id {cid} not in the dataset's instances")
        rows.append(vals)
        ids.append(cid)
    boxes = np.asarray(rows, dtype=np.float32).reshape(-1, 4)
    id_arr = np.asarray(ids, dtype=np.int64)
    if split.label_ids == "instance":
        coarse = np.asarray([spec.instances[i].coarse for i in ids], dtype=np.int64)
        return boxes, coarse, id_arr
    return boxes, id_arr, np.full(len(ids), -1, dtype=np.int64)


def _image_files(split: SplitSpec) -> list[tuple[Path, Path, Path]]:
    """(image, its label file, images folder) for every image of the split, sorted."""
    out = []
    for images, labels in split.folders():
        if not images.is_dir():
            raise DataError(f"{images}: images folder of split {split.name!r} does not exist")
        files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if split.files is not None:
            wanted = set(split.files)
            files = [p for p in files if p.name in wanted or str(p.relative_to(images)) in wanted]
        out.extend((p, (labels / p.relative_to(images)).with_suffix(".txt"), images) for p in files)
    return out


def _orphan_labels(split: SplitSpec, image_labels: set[Path]) -> list[Path]:
    if split.files is not None:  # a filtered view of a shared folder: other labels belong to other views
        return []
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
    verify_images: bool = True,
) -> list[ImageRecord]:
    """All images of a split with validated labels, sorted by path. See module docstring for errors."""
    sp = spec.split(split)
    report = report if report is not None else SkipReport()
    files = _image_files(sp)
    records: list[ImageRecord] = []
    for img, label, _ in files:
        try:
            if not label.exists():
                raise DataError(f"{img}: image has no label file (expected {label})")
            boxes, coarse, inst = parse_label_file(label, sp, spec)
            size = image_size(img) if verify_images else (0, 0)
        except DataError as exc:
            if not skip_bad:
                raise
            report.add(str(exc))
            continue
        records.append(ImageRecord(img, label, boxes, coarse, inst, size))
    for lab in _orphan_labels(sp, {label for _, label, _ in files}):
        msg = f"{lab}: label file has no image in {sp.images}"
        if not skip_bad:
            raise DataError(msg)
        report.add(msg)
    if not records:
        extra = f" ({len(report)} skipped)" if len(report) else ""
        raise DataError(f"{sp.images}: split {split!r} has no usable images{extra}")
    return records
