"""Tracking: follow personal objects through video with ultralytics' trackers, one identity per track.

- `frames`: `Detections` (per-frame input: xyxy, conf, cls, similarities to the gallery) and `FrameResult`.
- `tracker`: `create_tracker(name)` / `list_trackers()` (ByteTrack, BoT-SORT from ultralytics).
- `identity`: `IdentityParams`, `TrackIdentity` (evidence per track, hysteresis), `frame_identity` (baseline).
- `run`: `track_stream` / `run_clip(frames, detect_fn, ...)`, modes "frame" and "track".
- `mot` / `outputs` / `metrics`: the MOT table format, CSV + JSON outputs, motmetrics + identity accuracy.
- `compare`: `compare_modes` — both modes on a clip with ground truth. `synthetic`: `NoisyDetector`.
Docs: docs/track.md.
"""

from mocha.track.frames import Detections, FrameResult
from mocha.track.identity import IdentityParams, TrackIdentity, frame_identity
from mocha.track.run import run_clip, track_stream
from mocha.track.tracker import create_tracker, list_trackers

__all__ = ["Detections", "FrameResult", "IdentityParams", "TrackIdentity", "create_tracker", "frame_identity",
           "list_trackers", "run_clip", "track_stream"]
