"""Adapter over the trackers ultralytics ships (ByteTrack, BoT-SORT) with their default YAML settings:
detections in, one track id per box out. We do not write a tracker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mocha.core.registry import Registry

TRACKERS: Registry = Registry("tracker", option="tracker")


class _Boxes:
    """The results-like view ultralytics' trackers read: `conf`, `cls`, `xywh` (centre, size), boolean indexing."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
        self.xyxy, self.conf, self.cls = xyxy, conf, cls
        self.xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, keep: Any) -> _Boxes:
        return _Boxes(self.xyxy[keep], self.conf[keep], self.cls[keep])


# Where our defaults differ from ultralytics' yaml, and why. `fuse_score` multiplies each IoU by the detection's
# score before matching (cost 1 - IoU * score against match_thresh 0.8): tuned for COCO detectors whose scores sit
# at 0.5-0.9; a distilled student's boxes score about 0.2-0.3, so almost no box matched its own track. Measured on
# the generated clips with the demo bundle (docs/track.md): ground-truth boxes covered by a confirmed track
# 33 % → 46 %, the tracker's IDF1 0.29 → 0.39.
MOCHA_DEFAULTS: dict[str, Any] = {"fuse_score": False}
# Detector confidence threshold when tracking (ultralytics' `model.track` uses 0.1 too): ByteTrack's second pass
# extends tracks with the boxes below `track_high_thresh`, so they must reach it. New tracks still need 0.25.
TRACK_CONF = 0.1


def tracker_config(name: str, **overrides: Any) -> Any:
    """The tracker's default settings from ultralytics/cfg/trackers/<name>.yaml, then `MOCHA_DEFAULTS`, then
    `overrides`."""
    import ultralytics
    from ultralytics.utils import YAML, IterableSimpleNamespace

    path = Path(ultralytics.__file__).parent / "cfg" / "trackers" / f"{name}.yaml"
    cfg = dict(YAML.load(path))
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise TypeError(f"unknown {name} setting(s) {sorted(unknown)}; valid: {sorted(cfg)}")
    cfg.update({k: v for k, v in MOCHA_DEFAULTS.items() if k in cfg})
    cfg.update(overrides)
    return IterableSimpleNamespace(**cfg)


class Tracker:
    """One stream's tracker. `update(xyxy, conf, cls, frame=None) -> track ids (n,)`, -1 for a box in no
    confirmed track (ultralytics confirms a new track on its second frame, except on the first frame)."""

    def __init__(self, name: str, impl: Any) -> None:
        self.name = name
        self._impl = impl

    def update(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray, frame: np.ndarray | None = None
               ) -> np.ndarray:
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        boxes = _Boxes(xyxy, np.asarray(conf, np.float32), np.asarray(cls, np.float32))
        if frame is None:  # BoT-SORT's motion compensation needs pixels; a blank frame means "camera still"
            frame = np.zeros((8, 8, 3), np.uint8)
        out = self._impl.update(boxes, frame)
        ids = np.full(len(xyxy), -1, np.int64)
        if len(out):
            ids[out[:, -1].astype(np.int64)] = out[:, 4].astype(np.int64)  # rows: x1,y1,x2,y2,id,score,cls,idx
        return ids

    def reset(self) -> None:
        self._impl.reset()


def _bytetrack(**overrides: Any) -> Tracker:
    """ByteTrack (ultralytics, bytetrack.yaml): IoU association in two passes, high then low confidence."""
    from ultralytics.trackers import BYTETracker

    return Tracker("bytetrack", BYTETracker(tracker_config("bytetrack", **overrides)))


def _botsort(**overrides: Any) -> Tracker:
    """BoT-SORT (ultralytics, botsort.yaml): ByteTrack plus camera-motion compensation (no ReID model)."""
    from ultralytics.trackers import BOTSORT

    return Tracker("botsort", BOTSORT(tracker_config("botsort", **overrides)))


TRACKERS.register("bytetrack", _bytetrack)
TRACKERS.register("botsort", _botsort)


def create_tracker(name: str = "bytetrack", **overrides: Any) -> Tracker:
    """A fresh tracker by name; unknown names raise `ConfigError` with the closest valid one."""
    return TRACKERS.get(name)(**overrides)


def list_trackers() -> list[str]:
    return TRACKERS.names()
