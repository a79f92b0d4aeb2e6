"""Per-frame labelling vs track-level identity on a clip with ground truth: the same detections, both modes,
scored with the same metrics (identity-keyed MOTA / IDF1 / ID switches and identity accuracy)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from mocha.track.identity import IdentityParams
from mocha.track.metrics import identity_accuracy, mot_metrics
from mocha.track.mot import MotTable
from mocha.track.outputs import results_table
from mocha.track.run import MODES, DetectFn, run_clip
from mocha.track.tracker import create_tracker


def compare_modes(frames: Sequence[Any], gt: MotTable, detect_fn: DetectFn, gallery: Sequence[int],
                  names: list[str], coarse_names: list[str], tracker: str = "bytetrack",
                  params: IdentityParams | None = None, progress: bool = False) -> dict[str, Any]:
    """Run both modes over `frames` (decoded once, reused) and score them against `gt`.

    `gallery[k]` is the ground-truth instance id of enrolled instance k (`names[k]`). The MOT metrics use the
    shown identity as the hypothesis id (what a user tells objects apart by), so a name flickering between
    look-alikes is an ID switch; track mode also reports the tracker's own metrics (by track id) under
    `tracker`. `idf1_gain` = track IDF1 − frame IDF1, in points."""
    create_tracker(tracker)  # fail fast on a bad name; pay ultralytics' import before the timed runs
    n = len(frames)
    out: dict[str, Any] = {"frames": n, "tracker": tracker}
    for mode in MODES:
        t0 = time.perf_counter()
        results = run_clip(frames, detect_fn, names, coarse_names, tracker=tracker, identity=mode, params=params,
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
