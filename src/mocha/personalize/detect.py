"""`mocha detect`: personalized detection over an image, a folder, a glob or a video into a run folder.

`detect(DetectConfig(gallery=..., source=...))` is the verb as a function. It reads inputs through the same
pipeline as `Personalizer.predict` (mocha.personalize.sources) and writes `<project>/<name>/` (run-folder
policy of mocha.core.runs): per image `<stem>.json` (`Results.to_json()`) and, with save, the annotated
image; per video one `<stem>.json` with `frames: [{frame, detections}]` and, with save, `<stem>.mp4`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mocha.core.config import option
from mocha.core.runs import unique_stem
from mocha.personalize.engine import EngineOptions
from mocha.personalize.matching import coarse_penalty_option


@dataclass(kw_only=True)
class DetectConfig(EngineOptions):
    """Detect and name enrolled instances; writes <project>/<name>/ with a JSON per input
    (and annotated images / videos with save)."""

    gallery: Path = option(help="gallery file (records the bundle it was made with; `mocha enroll` creates it)",
                           exists=True)
    source: str = option(help="image, folder, glob pattern ('imgs/*.jpg') or video")
    save: bool = option(True, help="write annotated images / videos beside the JSON")
    project: Path = option(Path("runs/detect"), help="parent folder of runs")
    name: str = option("exp", help="run name: <project>/<name>/")
    exist_ok: bool = option(False, help="reuse <project>/<name>/ instead of name2, name3, ...")
    conf: float = option(0.25, help="detector confidence threshold", ge=0, le=1)
    iou: float = option(0.6, help="NMS IoU", ge=0, le=1)
    max_det: int = option(300, help="max boxes per image", ge=1)
    min_similarity: float | None = option(None, help="below this cosine similarity a box is 'unknown <coarse>'",
                                          ge=-1, le=1, default_text="the gallery's, else 0.0")
    coarse_penalty: float | None = coarse_penalty_option()
    progress: bool = option(True, help="progress bar (a line every few seconds when not on a terminal)")


def detect(cfg: DetectConfig) -> Path:
    """`mocha detect` as a function; returns the run folder."""
    from mocha.core.progress import progress
    from mocha.core.runs import run_dir
    from mocha.personalize.personalizer import Personalizer
    from mocha.personalize.sources import Source

    source = Source(cfg.source)  # missing files fail before the model loads or a run folder appears
    out = run_dir(cfg.project, cfg.name, exist_ok=cfg.exist_ok, mkdir=True)
    with Personalizer.load(cfg.model, cfg.gallery, backend=cfg.backend, device=cfg.device or None, conf=cfg.conf,
                           iou=cfg.iou, max_det=cfg.max_det, min_similarity=cfg.min_similarity,
                           coarse_penalty=cfg.coarse_penalty) as p:
        total = len(source)
        writer = RunWriter(out, cfg.save)
        try:
            for r in progress(p.predict(source, stream=True), total=total, desc="detect", unit="img",
                              enable=cfg.progress and total > 1):
                writer.add(r)
        except BaseException:
            writer.close(complete=False)  # no half-written video under its final name
            raise
        writer.close()
    print(f"{writer.inputs} result(s) → {out}")
    return out


class RunWriter:
    """Writes Results into a run folder: one JSON (+ annotated image) per image, one JSON (+ mp4) per video.

    Stems are made unique (`a.jpg` and `a.png` → `a`, `a_2`); a video is written to a temp file and renamed
    when complete, so an interrupted run never leaves a half video under the final name."""

    def __init__(self, out: Path, save: bool) -> None:
        self.out, self.save = out, save
        self.used: set[str] = set()
        self.inputs = 0
        self.video: dict[str, Any] | None = None

    def _stem(self, path: str | None) -> str:
        return unique_stem(Path(path).stem if path else "image", self.used)

    def add(self, r: Any) -> None:
        from mocha.io import write_json

        if r.frame is None:
            self._finish_video()
            stem = self._stem(r.path)
            if self.save:
                ext = ".jpg" if r.path and Path(r.path).suffix.lower() in (".jpg", ".jpeg") else ".png"
                r.save(self.out / f"{stem}{ext}")
            write_json(self.out / f"{stem}.json", r.to_json())
            self.inputs += 1
            return
        if self.video is None or self.video["source"] != r.path or r.frame == 0:
            self._finish_video()
            self._start_video(r)
        v = self.video
        v["frames"].append({"frame": r.frame, "detections": r.to_json()["detections"]})
        if v["writer"] is not None:
            import cv2

            v["writer"].write(cv2.cvtColor(r.plot(), cv2.COLOR_RGB2BGR))

    def _start_video(self, r: Any) -> None:
        stem = self._stem(r.path)
        h, w = r.orig_shape
        fps = _fps(r.path)
        writer, tmp = None, self.out / f".{stem}.tmp.mp4"
        if self.save:
            import cv2

            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        self.video = {"stem": stem, "source": r.path, "width": w, "height": h, "fps": fps, "frames": [],
                      "writer": writer, "tmp": tmp}

    def _finish_video(self, complete: bool = True) -> None:
        from mocha.io import write_json

        v, self.video = self.video, None
        if v is None:
            return
        try:
            if v["writer"] is not None:
                v["writer"].release()
                if complete:
                    os.replace(v["tmp"], self.out / f"{v['stem']}.mp4")
            if complete:
                write_json(self.out / f"{v['stem']}.json", {k: v[k] for k in ("source", "width", "height", "fps",
                                                                               "frames")})
                self.inputs += 1
        finally:
            if v["tmp"].exists():
                v["tmp"].unlink()

    def close(self, complete: bool = True) -> None:
        self._finish_video(complete)


def _fps(path: str | None) -> float:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 25.0)
    finally:
        cap.release()
