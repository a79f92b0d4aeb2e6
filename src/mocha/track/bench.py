"""`mocha bench track`: per-frame labelling vs track-level identity on generated clips, with real models.

Clips: `mocha world video size=small seed=0` (6 clips × 150 frames; `--quick`: the tiny clip), cached under
`.mocha-cache/`. Gallery: every personal instance of the mochaworld of the same size and seed (the clips'
instances), enrolled at its ground-truth boxes in the first 5-shot episode's support images. Methods:
`mocha` = the distilled bundle ($MOCHA_BENCH_BUNDLE, else runs/demo/bundle from `bash scripts/demo.sh`),
`student` = the shipped stage-1 student alone (its pooled region features, no translator: the SPEC's
student baseline). Both run the Personalizer with its defaults (open-set threshold as the identity rule's
`none_sim`, the coarse class as a prior).

Each frame is detected once at the tracking threshold (`TRACK_CONF`, 0.1: what `Personalizer.track` uses;
timed: that is the per-frame personalized detection time); the per-frame mode sees the boxes at or above
detect's 0.25 (exactly what detecting at 0.25 gives), the tracker all of them (mocha.track.compare), so the
tracker and identity rule are timed alone.
Keys: `idf1_gain` = track-level IDF1 − per-frame IDF1 with the mocha bundle and ByteTrack, in points
(target ≥ 10); `track_overhead` = (detection + tracking) / (detection + per-frame labelling) − 1 on the same
frames in one run (target ≤ 0.10).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mocha.bench.core import BenchResult
from mocha.errors import ConfigError

CACHE = Path(".mocha-cache")
DEMO_BUNDLE = Path("runs/demo/bundle")
WORLD = ("small", 0)  # mochaworld size + seed of the shipped student (and of the clips, seed 0)
CONF = 0.25  # detect's default: the per-frame baseline's threshold


class StudentEngine:
    """The stage-1 student behind the Personalizer's engine interface, embedding a box by its pooled region
    features (no translator): the `student` method of the evaluation."""

    backend = "torch"

    def __init__(self, path: str | Path, imgsz: int, device: str = "cpu") -> None:
        from mocha.io import file_sha256
        from mocha.models.detector import Student

        self.student = Student.load(path).to(device).eval()
        self.device = device
        self.names: list[str] = list(self.student.names)
        self.imgsz, self.dim = int(imgsz), int(self.student.region_dim)
        self.digest = "student-" + file_sha256(Path(path))[:16]
        self.bundle_path = None

    def _tensor(self, image_lb: np.ndarray) -> Any:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(image_lb)).permute(2, 0, 1)[None].float().div_(255.0)
        return x.to(self.device)

    def detect(self, image_lb: np.ndarray, conf: float = 0.1, iou: float = 0.6, max_det: int = 300,
               speed: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.no_grad():
            dets, feats = self.student.detect(self._tensor(image_lb), conf=conf, iou=iou, max_det=max_det)
            emb = self.student.region_features(feats, [dets[0][:, :4]])
        return dets[0].cpu().numpy(), emb.cpu().numpy()

    def embed(self, image_lb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            feats, _ = self.student(self._tensor(image_lb))
            b = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)).to(self.device)
            return self.student.region_features(feats, [b]).cpu().numpy()


def mocha_bundle() -> Path:
    given = os.environ.get("MOCHA_BENCH_BUNDLE")
    path = Path(given) if given else DEMO_BUNDLE
    if not (path / "bundle.json").is_file():
        raise ConfigError(f"no mocha bundle at {path}: run `bash scripts/demo.sh` (writes {DEMO_BUNDLE}) or set "
                          "MOCHA_BENCH_BUNDLE=<bundle folder>")
    return path


def shipped_student_path() -> Path:
    from mocha.demo.shipped import shipped_student

    st = shipped_student(WORLD[0], WORLD[1], 256, 60)
    if st is None:
        raise ConfigError("the shipped stage-1 student (student-small-s0-256px-60ep) is missing")
    return st.path


def enroll_world(p: Any, data: Path, shots: int = 5) -> None:
    """Enroll every personal instance of the world at its ground-truth boxes (first `shots`-shot episode)."""
    from mocha.data import load_dataset, load_episodes, read_split
    from mocha.data.images import load_image, norm_cxcywh_to_xyxy

    spec = load_dataset(data)
    split, episodes = load_episodes(spec, shots, n=1)
    records = read_split(spec, split)
    for inst, idxs in sorted(episodes[0].support.items()):
        images, boxes = [], []
        for i in idxs:
            rec = records[i]
            img = load_image(rec.image)
            gt = norm_cxcywh_to_xyxy(rec.boxes, img.shape[1], img.shape[0])[rec.instance == inst]
            images.append(img)
            boxes.append(gt[0].tolist())
        p.enroll(spec.instances[inst].name, images, boxes=boxes, coarse=spec.coarse_of(inst))


def personalizer(method: str, data: Path) -> Any:
    from mocha.personalize.engine import load_engine
    from mocha.personalize.gallery import Gallery
    from mocha.personalize.personalizer import Personalizer

    if method == "mocha":
        engine = load_engine(mocha_bundle(), device="cpu")
    else:
        engine = StudentEngine(shipped_student_path(), imgsz=256)
    g = Gallery.create(":memory:", engine.digest, engine.bundle_path, engine.dim)
    from mocha.track.tracker import TRACK_CONF

    p = Personalizer(engine, g, conf=TRACK_CONF)
    enroll_world(p, data)
    return p


def detect_clips(p: Any, world: Any) -> tuple[dict[str, list[Any]], float, int]:
    """Every clip's per-frame Detections (columns: p.gallery_ids) and the total detection seconds."""
    import torch

    from mocha.core.progress import progress

    dets: dict[str, list[Any]] = {}
    seconds, frames = 0.0, 0
    bar = progress(total=sum(c.frames for c in world.clips), desc="detect", unit="frame")
    with torch.inference_mode():
        for clip in world.clips:
            out = []
            for img in bar_frames(clip, bar):
                t0 = time.perf_counter()
                out.append(p.detections(img))
                seconds += time.perf_counter() - t0
            dets[clip.name] = out
            frames += len(out)
    bar.close()
    return dets, seconds, frames


