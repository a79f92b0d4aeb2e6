"""Per-frame data the tracking pipeline passes around: detections in, labelled (tracked) boxes out.

This is the small interface a detector plugs into (later: the Personalizer): per frame, boxes in original
pixels, their confidence and coarse class, and each box's similarity to every enrolled instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detections:
    """One frame's detections: `xyxy` (n,4) original pixels, `conf` (n,), `cls` (n,) coarse id,
    `sim` (n,K) similarity of each box to each of the K enrolled instances (cosine, higher = closer)."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    sim: np.ndarray

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.conf = np.asarray(self.conf, np.float32).reshape(n)
        self.cls = np.asarray(self.cls, np.int64).reshape(n)
        self.sim = np.asarray(self.sim, np.float32)
        if self.sim.ndim != 2 or len(self.sim) != n:
            raise ValueError(f"sim must be (n, K) with n={n} boxes, got shape {self.sim.shape}")

    @classmethod
    def empty(cls, k: int) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros((0, k)))

    def __len__(self) -> int:
        return len(self.xyxy)

    def subset(self, keep: np.ndarray) -> Detections:
        return Detections(self.xyxy[keep], self.conf[keep], self.cls[keep], self.sim[keep])


@dataclass
class FrameResult:
    """One frame's output: the shown boxes with their track id (-1 without a tracker), the shown instance
    (index into `names`, -1 = unknown), the identity evidence margin (nats), the display label and `index`,
    each shown box's row in the frame's `Detections` (track mode hides boxes in no confirmed track)."""

    frame: int  # 0-based frame index
    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    track_id: np.ndarray
    instance: np.ndarray
    margin: np.ndarray
    labels: list[str] = field(default_factory=list)
    index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.xyxy)

    def to_dict(self) -> dict:
        """JSON-ready: one entry per box."""
        return {"frame": self.frame, "boxes": [
            {"xyxy": [round(float(v), 2) for v in self.xyxy[i]], "conf": round(float(self.conf[i]), 4),
             "cls": int(self.cls[i]), "track_id": int(self.track_id[i]), "instance": int(self.instance[i]),
             "margin": round(float(self.margin[i]), 3), "label": self.labels[i]}
            for i in range(len(self))]}
