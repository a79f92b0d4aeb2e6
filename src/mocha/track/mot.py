"""The MOT-challenge-style table we read and write: `frame,id,x,y,w,h,score,class,instance` per box.

`frame` is 1-based, `x,y,w,h` are the top-left corner and size in pixels, `class` the coarse id and
`instance` the instance id (-1 = unknown). Ground truth (the video world's gt.txt, score 1) and tracking
output share this one format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mocha.errors import DataError
from mocha.io import atomic_path

COLUMNS = ("frame", "id", "x", "y", "w", "h", "score", "class", "instance")


@dataclass
class MotTable:
    """Rows as columns: `frame` (m,) 1-based, `id` (m,), `xyxy` (m,4) pixels, `score`, `cls`, `instance`."""

    frame: np.ndarray
    id: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray
    cls: np.ndarray
    instance: np.ndarray

    def at(self, frame: int) -> np.ndarray:
        """Row indices of one (1-based) frame."""
        return np.flatnonzero(self.frame == frame)

    def __len__(self) -> int:
        return len(self.frame)


def _row(frame: int, tid: int, box: np.ndarray, score: float, cls: int, instance: int) -> str:
    x0, y0, x1, y1 = (float(v) for v in box)
    return f"{frame},{tid},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},{score:.4f},{cls},{instance}"


def format_rows(table: MotTable) -> str:
    return "".join(_row(int(table.frame[i]), int(table.id[i]), table.xyxy[i], float(table.score[i]),
                        int(table.cls[i]), int(table.instance[i])) + "\n" for i in range(len(table)))


def write_mot(path: str | Path, table: MotTable) -> Path:
    """Write the table atomically (temp file + rename): an interrupted run leaves no half file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(format_rows(table))
    return path


def read_mot(path: str | Path) -> MotTable:
    """Read a table; a malformed line raises `DataError("<file>:<line>: ...")`."""
    path = Path(path)
    rows: list[list[float]] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != len(COLUMNS):
            raise DataError(f"{path}:{n}: expected {len(COLUMNS)} fields ({','.join(COLUMNS)}), got {len(parts)}")
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            raise DataError(f"{path}:{n}: non-numeric field in {line!r}") from None
    a = np.asarray(rows, np.float64).reshape(-1, len(COLUMNS))
    xyxy = np.concatenate([a[:, 2:4], a[:, 2:4] + a[:, 4:6]], axis=1).astype(np.float32)
    return MotTable(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), xyxy, a[:, 6].astype(np.float32),
                    a[:, 7].astype(np.int64), a[:, 8].astype(np.int64))


def concat(parts: list[MotTable]) -> MotTable:
    if not parts:
        return MotTable(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4), np.float32),
                        np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))
    return MotTable(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                      ("frame", "id", "xyxy", "score", "cls", "instance")))
