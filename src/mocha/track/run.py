"""The driver: frames → detect+embed → (tracker) → identity → per-frame results, in one of two modes.

`identity="frame"` labels every box on its own (the per-frame baseline, no tracker); `identity="track"`
runs the tracker and keeps one identity per track (mocha.track.identity).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from mocha.errors import ConfigError
from mocha.track.frames import Detections, FrameResult
from mocha.track.identity import IdentityParams, TrackIdentity, frame_identity, label
from mocha.track.tracker import TRACKERS, create_tracker

DetectFn = Callable[[np.ndarray, int], Detections]  # (frame RGB uint8, 0-based index) → detections
MODES = ("frame", "track")


def track_stream(frames: Iterable[np.ndarray], detect_fn: DetectFn, names: list[str], coarse_names: list[str],
                 tracker: str = "bytetrack", identity: str = "track", params: IdentityParams | None = None
                 ) -> Iterator[FrameResult]:
    """Yield one `FrameResult` per frame. In track mode only boxes in a confirmed track are shown (as
    ultralytics' own tracking does); in frame mode every detection is, with track id -1."""
    if identity not in MODES:
        raise ConfigError(f"identity={identity}: unknown mode; choose one of {', '.join(MODES)}")
    params = params or IdentityParams()
    TRACKERS.get(tracker)  # a bad name is an error in either mode
    trk = create_tracker(tracker) if identity == "track" else None
    ident = TrackIdentity(len(names), params)
    for i, frame in enumerate(frames):
        det = detect_fn(frame, i)
        if det.sim.shape[1] != len(names):
            raise ValueError(f"frame {i}: {det.sim.shape[1]} similarity columns for {len(names)} instance names")
        keep = np.arange(len(det))
        if trk is None:
            tid = np.full(len(det), -1, np.int64)
            inst, margin = frame_identity(det.sim, params)
        else:
            tid = trk.update(det.xyxy, det.conf, det.cls, frame)
            keep = np.flatnonzero(tid >= 0)
            det, tid = det.subset(keep), tid[keep]
            inst, margin = ident.update(i, tid, det.sim)
        labels = [label(int(inst[j]), int(det.cls[j]), names, coarse_names) for j in range(len(det))]
        yield FrameResult(i, det.xyxy, det.conf, det.cls, tid, inst, margin, labels, keep)


def run_clip(frames: Iterable[np.ndarray], detect_fn: DetectFn, names: list[str], coarse_names: list[str],
             tracker: str = "bytetrack", identity: str = "track", params: IdentityParams | None = None,
             total: int | None = None, progress: bool = True) -> list[FrameResult]:
    """All of a clip's per-frame results, with a progress bar / lines in frames/s."""
    from mocha.core.progress import progress as progress_bar

    bar = progress_bar(total=total, desc=f"track ({identity})", unit="frame", enable=progress)
    out = []
    for r in track_stream(frames, detect_fn, names, coarse_names, tracker, identity, params):
        out.append(r)
        bar.update()
    bar.close()
    return out