def bar_frames(clip: Any, bar: Any) -> Any:
    for img in clip.read_frames():
        yield img
        bar.update()


def replay(dets: dict[str, list[Any]]) -> Any:
    """`compare_world`'s detector argument serving the detections made once by `detect_clips`."""
    def detector(world: Any, clip: Any, gallery: list[int]) -> Any:
        frames = dets[clip.name]
        return lambda image, i: frames[i]

    return detector


def run(out_dir: Path, quick: bool = False) -> BenchResult:
    """Both methods × trackers on the generated clips; see the module docstring."""
    from mocha.data.world.generate import ensure_world
    from mocha.data.world.video import SIZES, generate_video, load_video_world
    from mocha.track.compare import compare_world

    size = "tiny" if quick else "small"
    data = ensure_world(CACHE, SIZES[size].world, WORLD[1])  # the world whose personal instances the clips show
    vpath = CACHE / f"mochavideo-{size}-s{WORLD[1]}"
    if not (vpath / "video.json").is_file():
        generate_video(vpath, size=size, seed=WORLD[1], overwrite=True, progress=True)
    world = load_video_world(vpath)
    bundle = str(mocha_bundle())
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for method in ("student", "mocha"):
        p = personalizer(method, data)
        try:
            by_name = {v["name"]: w for w, v in world.instances.items()}
            names = {d["id"]: d["name"] for d in p.instances()}  # gallery id → instance name
            gallery = [by_name[names[i]] for i in p.gallery_ids]  # similarity column → world instance id
            dets, det_s, n = detect_clips(p, world)
            params = p.identity_params()
            for tracker in ("bytetrack", "botsort"):
                r = compare_world(vpath, replay(dets), tracker=tracker, gallery=gallery, params=params,
                                  frame_conf=CONF)
                overhead = (det_s + r["track"]["seconds"]) / (det_s + r["frame"]["seconds"]) - 1
                for mode in ("frame", "track"):
                    m = r[mode]
                    rows.append({"method": method, "tracker": tracker, "identity": mode, "mota": round(m["mota"], 4),
                                 "idf1": round(m["idf1"], 4), "idsw": int(m["idsw"]),
                                 "id_accuracy": round(m["id_accuracy"], 4),
                                 "ms_per_frame": round(1e3 * (det_s + m["seconds"]) / n, 2)})
                summary[f"{method}_{tracker}_idf1_gain"] = round(r["idf1_gain"], 2)
                summary[f"{method}_{tracker}_track_overhead"] = round(overhead, 4)
            summary[f"{method}_detect_ms"] = round(1e3 * det_s / n, 2)
        finally:
            p.close()
    head = {"idf1_gain": summary["mocha_bytetrack_idf1_gain"],
            "track_overhead": summary["mocha_bytetrack_track_overhead"]}
    summary = head | summary | {"frames": n, "clips": len(world.clips), "video": f"mochaworld video {size} s0",
                                "bundle": bundle, "student": str(shipped_student_path().name), "conf": CONF,
                                "track_conf": p.conf, "coarse_penalty": p.coarse_penalty}
    notes = ("Each frame detected once (timed); both identity modes on the same detections. CPU, "
             f"{os.cpu_count()} cores. idf1_gain / track_overhead: mocha bundle, ByteTrack.")
    return BenchResult("track", rows, summary, targets={"idf1_gain": ">= 10", "track_overhead": "<= 0.10"},
                       notes=notes)
