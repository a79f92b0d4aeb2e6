"""`mocha data media`: a real dataset in our YAML format from packaged photos and clips (docs/real_data.md).

Pseudo ground truth comes from the shipped NanoDet-g (COCO-80): its detections at `conf` (class-wise NMS
done by its post-processing) are the coarse labels of `base_train` / `base_val`; an image without any is kept
as background (an empty label file), so the detector's "nothing here" is part of the data too.

The personal split follows pedestrians through `vtest.avi` from frame `split_frame` on: ByteTrack (through
`mocha.track`) links NanoDet's person boxes into tracks; a track becomes an instance (`vtest-person-NN`) when it
has at least `min_track` clean frames (box at `conf`, off the image border, overlapping no other person box)
and really walks (its centre travels at least `MIN_TRAVEL` box heights: a road sign detected as a person does
not). Of two tracks that never share a frame and look alike (torso colour histograms closer than any two
tracks that do share a frame, hence are different people) only the longer is kept: one person leaving and
coming back must not become two instances. `per_track` frames, spaced evenly over each track's clean frames,
form the split; in each of them every kept track's box at `conf` is labelled, so the other people are there
as distractors. The base splits take vtest frames only from before `split_frame`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mocha.data import media_sources as ms
from mocha.errors import ConfigError, DataError

FORMAT = "mocha-media/1"
YAML_NAME = "media.yaml"
MANIFEST = "media.json"
BORDER_PX = 2  # a box this close to the frame edge is cut off: not a clean view of its person
MAX_OVERLAP = 0.1  # IoU with another person box above which a view is an occlusion, not clean
LABEL_OVERLAP = 0.3  # a kept track's box overlapping another person box more than this is not labelled at all
MIN_TRAVEL = 0.5  # box heights the centre must travel over a track (walkers do; a static false positive does not)
JPEG_QUALITY = 95
SPLITS = {"base_train": "base/train/images", "base_val": "base/val/images", "personal": "personal/images"}


@dataclass
class Item:
    """One output image: its bytes (or the source file to copy), its labels and where it came from."""

    split: str
    rel: str  # path under the split's images folder
    source: str  # source key (`opencv-doc/vtest.avi`, `skimage/astronaut.png`)
    size: tuple[int, int]  # (width, height)
    labels: list[tuple[int, np.ndarray]]  # (class id, xyxy pixels)
    frame: int | None = None
    data: bytes | None = None  # encoded frame; None = copy `path`
    path: Path | None = None


@dataclass
class TrackInfo:
    """One ByteTrack track over the personal frames, and what the selection made of it."""

    track_id: int
    frames: list[int] = field(default_factory=list)  # every frame with a confirmed box of this track
    clean: list[int] = field(default_factory=list)
    strong: dict[int, np.ndarray] = field(default_factory=dict)  # frame → xyxy of its labelled box
    picks: list[int] = field(default_factory=list)
    status: str = ""
    instance: int = -1


# --------------------------------------------------------------------------------------------- detector
class _Detector:
    """The shipped NanoDet-g on one RGB image → (n,6) xyxy (original pixels), conf, cls."""

    def __init__(self, imgsz: int, iou: float, threads: int) -> None:
        import torch

        from mocha.models.detector import create_student

        if threads:
            torch.set_num_threads(threads)  # on a shared CPU extra threads wait on each other
        self.torch = torch
        self.model = create_student("nanodet-g", []).eval()
        self.names = list(self.model.names)
        self.imgsz, self.iou = imgsz, iou

    def __call__(self, rgb: np.ndarray, conf: float) -> np.ndarray:
        from mocha.data.images import letterbox

        img, lb = letterbox(np.ascontiguousarray(rgb), self.imgsz)
        x = self.torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
        dets, _ = self.model.detect(x, conf=conf, iou=self.iou, max_det=300)
        d = dets[0].numpy().astype(np.float64)
        d[:, :4] = lb.to_original(d[:, :4])
        keep = (d[:, 2] - d[:, 0] >= 1) & (d[:, 3] - d[:, 1] >= 1)  # boxes clipped to nothing at the border
        return d[keep]


def _labels(d: np.ndarray) -> list[tuple[int, np.ndarray]]:
    return [(int(c), box) for box, c in zip(d[:, :4], d[:, 5], strict=True)]


# --------------------------------------------------------------------------------------------- video frames
def _frames(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) of every frame OpenCV decodes."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path}: cannot open video")
    i = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield i, np.ascontiguousarray(bgr[..., ::-1])
            i += 1
    finally:
        cap.release()
    if i == 0:
        raise DataError(f"{path}: no decodable frame")


def _frame_count(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return n


def _jpeg(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DataError("cannot encode a frame as JPEG")
    return buf.tobytes()


def _split_frames(items: list[Item], val_fraction: float) -> None:
    """A clip's base frames: the first part train, the last `val_fraction` val (contiguous, so neighbouring
    frames meet across train/val at one boundary only)."""
    n_val = round(len(items) * val_fraction) if len(items) > 1 else 0
    for k, it in enumerate(items):
        it.split = "base_val" if k >= len(items) - n_val else "base_train"


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


# --------------------------------------------------------------------------------------------- the builder
class MediaBuilder:
    """Builds the dataset in memory (items + manifest), then `write` puts it in a folder."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.items: list[Item] = []
        self.sources: list[dict[str, Any]] = []
        self.tracks: dict[int, TrackInfo] = {}
        self.instances: dict[int, dict[str, Any]] = {}
        self.lookalike: dict[str, Any] = {}

    # ----------------------------------------------------------------- inputs
    def check_inputs(self) -> tuple[list[ms.Photo], list[ms.Skipped], dict[str, Path]]:
        media = Path(self.cfg.media)
        folder = ms.opencv_dir(media)
        hint = "run scripts/fetch_media.sh first (it fetches Debian's opencv-doc examples)"
        if not folder.is_dir():
            raise ConfigError(f"media={media}: no {ms.OPENCV_DIR}/ folder of photos and clips there; {hint}")
        photos, skipped = ms.opencv_photos(media)
        clips = ms.videos(media)
        if not photos and not clips:
            raise ConfigError(f"media={media}: {folder} holds no photo and no clip; {hint}")
        if ms.PERSONAL_VIDEO not in clips:
            raise ConfigError(f"media={media}: {folder / ms.PERSONAL_VIDEO} is missing (the personal split is built "
                              f"from it); {hint}")
        if self.cfg.packages:
            more, more_skipped = ms.package_photos()
            photos, skipped = photos + more, skipped + more_skipped
        return photos, skipped, clips

    # ----------------------------------------------------------------- photos
    def add_photos(self, det: _Detector, photos: list[ms.Photo]) -> None:
        from mocha.core.progress import progress
        from mocha.data.images import load_image

        groups = sorted({p.group for p in photos}, key=lambda g: hashlib.sha256(f"{self.cfg.seed}/{g}".encode())
                        .hexdigest())
        n_val = max(1, round(len(groups) * self.cfg.val_fraction)) if len(groups) > 1 else 0
        val = set(groups[:n_val])
        for p in progress(photos, desc="media photos", unit="img"):
            rgb = load_image(p.path)
            d = det(rgb, self.cfg.conf)
            split = "base_val" if p.group in val else "base_train"
            self.items.append(Item(split, p.key, p.key, (rgb.shape[1], rgb.shape[0]), _labels(d), path=p.path))

    # ----------------------------------------------------------------- clips
    def add_base_clip(self, det: _Detector, name: str, path: Path) -> None:
        """Every `frame_step`-th frame of a base-only clip."""
        from mocha.core.progress import progress

        items = []
        bar = progress(total=_frame_count(path), desc=f"media {name}", unit="frame")
        for i, rgb in _frames(path):
            bar.update()
            if i % self.cfg.frame_step == 0:
                items.append(self._frame_item(det, name, i, rgb))
        bar.close()
        _split_frames(items, self.cfg.val_fraction)
        self.items += items

    def _frame_item(self, det: _Detector, name: str, i: int, rgb: np.ndarray, split: str = "base_train") -> Item:
        d = det(rgb, self.cfg.conf)
        rel = f"{ms.OPENCV_DIR}/{Path(name).stem}/f{i:06d}.jpg"
        return Item(split, rel, f"{ms.OPENCV_DIR}/{name}", (rgb.shape[1], rgb.shape[0]), _labels(d), frame=i,
                    data=_jpeg(rgb))

    def add_personal_clip(self, det: _Detector, name: str, path: Path) -> None:
        """Base frames before `split_frame`; ByteTrack over the person boxes from it on; then the selection."""
        from mocha.core.progress import progress
        from mocha.track.tracker import TRACK_CONF, create_tracker

        cfg = self.cfg
        n = _frame_count(path)
        if n and n < cfg.split_frame + cfg.min_track:
            raise ConfigError(f"split_frame={cfg.split_frame}: {path} has {n} frames, which leaves fewer than "
                              f"min_track={cfg.min_track} for the personal split")
        person = det.names.index("person")
        tracker = create_tracker("bytetrack")
        base, boxes, size = [], {}, (0, 0)
        bar = progress(total=n or None, desc=f"media {name} (detect + track)", unit="frame")
        for i, rgb in _frames(path):
            bar.update()
            if i < cfg.split_frame:
                if i % cfg.frame_step == 0:
                    base.append(self._frame_item(det, name, i, rgb))
                continue
            size = (rgb.shape[1], rgb.shape[0])
            d = det(rgb, TRACK_CONF)  # ByteTrack's second pass needs the weak boxes too
            d = d[d[:, 5] == person]
            ids = tracker.update(d[:, :4], d[:, 4], d[:, 5])
            boxes[i] = (d[:, :5], ids)
        bar.close()
        _split_frames(base, cfg.val_fraction)
        self.items += base
        self._select_tracks(boxes, size)
        self._make_personal(name, path, size, person)

    def _select_tracks(self, boxes: dict[int, tuple[np.ndarray, np.ndarray]], size: tuple[int, int]) -> None:
        cfg = self.cfg
        w, h = size
        for f, (d, ids) in sorted(boxes.items()):
            strong = d[:, 4] >= cfg.conf
            iou = _iou(d[:, :4], d[:, :4])
            for j, t in enumerate(ids):
                if t < 0:
                    continue
                tr = self.tracks.setdefault(int(t), TrackInfo(int(t)))
                tr.frames.append(f)
                others = strong.copy()
                others[j] = False
                overlap = float(iou[j, others].max(initial=0.0))
                if not strong[j] or overlap > LABEL_OVERLAP:
                    continue
                tr.strong[f] = d[j, :4]  # a box worth a label: confident, mostly unoccluded
                x1, y1, x2, y2 = d[j, :4]
                inside = x1 > BORDER_PX and y1 > BORDER_PX and x2 < w - BORDER_PX and y2 < h - BORDER_PX
                if inside and overlap <= MAX_OVERLAP:
                    tr.clean.append(f)
        for tr in self.tracks.values():
            if len(tr.clean) < cfg.min_track:
                tr.status = f"short: {len(tr.clean)} clean frames < min_track={cfg.min_track}"
                continue
            xy = np.array([tr.strong[f] for f in tr.clean])
            centres = (xy[:, :2] + xy[:, 2:]) / 2
            travel = float(np.hypot(*np.ptp(centres, axis=0)))
            height = float(np.median(xy[:, 3] - xy[:, 1]))
            if travel < MIN_TRAVEL * height:
                tr.status = f"static: travels {travel:.0f} px < {MIN_TRAVEL} × box height {height:.0f} px"
                continue
            tr.status = "candidate"
            tr.picks = [tr.clean[k] for k in np.linspace(0, len(tr.clean) - 1, cfg.per_track).round().astype(int)]

    def _make_personal(self, name: str, path: Path, size: tuple[int, int], person: int) -> None:
        """Decode the candidates' picked frames, drop look-alikes, number the instances, label the picked frames."""
        cfg = self.cfg
        cands = [t for t in self.tracks.values() if t.status == "candidate"]
        wanted = {f for t in cands for f in t.picks}
        frames: dict[int, bytes] = {}
        hists: dict[int, list[np.ndarray]] = defaultdict(list)
        for i, rgb in _frames(path):
            if i in wanted:
                frames[i] = _jpeg(rgb)
                for t in cands:
                    if i in t.picks:
                        hists[t.track_id].append(_torso_hist(rgb, t.strong[i]))
        self._drop_lookalikes(cands, {k: np.mean(v, axis=0) for k, v in hists.items()})
        kept = sorted((t for t in cands if t.status == "kept"), key=lambda t: (t.clean[0], t.track_id))
        if not kept:
            raise DataError(f"{path}: no track with {cfg.min_track} clean frames from frame {cfg.split_frame} on "
                            f"({len(self.tracks)} tracks); lower min_track= or split_frame=")
        for k, t in enumerate(kept):
            t.instance, t.status = k, f"kept as instance {k}"
            self.instances[k] = {"name": f"{Path(name).stem}-person-{k:02d}", "coarse": person}
        for f in sorted({f for t in kept for f in t.picks}):
            labels = [(t.instance, t.strong[f]) for t in kept if f in t.strong]
            self.items.append(Item("personal", f"{Path(name).stem}_f{f:06d}.jpg", f"{ms.OPENCV_DIR}/{name}", size,
                                   labels, frame=f, data=frames[f]))

    def _drop_lookalikes(self, cands: list[TrackInfo], hist: dict[int, np.ndarray]) -> None:
        """Of two time-disjoint tracks closer in appearance than any two co-occurring ones, keep the longer."""
        import cv2

        for t in cands:
            t.status = "kept"
        ids = [t.track_id for t in cands]
        frames = {t.track_id: set(t.frames) for t in cands}
        dist = {(a, b): float(cv2.compareHist(hist[a].astype(np.float32), hist[b].astype(np.float32),
                                              cv2.HISTCMP_BHATTACHARYYA))
                for i, a in enumerate(ids) for b in ids[i + 1:]}
        together = [v for (a, b), v in dist.items() if frames[a] & frames[b]]
        limit = min(together) if together else 0.0
        by_id = {t.track_id: t for t in cands}
        dropped = []
        for (a, b), v in sorted(dist.items(), key=lambda kv: kv[1]):
            if v >= limit or frames[a] & frames[b]:
                continue
            ta, tb = by_id[a], by_id[b]
            if ta.status != "kept" or tb.status != "kept":
                continue
            short, long_ = sorted((ta, tb), key=lambda t: (len(t.clean), -t.track_id))
            short.status = f"look-alike of track {long_.track_id} (histogram distance {v:.3f} < {limit:.3f})"
            dropped.append([short.track_id, long_.track_id, round(v, 4)])
        self.lookalike = {"limit": round(limit, 4), "dropped": dropped,
                          "closest_disjoint": round(min((v for (a, b), v in dist.items()
                                                         if not frames[a] & frames[b]), default=math.inf), 4)}

    # ----------------------------------------------------------------- output
    def write(self, out: Path, names: list[str], manifest: dict[str, Any]) -> None:
        import shutil

        import yaml

        from mocha.data.images import xyxy_to_norm_cxcywh
        from mocha.io import write_json

        for it in self.items:
            img = out / SPLITS[it.split] / it.rel
            lab = out / SPLITS[it.split].rsplit("images", 1)[0] / "labels" / Path(it.rel).with_suffix(".txt")
            img.parent.mkdir(parents=True, exist_ok=True)
            lab.parent.mkdir(parents=True, exist_ok=True)
            if it.data is not None:
                img.write_bytes(it.data)
            else:
                shutil.copyfile(it.path, img)
            lines = []
            for c, box in it.labels:
                cx, cy, bw, bh = np.clip(xyxy_to_norm_cxcywh(box, *it.size)[0], 0.0, 1.0)
                lines.append(f"{c} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
            lab.write_text("".join(f"{line}\n" for line in lines))
        count = {"seed": 0, "count": self.cfg.episodes}
        doc = {
            "format": "mocha-dataset/1",
            "root": ".",
            "names": names,
            "instances": self.instances,
            "splits": {s: {"images": p, "label_ids": "instance" if s == "personal" else "coarse"}
                       for s, p in SPLITS.items()},
            "episodes": {"personal": {"1": dict(count), "5": dict(count)}},
        }
        (out / YAML_NAME).write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
        write_json(out / MANIFEST, manifest)

    def counts(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for split in SPLITS:
            its = [it for it in self.items if it.split == split]
            ids = [c for it in its for c, _ in it.labels]
            out[split] = {"images": len(its), "boxes": len(ids), "background": sum(not it.labels for it in its),
                          "from_photos": sum(it.frame is None for it in its),
                          "from_frames": sum(it.frame is not None for it in its),
                          "per_label": dict(sorted(Counter(ids).items()))}  # class ids (base), instance ids (personal)
        return out


def _torso_hist(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Normalised HSV histogram (16 hue × 4 saturation × 4 value) of a person box's torso (middle 60 % of the width,
    15–55 % of the height): clothes tell people apart where faces are a few pixels."""
    import cv2

    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    crop = rgb[int(y1 + 0.15 * bh): max(int(y1 + 0.55 * bh), int(y1 + 0.15 * bh) + 1),
               int(x1 + 0.2 * bw): max(int(x2 - 0.2 * bw), int(x1 + 0.2 * bw) + 1)]
    hsv = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
    return hist / max(hist.sum(), 1.0)


def _file_entry(key: str, path: Path, **more: Any) -> dict[str, Any]:
    from mocha.io import file_sha256

    return {"key": key, "sha256": file_sha256(path), "bytes": path.stat().st_size, **more}


def _versions() -> dict[str, str]:
    import importlib.metadata

    out = {}
    for dist in ("torch", "opencv-python-headless", "opencv-python", "numpy", "ultralytics"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def build_media(cfg: Any) -> Path:
    """Build the dataset into `cfg.out` atomically; returns the path of its YAML. `cfg` is a `MediaConfig`."""
    from mocha.data.dataset import load_dataset, load_episodes
    from mocha.data.records import read_split
    from mocha.io import atomic_dir, file_sha256
    from mocha.models.nanodet import shipped_path

    out = Path(cfg.out)
    if out.exists() and not cfg.exist_ok:
        raise ConfigError(f"out={out}: already exists; pass exist_ok=true to replace it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={out}: exists and is not a folder")
    b = MediaBuilder(cfg)
    photos, skipped, clips = b.check_inputs()
    det = _Detector(cfg.imgsz, cfg.iou, cfg.threads)
    b.add_photos(det, photos)
    for name, path in clips.items():
        if name == ms.PERSONAL_VIDEO:
            b.add_personal_clip(det, name, path)
        else:
            b.add_base_clip(det, name, path)
    used = defaultdict(set)
    for it in b.items:
        used[it.source].add(it.split)
    sources = [_file_entry(p.key, p.path, origin=p.origin, group=p.group, licence=p.licence, version=p.version,
                           splits=sorted(used[p.key])) for p in photos]
    sources += [_file_entry(f"{ms.OPENCV_DIR}/{n}", p, origin=ms.OPENCV_DIR, licence=ms.OPENCV_LICENCE,
                            role=ms.VIDEOS[n], frames=_frame_count(p), splits=sorted(used[f"{ms.OPENCV_DIR}/{n}"]))
                for n, p in clips.items()]
    fetched = ms.opencv_dir(cfg.media) / ".fetched"
    counts = b.counts()
    manifest = {
        "format": FORMAT,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in cfg.to_dict().items()
                     if k not in ("out", "exist_ok")},
        "rules": {"min_side": ms.MIN_SIDE, "border_px": BORDER_PX, "max_overlap": MAX_OVERLAP,
                  "min_travel": MIN_TRAVEL, "jpeg_quality": JPEG_QUALITY, "tracker": "bytetrack"},
        "detector": {"student": "nanodet-g", "checkpoint_sha256": file_sha256(shipped_path())},
        "versions": _versions(),
        "opencv_doc": fetched.read_text().strip() if fetched.is_file() else "",
        "counts": counts,
        "instances": [{"id": t.instance, "name": b.instances[t.instance]["name"], "track_id": t.track_id,
                       "first_frame": t.frames[0], "last_frame": t.frames[-1], "clean_frames": len(t.clean),
                       "picked_frames": t.picks,
                       "images": sum(1 for it in b.items if it.split == "personal"
                                     and any(c == t.instance for c, _ in it.labels))}
                      for t in sorted(b.tracks.values(), key=lambda t: t.instance) if t.instance >= 0],
        "tracks": [{"track_id": t.track_id, "frames": len(t.frames), "clean_frames": len(t.clean), "status": t.status}
                   for t in sorted(b.tracks.values(), key=lambda t: t.track_id) if t.clean],
        "lookalike": b.lookalike,
        "sources": sources,
        "skipped": [asdict(s) for s in skipped],
        "images": {s: [{"image": it.rel, "source": it.source, "frame": it.frame, "boxes": len(it.labels)}
                       for it in sorted(b.items, key=lambda it: it.rel) if it.split == s] for s in SPLITS},
    }
    try:
        with atomic_dir(out) as tmp:
            b.write(tmp, det.names, manifest)
            spec = load_dataset(tmp / YAML_NAME)  # the result loads and its 5-shot draw works, or nothing is renamed
            for split in SPLITS:
                read_split(spec, split)
            load_episodes(spec, 5, n=1, split="personal")
    except PermissionError as exc:
        raise ConfigError(f"out={out}: cannot write ({exc.strerror})") from None
    return out / YAML_NAME


def summary(out: Path) -> str:
    """A few lines on a built dataset, from its manifest."""
    m = json.loads((Path(out) / MANIFEST).read_text())
    lines = [f"{s}: {c['images']} images ({c['from_photos']} photos, {c['from_frames']} frames), {c['boxes']} boxes, "
             f"{c['background']} background" for s, c in m["counts"].items()]
    per = [i["images"] for i in m["instances"]]
    lines.append(f"personal: {len(per)} instances, {min(per)}–{max(per)} images each")
    lines.append(f"skipped sources: {len(m['skipped'])} (reasons in {MANIFEST})")
    return "\n".join(lines)
