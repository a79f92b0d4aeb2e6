"""Detections made from ground truth with controlled noise: jittered boxes, dropped detections, and noisy
similarities that sometimes prefer the wrong look-alike. A known-quality detector for tests and for
checking the tracking pipeline without a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mocha.track.frames import Detections
from mocha.track.mot import MotTable, read_mot

if TYPE_CHECKING:
    from mocha.data.world.video import VideoClip, VideoWorld


@dataclass(frozen=True)
class Noise:
    jitter: float = 0.04  # box corner noise, fraction of the box size (std)
    drop: float = 0.1  # chance a ground-truth box is missed in a frame
    sim_right: float = 0.75  # mean similarity to the box's own instance
    sim_lookalike: float = 0.68  # ... to another instance of the same category
    sim_other: float = 0.3  # ... to an instance of another category
    sim_std: float = 0.06  # per box and instance, independent per frame


class NoisyDetector:
    """`detect(frame, i) -> Detections` for frame index `i` (0-based) of a clip with ground truth `gt`;
    similarity columns follow `gallery` (instance ids) and `coarse` maps instance id → coarse id."""

    def __init__(self, gt: MotTable, gallery: Sequence[int], coarse: dict[int, int], noise: Noise | None = None,
                 seed: int = 0) -> None:
        self.gt, self.gallery, self.coarse = gt, list(gallery), coarse
        self.noise, self.seed = noise or Noise(), seed

    def __call__(self, frame: np.ndarray, i: int) -> Detections:
        nz = self.noise
        rng = np.random.default_rng([self.seed, i])
        rows = self.gt.at(i + 1)
        rows = rows[rng.random(len(rows)) >= nz.drop]
        box = self.gt.xyxy[rows].astype(np.float64)
        wh = np.repeat(box[:, 2:] - box[:, :2], 2, axis=0).reshape(-1, 4)
        box = box + rng.normal(0, nz.jitter, box.shape) * wh
        inst = self.gt.instance[rows]
        mean = np.array([[nz.sim_right if g == k else nz.sim_lookalike if self.coarse[g] == self.coarse[k]
                          else nz.sim_other for k in self.gallery] for g in inst]).reshape(len(rows), len(self.gallery))
        sim = mean + rng.normal(0, nz.sim_std, mean.shape)
        return Detections(box, rng.uniform(0.6, 0.95, len(rows)), self.gt.cls[rows], sim)

    @classmethod
    def for_clip(cls, world: VideoWorld, clip: VideoClip, gallery: Sequence[int], noise: Noise | None = None,
                 seed: int = 0) -> NoisyDetector:
        """The detector for one clip of a video world (the `detector` argument of `compare_world`)."""
        coarse = {i: int(v["coarse"]) for i, v in world.instances.items()}
        return cls(read_mot(clip.gt), gallery, coarse, noise, seed)
