"""`mocha track`: follow enrolled instances through a video, a frames folder or a webcam into a run folder.

`track(TrackConfig(gallery=..., source=...))` is the verb as a function. Per stream (a video file, the frames
of a folder, a webcam) it writes into `<project>/<name>/` (run-folder policy of mocha.core.runs):
`<stem>.csv` (MOT rows `frame,id,x,y,w,h,score,class,instance`: frame 1-based, id = track id, instance = the
gallery's instance id or -1), `<stem>.json` (every frame's boxes with track id and name) and, with save,
`<stem>.mp4` (boxes, names, track ids, trails). Everything is written to temp files and renamed when the
stream is complete, so an interrupted run leaves no half-written file under a final name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mocha.core.config import option
from mocha.core.runs import unique_stem
from mocha.errors import DataError
from mocha.personalize.engine import EngineOptions
from mocha.personalize.matching import coarse_penalty_option
from mocha.track.run import MODES
from mocha.track.tracker import list_trackers


@dataclass(kw_only=True)
class TrackConfig(EngineOptions):
    """Track enrolled instances through a video, a folder of frames or a webcam (source=0): one identity per
    track. Writes <project>/<name>/ with a MOT CSV, a per-frame JSON and (save) the annotated video."""

    gallery: Path = option(help="gallery file (records the bundle it was made with; `mocha enroll` creates it)",
                           exists=True)
    source: str = option(help="video file, folder of frames (sorted by name) or webcam index (0)")
    tracker: str = option("bytetrack", help="ultralytics tracker", choices=list_trackers())
    identity: str = option("track", help="track: one identity per track; frame: every box on its own (baseline)",
                           choices=list(MODES))
    save: bool = option(True, help="write the annotated video")
    trail: int = option(30, help="frames of each track's path drawn in the video", ge=0)
    fps: float = option(25.0, help="frame rate of the video for frame folders and webcams (videos keep theirs)",
                        gt=0)
    project: Path = option(Path("runs/track"), help="parent folder of runs")
    name: str = option("exp", help="run name: <project>/<name>/")
    exist_ok: bool = option(False, help="reuse <project>/<name>/ instead of name2, name3, ...")
    conf: float | None = option(None, help="detector confidence threshold", ge=0, le=1,
                                default_text="0.1 for identity=track (the tracker's low-score pass), 0.25 for frame")
    iou: float = option(0.6, help="NMS IoU", ge=0, le=1)
    max_det: int = option(300, help="max boxes per frame", ge=1)
    min_similarity: float | None = option(None, help="open-set threshold: a track must be more similar than this "
                                          "to be named", ge=-1, le=1, default_text="the gallery's, else 0.0")
    coarse_penalty: float | None = coarse_penalty_option()
    imgsz: int | None = option(None, help="inference size (enroll at the same size)", ge=32, multiple_of=32,
                               default_text="the bundle's")
    progress: bool = option(True, help="progress in frames/s (a line every few seconds when not on a terminal)")


def track(cfg: TrackConfig) -> Path:
    """`mocha track` as a function; returns the run folder."""
    import itertools
    import time

    from mocha.core.progress import progress
    from mocha.core.runs import run_dir
    from mocha.personalize.personalizer import Personalizer
    from mocha.personalize.sources import Source

    source = Source(cfg.source)  # missing files fail before the model loads or a run folder appears
    with Personalizer.load(cfg.model, cfg.gallery, backend=cfg.backend, device=cfg.device or None,
                           iou=cfg.iou, max_det=cfg.max_det, min_similarity=cfg.min_similarity,
                           coarse_penalty=cfg.coarse_penalty, imgsz=cfg.imgsz) as p:
        frames = p.track(source, stream=True, tracker=cfg.tracker, identity=cfg.identity, conf=cfg.conf)
        t0 = time.perf_counter()
        first = next(frames, None)  # an undecodable video or an absent webcam fails here, before a run folder
        if first is None:
            raise DataError(f"source={cfg.source}: no frames")
        out = run_dir(cfg.project, cfg.name, exist_ok=cfg.exist_ok, mkdir=True)
        writer = TrackRunWriter(out, cfg, p)
        total = len(source)
        bar = progress(total=total or None, desc=f"track ({cfg.tracker})", unit="frame", enable=cfg.progress)
        try:
            for r in itertools.chain([first], frames):
                writer.add(r)
                bar.update()
        except BaseException:
            writer.close(complete=False)  # no half-written file under a final name
            raise
        finally:
            bar.close()
        writer.close()
    seconds = time.perf_counter() - t0
    print(f"{writer.frames} frame(s) at {writer.frames / max(seconds, 1e-9):.1f} frames/s → {out} "
          f"({', '.join(writer.written) or 'nothing written'})")
    return out


class TrackRunWriter:
    """One stream at a time (a video, a frames folder, a webcam) → `<stem>.csv`, `<stem>.json`, `<stem>.mp4`."""

    def __init__(self, out: Path, cfg: TrackConfig, personalizer: Any) -> None:
        self.out, self.cfg = out, cfg
        self.coarse_names = list(personalizer.names)
        self.frames = 0
        self.written: list[str] = []
        self.used: set[str] = set()
        self._stream: dict[str, Any] | None = None

    def _stem(self, r: Any) -> str:
        if r.path and r.path.startswith("webcam:"):
            stem = "webcam" + r.path.split(":", 1)[1]
        elif r.frame is not None and r.path:
            stem = Path(r.path).stem
        else:
            stem = Path(self.cfg.source).stem or "frames"
        return unique_stem(stem, self.used)

    def add(self, r: Any) -> None:
        key = r.path if r.frame is not None else None
        if self._stream is None or self._stream["key"] != key or r.frame == 0:
            self._finish()
            self._start(r, key)
        st = self._stream
        st["frames"].append({"frame": st["n"], "path": r.path, "detections": r.to_json()["detections"]})
        st["rows"].append(_mot_rows(st["n"], r))
        if st["video"] is not None:
            st["video"].write(r)
        st["n"] += 1
        self.frames += 1

    def _start(self, r: Any, key: str | None) -> None:
        from mocha.track.video import TrackVideoWriter, video_fps

        stem = self._stem(r)
        h, w = r.orig_shape
        fps = video_fps(r.path if r.frame is not None else None, default=self.cfg.fps)
        video = TrackVideoWriter(self.out / f"{stem}.mp4", fps, self.cfg.trail) if self.cfg.save else None
        self._stream = {"key": key, "stem": stem, "source": r.path if r.frame is not None else self.cfg.source,
                        "width": int(w), "height": int(h), "fps": fps, "n": 0, "frames": [], "rows": [],
                        "video": video, "instances": dict(r.instances)}

    def _finish(self, complete: bool = True) -> None:
        from mocha.io import write_json
        from mocha.track.mot import concat, write_mot

        st, self._stream = self._stream, None
        if st is None:
            return
        if st["video"] is not None:
            done = st["video"].close(complete)
            if done is not None:
                self.written.append(done.name)
        if not complete:
            return
        write_mot(self.out / f"{st['stem']}.csv", concat(st["rows"]))
        write_json(self.out / f"{st['stem']}.json", {
            "format": "mocha-track/1", "source": st["source"], "tracker": self.cfg.tracker,
            "identity": self.cfg.identity, "width": st["width"], "height": st["height"], "fps": st["fps"],
            "instances": {str(k): v for k, v in sorted(st["instances"].items())}, "coarse_names": self.coarse_names,
            "frames": st["frames"]})
        self.written += [f"{st['stem']}.csv", f"{st['stem']}.json"]

    def close(self, complete: bool = True) -> None:
        self._finish(complete)


def _mot_rows(frame: int, r: Any) -> Any:
    """This frame's MOT rows (frame 1-based; id = track id, -1 in frame mode; instance = gallery id or -1)."""
    from mocha.track.mot import MotTable

    b = r.boxes
    n = len(b)
    tid = b.id if b.id is not None else np.full(n, -1, np.int64)
    return MotTable(np.full(n, frame + 1, np.int64), np.asarray(tid, np.int64), b.xyxy, b.conf,
                    b.cls.astype(np.int64), b.instance.astype(np.int64))
