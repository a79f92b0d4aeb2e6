"""Per-frame labelling vs track-level identity on a clip with ground truth: the same detections, both modes,
scored with the same metrics (identity-keyed MOTA / IDF1 / ID switches and identity accuracy)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mocha.track.identity import IdentityParams
from mocha.track.metrics import identity_accuracy, mot_metrics
from mocha.track.mot import MotTable, read_mot
from mocha.track.outputs import results_table
from mocha.track.run import MODES, DetectFn, run_clip
from mocha.track.tracker import create_tracker

if TYPE_CHECKING:
    from mocha.data.world.video import VideoClip, VideoWorld


def compare_modes(frames: Sequence[Any], gt: MotTable, detect_fn: DetectFn, gallery: Sequence[int],
                  names: list[str], coarse_names: list[str], tracker: str = "bytetrack",
                  params: IdentityParams | None = None, progress: bool = False,
                  frame_conf: float | None = None) -> dict[str, Any]:
    """Run both modes over `frames` (decoded once, reused) and score them against `gt`.

    `frame_conf`: the per-frame mode sees only boxes at or above it (detect's threshold), while the tracker gets
    every box `detect_fn` returns (ByteTrack extends its tracks with low-score boxes; ultralytics tracks at
    conf 0.1 for that reason). NMS keeps the higher box of an overlapping pair, so filtering the low-threshold
    detections is exactly detecting at `frame_conf`.

    `gallery[k]` is the ground-truth instance id of enrolled instance k (`names[k]`). The MOT metrics use the
    shown identity as the hypothesis id (what a user tells objects apart by), so a name flickering between
    look-alikes is an ID switch; track mode also reports the tracker's own metrics (by track id) under
    `tracker`. `idf1_gain` = track IDF1 − frame IDF1, in points."""
    create_tracker(tracker)  # fail fast on a bad name; pay ultralytics' import before the timed runs
    n = len(frames)
    out: dict[str, Any] = {"frames": n, "tracker": tracker}
    for mode in MODES:
        fn = detect_fn if mode == "track" or frame_conf is None else _at_least(detect_fn, frame_conf)
        t0 = time.perf_counter()
        results = run_clip(frames, fn, names, coarse_names, tracker=tracker, identity=mode, params=params,
                           total=n, progress=progress)
        seconds = time.perf_counter() - t0
        by_identity = results_table(results, gallery, by="identity")
        shown = results_table(results, gallery, by="track")
        m = mot_metrics(gt, by_identity, n) | identity_accuracy(gt, shown, n)
        m |= {"seconds": seconds, "fps": n / seconds if seconds > 0 else 0.0}
        if mode == "track":
            m["tracker"] = mot_metrics(gt, shown, n)
        out[mode] = m
    out["idf1_gain"] = 100 * (out["track"]["idf1"] - out["frame"]["idf1"])
    return out


def _at_least(detect_fn: DetectFn, conf: float) -> DetectFn:
    def fn(image: Any, i: int) -> Any:
        d = detect_fn(image, i)
        return d.subset(d.conf >= conf)

    return fn


def compare_world(path: str | Path, detector: Callable[[VideoWorld, VideoClip, list[int]], DetectFn],
                  tracker: str = "bytetrack",
                  gallery: Sequence[int] | None = None, params: IdentityParams | None = None,
                  progress: bool = False, frame_conf: float | None = None) -> dict[str, Any]:
    """`compare_modes` on every clip of a generated video world (`mocha world video`).

    `detector(world, clip, gallery)` builds the clip's detect function, its similarity columns in `gallery` order
    (default: every instance of the world). Per mode: MOTA, IDF1 and identity accuracy averaged over clips,
    ID switches and seconds summed; `idf1_gain` averaged; per-clip results under `clips`."""
    from mocha.data.world.video import load_video_world

    world = load_video_world(path)
    ids = list(gallery) if gallery is not None else sorted(world.instances)
    names = [world.instances[i]["name"] for i in ids]
    clips = []
    for clip in world.clips:
        frames = list(clip.read_frames())
        r = compare_modes(frames, read_mot(clip.gt), detector(world, clip, ids), ids, names, world.names,
                          tracker=tracker, params=params, progress=progress, frame_conf=frame_conf)
        clips.append({"clip": clip.name} | r)
    out: dict[str, Any] = {"tracker": tracker, "clips": clips, "frames": sum(c["frames"] for c in clips)}
    for mode in MODES:
        rows = [c[mode] for c in clips]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("mota", "idf1", "id_accuracy", "id_recall")}
        seconds = float(sum(r["seconds"] for r in rows))
        out[mode] = mean | {"idsw": float(sum(r["idsw"] for r in rows)), "seconds": seconds,
                            "fps": out["frames"] / seconds if seconds > 0 else 0.0}
    out["idf1_gain"] = float(np.mean([c["idf1_gain"] for c in clips]))
    return out
