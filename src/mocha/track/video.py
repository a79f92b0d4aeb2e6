"""The annotated tracking video: boxes, instance names, track ids and a short trail per track.

Frames go to a hidden temp file beside the final name (`.<name>.tmp.mp4`: opencv picks the container from
the suffix, so `mocha.io.atomic_path`'s `.tmp` name cannot be used) and are renamed only when the run is
complete; an interrupted run leaves no half-written video under the final name.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

FOURCC = "mp4v"  # opencv-python's bundled ffmpeg writes and reads it (as the video world's clips)


def video_fps(path: str | Path | None, default: float = 25.0) -> float:
    """Frame rate the container reports; `default` when there is none (frame folders, webcams)."""
    import cv2

    if path is None or not Path(path).is_file():
        return default
    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return fps if fps > 0 else default


class TrackVideoWriter:
    """Write tracked `Results` (`Personalizer.track`) as an annotated mp4 at `path`.

    `trail`: how many past frames of each track's path are drawn (bottom centre of its box). Use as a context
    manager, or call `close(complete=)`: only a complete run renames the temp file to `path`."""

    def __init__(self, path: str | Path, fps: float, trail: int = 30) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp{self.path.suffix or '.mp4'}")
        self.fps, self.trail = float(fps), int(trail)
        self.frames = 0
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self._trails: dict[int, deque[tuple[int, int]]] = {}
        self._last_seen: dict[int, int] = {}

    def write(self, r: Any) -> None:
        import cv2

        h, w = r.orig_shape
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*FOURCC), self.fps, (w, h))
            if not self._writer.isOpened():
                raise OSError(f"{self.tmp}: opencv cannot write an {FOURCC} video here")
            self._size = (w, h)
        elif (w, h) != self._size:
            raise ValueError(f"frame {self.frames}: size {w}×{h} differs from the video's {self._size}")
        img = cv2.cvtColor(r.plot(), cv2.COLOR_RGB2BGR)
        self._draw_trails(img, r)
        self._writer.write(img)
        self.frames += 1

    def _draw_trails(self, img: np.ndarray, r: Any) -> None:
        import cv2

        from mocha.personalize.results import label_color

        if r.boxes.id is None:
            return
        lw = max(1, round(0.003 * sum(img.shape[:2])))
        for i, tid in enumerate(r.boxes.id.tolist()):
            x1, _, x2, y2 = r.boxes.xyxy[i]
            pts = self._trails.setdefault(tid, deque(maxlen=max(1, self.trail)))
            pts.append((int((x1 + x2) / 2), int(y2)))
            self._last_seen[tid] = self.frames
            if len(pts) > 1:
                rgb = label_color(r.instance_name(i))
                cv2.polylines(img, [np.array(pts, np.int32)], False, rgb[::-1], lw, cv2.LINE_AA)
        for tid in [t for t, f in self._last_seen.items() if self.frames - f > self.trail]:
            del self._trails[tid], self._last_seen[tid]  # a track gone for a whole trail draws nothing

    def close(self, complete: bool = True) -> Path | None:
        """Finish the file; rename it to `path` when `complete` (returns it), else delete it (returns None)."""
        try:
            if self._writer is not None:
                self._writer.release()
                self._writer = None
                if complete:
                    os.replace(self.tmp, self.path)
                    return self.path
            return None
        finally:
            if self.tmp.exists():
                self.tmp.unlink()

    def __enter__(self) -> TrackVideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(complete=exc_type is None)
