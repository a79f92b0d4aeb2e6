"""The Personalizer: enroll personal instances from a few images, then detect and name them.

    p = Personalizer.load("runs/distill/a/best", gallery="my.gallery")      # or backend="onnx"
    p.enroll("my mug", ["mug1.jpg", "mug2.jpg"], boxes=[[10, 20, 200, 220], None])
    r = p.detect("kitchen.jpg"); r.names, r.boxes, r.scores; r.plot(); r.to_json()

Student and translator stay frozen: enrolling stores support embeddings and a prototype in the gallery,
nothing is retrained. A detected box is compared with the prototypes of its coarse class (conditional
learner, SPEC); its cosine similarity to the chosen prototype is the open-set signal: below
`min_similarity` it is reported as `unknown <coarse>`. `instance_scores` map similarity to a probability
with a logistic calibration (`calibration = {"slope", "center"}`, fitted by `tune_min_similarity`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mocha.data.images import letterbox, load_image
from mocha.errors import ConfigError, DataError
from mocha.personalize.gallery import Gallery, Support, file_sha256
from mocha.personalize.results import Results

log = logging.getLogger(__name__)

# Measured on mochaworld "small" with the demo's bundle (docs/personalize.md): strict mAP is flat (12.74-12.75 %)
# for thresholds -0.2 … 0.0 and falls above; 0.0 ("no more similar than an unrelated region") is the top of that
# plateau. The calibration is the logistic fit of the same run.
DEFAULT_MIN_SIMILARITY = 0.0
DEFAULT_CALIBRATION = {"slope": 5.23, "center": 0.707}
BACKENDS = ("torch", "onnx")
BOX_TOLERANCE = 1.0  # pixels a user box may stick out of the image (rounding of hand-made boxes)


# ---------------------------------------------------------------------------------------------- engines
class TorchEngine:
    """A PyTorch bundle behind the engine interface (letterboxed uint8 images in, numpy out)."""

    backend = "torch"

    def __init__(self, bundle: Any, imgsz: int | None = None) -> None:
        self.bundle = bundle.eval()
        self.names: list[str] = list(bundle.student.names)
        self.imgsz = int(imgsz or (bundle.config or {}).get("imgsz", 640))
        if self.imgsz % 32:
            raise ConfigError(f"imgsz must be a multiple of 32, got {self.imgsz}")
        self.digest: str = bundle.digest
        self.dim = int(bundle.dim)
        self.bundle_path = str(Path(bundle.path).resolve()) if bundle.path else None

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, imgsz: int | None = None) -> TorchEngine:
        import torch

        from mocha.models.bundle import load_bundle

        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(load_bundle(path, device=dev), imgsz)

    def _tensor(self, image_lb: np.ndarray) -> Any:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(image_lb)).permute(2, 0, 1)[None].float().div_(255.0)
        return x.to(self.bundle.device)

    def detect_plain(self, image_lb: np.ndarray, conf: float = 0.1, iou: float = 0.6, max_det: int = 300) -> np.ndarray:
        import torch

        with torch.no_grad():
            dets, _ = self.bundle.student.detect(self._tensor(image_lb), conf=conf, iou=iou, max_det=max_det)
        return dets[0].cpu().numpy()

    def detect(
        self, image_lb: np.ndarray, conf: float = 0.1, iou: float = 0.6, max_det: int = 300
    ) -> tuple[np.ndarray, np.ndarray]:
        dets, embs = self.bundle.detect_and_embed(self._tensor(image_lb), conf=conf, iou=iou, max_det=max_det)
        return dets[0].cpu().numpy(), embs[0].cpu().numpy()

    def embed(self, image_lb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        import torch

        b = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4))
        return self.bundle.embed_boxes(self._tensor(image_lb), [b]).cpu().numpy()


def load_engine(path: str | Path, backend: str = "torch", device: str | None = None, threads: int | None = None,
                imgsz: int | None = None) -> Any:
    """A TorchEngine for a bundle folder, or an OnnxEngine for an export folder (`mocha export`)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    path = Path(path)
    if backend == "onnx":
        from mocha.export.onnx_runner import OnnxEngine

        if not (path / "export.json").exists() and (path / "bundle.json").exists():
            raise ConfigError(f"{path} is a bundle; backend='onnx' needs its ONNX export folder "
                              f"(`mocha export --bundle {path} --format onnx`)")
        engine = OnnxEngine(path, threads=threads)
        if imgsz and int(imgsz) != engine.imgsz:
            raise ConfigError(f"{path}: exported for imgsz {engine.imgsz}, not {imgsz}; export again")
        return engine
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return TorchEngine.load(path, device=device, imgsz=imgsz)


# ---------------------------------------------------------------------------------------------- inputs
def read_source(image: Any, digest: bool = True) -> tuple[np.ndarray, str, str]:
    """(RGB uint8 image, source label, sha256 of the file or pixels; "" unless `digest`) from a path, an array
    or a PIL image."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        img = load_image(path)
        return img, str(path), file_sha256(path) if digest else ""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL image
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise DataError(f"<array>: expected an (H, W, 3) RGB image, got shape {image.shape}")
        if image.dtype != np.uint8:
            if np.issubdtype(image.dtype, np.floating) and np.nanmax(image) <= 1.0:
                image = (image * 255.0).round()
            image = np.clip(image, 0, 255).astype(np.uint8)
        image = np.ascontiguousarray(image)
        return image, "<array>", hashlib.sha256(image.tobytes()).hexdigest() if digest else ""
    raise DataError(f"cannot read an image from {type(image).__name__}; give a path, an RGB array or a PIL image")


def check_box(box: Sequence[float], w: int, h: int, source: str) -> np.ndarray:
    """A user box (x1,y1,x2,y2 original pixels) inside the image, else DataError naming the source."""
    try:
        b = np.asarray(box, dtype=np.float64).reshape(4)
    except (TypeError, ValueError):
        raise DataError(f"{source}: box must be 4 numbers x1,y1,x2,y2, got {box!r}") from None
    x1, y1, x2, y2 = b
    if not np.isfinite(b).all() or x2 <= x1 or y2 <= y1:
        raise DataError(f"{source}: box {list(b)} is empty or not x1<x2, y1<y2")
    t = BOX_TOLERANCE
    if x1 < -t or y1 < -t or x2 > w + t or y2 > h + t:
        raise DataError(f"{source}: box {list(b)} lies outside the {w}×{h} image")
    return b.clip(0, [w, h, w, h]).astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box a (4,) with boxes b (n,4)."""
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(area, 1e-9)


def calibrated(similarity: np.ndarray, calibration: dict[str, float]) -> np.ndarray:
    """Probability that a named box is right, logistic in the similarity; NaN similarity → 0."""
    s = np.nan_to_num(np.asarray(similarity, np.float64), nan=-np.inf)
    z = float(calibration["slope"]) * (s - float(calibration["center"]))
    return (1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))).astype(np.float32)


@dataclass
class EnrollReport:
    """What enroll did: the instance, its coarse class, and per image which box was used and why."""

    name: str
    coarse: str
    shots: list[dict[str, Any]]

    def lines(self) -> list[str]:
        out = [f"enrolled {self.name!r} ({self.coarse}) with {len(self.shots)} shot(s):"]
        for s in self.shots:
            how = "your box" if s["box_source"] == "user" else f"detector's best box (conf {s['det_conf']:.2f})"
            out.append(f"  {s['source']}: {how} {[round(v, 1) for v in s['box']]}")
        return out


# ---------------------------------------------------------------------------------------------- personalizer
class Personalizer:
    """Enroll / remove / list personal instances and detect them; all state lives in the gallery."""

    def __init__(
        self,
        engine: Any,
        gallery: Gallery,
        min_similarity: float | None = None,
        conf: float = 0.25,
        iou: float = 0.6,
        max_det: int = 300,
        enroll_conf: float = 0.05,
    ) -> None:
        from mocha.core.learners import ConditionalLearner

        gallery.check_bundle(engine.digest, getattr(engine, "bundle_path", "") or "")
        if gallery.dim != engine.dim:
            raise ConfigError(f"{gallery.path}: stores {gallery.dim}-d embeddings, the model gives {engine.dim}-d")
        self.engine, self.gallery = engine, gallery
        self.names = list(engine.names)
        ms = gallery.get_setting("min_similarity") if min_similarity is None else min_similarity
        self.min_similarity = float(DEFAULT_MIN_SIMILARITY if ms is None else ms)
        self.calibration = dict(gallery.get_setting("calibration") or DEFAULT_CALIBRATION)
        self.conf, self.iou, self.max_det, self.enroll_conf = float(conf), float(iou), int(max_det), float(enroll_conf)
        self.learner = ConditionalLearner(fallback="drop")
        for rec in gallery.instances(supports=True):
            self.learner.add(rec.name, rec.coarse, np.stack([s.embedding for s in rec.supports]))
        self._protos: np.ndarray | None = None

    @classmethod
    def load(
        cls,
        bundle: str | Path | None = None,
        gallery: str | Path | None = None,
        backend: str = "torch",
        device: str | None = None,
        threads: int | None = None,
        imgsz: int | None = None,
        **kw: Any,
    ) -> Personalizer:
        """Open (or create) `gallery` for `bundle` (a bundle folder; for backend="onnx" its export folder).

        With an existing gallery the bundle may be omitted (the gallery records its path); with none the
        gallery lives in memory. Keywords: min_similarity, conf, iou, max_det, enroll_conf.
        """
        g = None
        if gallery is not None and str(gallery) != ":memory:" and Path(gallery).exists():
            g = Gallery(gallery)
            if bundle is None:
                if backend == "onnx":
                    g.close()
                    raise ConfigError("backend='onnx' needs the export folder (bundle=... / --onnx)")
                bundle = g.bundle_path
                if not bundle:
                    g.close()
                    raise ConfigError(f"{gallery}: gallery records no bundle path; give the bundle")
        if bundle is None:
            raise ConfigError("no bundle: give the bundle folder (a new gallery is tied to it)")
        try:
            engine = load_engine(bundle, backend, device=device, threads=threads, imgsz=imgsz)
        except BaseException:
            if g is not None:
                g.close()
            raise
        if g is None:
            g = Gallery.create(gallery if gallery is not None else ":memory:", engine.digest,
                               getattr(engine, "bundle_path", None), engine.dim)
        try:
            return cls(engine, g, **kw)
        except BaseException:
            g.close()
            raise

    def close(self) -> None:
        self.gallery.close()

    def __enter__(self) -> Personalizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ gallery
    def instances(self) -> list[dict[str, Any]]:
        """Enrolled instances: name, coarse, shots, dates."""
        return [rec.summary() for rec in self.gallery.instances()]

    def remove(self, name: str) -> None:
        """Forget an instance (ConfigError if unknown); nothing is retrained."""
        self.gallery.remove(name)
        if name in self.learner:  # absent when another process enrolled it after we loaded
            self.learner.remove(name)
        self._protos = None

    def coarse_id(self, coarse: int | str) -> int:
        """Coarse class id from an id or a name of the detector's vocabulary."""
        if isinstance(coarse, (int, np.integer)) or (isinstance(coarse, str) and coarse.isdigit()):
            c = int(coarse)
            if not 0 <= c < len(self.names):
                raise ConfigError(f"coarse class id {c} out of range 0..{len(self.names) - 1}")
            return c
        if coarse not in self.names:
            raise ConfigError(f"unknown coarse class {coarse!r}; the detector knows: {', '.join(self.names)}")
        return self.names.index(coarse)

    def enroll(
        self,
        name: str,
        images: Any,
        boxes: Sequence[Sequence[float] | None] | Sequence[float] | None = None,
        coarse: int | str | None = None,
        append: bool = False,
    ) -> EnrollReport:
        """Enroll `name` from one or more images (paths / arrays). `boxes`: one xyxy box (original pixels) per
        image, None entries (or boxes=None) use the detector's best box. `coarse`: class name or id (default:
        from the detector). Refuses a duplicate name unless append=True. One gallery transaction."""
        name = (name or "").strip() if isinstance(name, str) else ""
        if not name:
            raise ConfigError("instance name is empty")
        if name.lower().startswith("unknown "):
            raise ConfigError(f"instance name {name!r} is reserved for open-set boxes ('unknown <coarse>')")
        if name in self.learner and not append:
            raise ConfigError(f"instance {name!r} is already enrolled ({self.learner.shots(name)} shots); "
                              "use --append (append=True) to add shots, or remove it first")
        imgs = [images] if isinstance(images, (str, Path, np.ndarray)) or hasattr(images, "convert") else list(images)
        if not imgs:
            raise ConfigError(f"instance {name!r}: no images given")
        box_list = _box_list(boxes, len(imgs))
        want = self.coarse_id(coarse) if coarse is not None else None
        if append and name in self.learner:
            have = self.learner.coarse_of(name)
            if want is not None and want != have:
                raise ConfigError(f"instance {name!r} is enrolled as {self.names[have]!r}, not {self.names[want]!r}")
            want = have
        shots, votes = [], np.zeros(len(self.names))
        for img_in, box in zip(imgs, box_list, strict=True):
            img, source, sha = read_source(img_in)
            h, w = img.shape[:2]
            lb_img, lb = letterbox(img, self.engine.imgsz)
            dets, embs = self.engine.detect(lb_img, conf=self.enroll_conf, iou=self.iou, max_det=300)
            if box is not None:
                b = check_box(box, w, h, source)
                emb = self.engine.embed(lb_img, lb.to_letterbox(b[None]))[0]
                shot = {"source": source, "sha256": sha, "box": b.tolist(), "box_source": "user", "det_conf": None,
                        "embedding": emb}
                if len(dets):  # the coarse class of the detection that best overlaps the user's box
                    ious = _iou(lb.to_letterbox(b[None])[0], dets[:, :4])
                    j = int(ious.argmax())
                    if ious[j] >= 0.3:
                        votes[int(dets[j, 5])] += float(dets[j, 4]) * ious[j]
            else:
                cand = np.arange(len(dets)) if want is None else np.flatnonzero(dets[:, 5].astype(int) == want)
                if len(cand) == 0:
                    what = "object" if want is None else repr(self.names[want])
                    raise DataError(f"{source}: the detector found no {what} (conf ≥ {self.enroll_conf:g}); "
                                    "give a box (--box x1,y1,x2,y2)")
                j = int(cand[np.argmax(dets[cand, 4])])
                b = lb.to_original(dets[j, :4][None])[0]
                votes[int(dets[j, 5])] += float(dets[j, 4])
                shot = {"source": source, "sha256": sha, "box": b.tolist(), "box_source": "detector",
                        "det_conf": float(dets[j, 4]), "embedding": embs[j]}
            shots.append(shot)
        if want is None:
            if not votes.any():
                raise ConfigError(f"instance {name!r}: cannot tell its coarse class from the detector (no detection "
                                  "overlaps the boxes); give coarse=... (--coarse)")
            want = int(votes.argmax())
        supports = [Support(s["source"], s["sha256"], s["box"], s["box_source"],
                            np.asarray(s["embedding"], np.float32), s["det_conf"]) for s in shots]
        self.gallery.add(name, want, self.names[want], supports, append=append)
        self.learner.add(name, want, np.stack([s.embedding for s in supports]))
        self._protos = None
        return EnrollReport(name, self.names[want], [{k: v for k, v in s.items() if k != "embedding"} for s in shots])

    # ------------------------------------------------------------------ detection
    def _prototypes(self) -> np.ndarray:
        if self._protos is None:
            if len(self.learner):
                p = self.learner.prototypes().numpy().astype(np.float32)
                self._protos = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
            else:
                self._protos = np.zeros((0, self.engine.dim), np.float32)
        return self._protos

    def identify(self, embeddings: np.ndarray, coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest instance index (into learner.instances(); -1 none) and cosine similarity (NaN none) per box."""
        n = len(embeddings)
        if n == 0 or not len(self.learner):
            return np.full(n, -1), np.full(n, np.nan, np.float32)
        import torch

        idx, _ = self.learner.predict_index(torch.as_tensor(embeddings, dtype=torch.float32),
                                            torch.as_tensor(coarse).long())
        idx = idx.numpy()
        e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        sim = np.full(n, np.nan, np.float32)
        has = idx >= 0
        sim[has] = np.einsum("nd,nd->n", e[has], self._prototypes()[idx[has]])
        return idx, sim

    def detect(self, source: Any, conf: float | None = None, min_similarity: float | None = None) -> Results:
        """Detect and name enrolled instances in one image (path, RGB array or PIL image)."""
        img, label, _ = read_source(source, digest=False)
        lb_img, lb = letterbox(img, self.engine.imgsz)
        dets, embs = self.engine.detect(lb_img, conf=self.conf if conf is None else conf, iou=self.iou,
                                        max_det=self.max_det)
        return self.results(img, lb, dets, embs, path=None if label == "<array>" else label,
                            min_similarity=min_similarity)

    def results(self, img: np.ndarray, lb: Any, dets: np.ndarray, embs: np.ndarray, path: str | None = None,
                min_similarity: float | None = None) -> Results:
        """Build Results from engine output (letterboxed detections + embeddings) for an original image."""
        thr = self.min_similarity if min_similarity is None else float(min_similarity)
        coarse = dets[:, 5].astype(np.int64)
        idx, sim = self.identify(embs, coarse)
        ids = self.learner.instances()
        known = (idx >= 0) & (sim >= thr)
        inst_score = np.where(known, calibrated(sim, self.calibration), 0.0).astype(np.float32)
        det = dets[:, 4].astype(np.float32)
        coarse_names = [self.names[c] if 0 <= c < len(self.names) else str(c) for c in coarse.tolist()]
        instances = [ids[i] if k else None for i, k in zip(idx.tolist(), known.tolist(), strict=True)]
        names = [inst if inst is not None else f"unknown {cn}" for inst, cn in zip(instances, coarse_names,
                                                                                   strict=True)]
        return Results(
            image=img, boxes=lb.to_original(dets[:, :4]) if len(dets) else np.zeros((0, 4), np.float32),
            names=names, instances=instances, coarse=coarse, coarse_names=coarse_names, det_scores=det,
            similarity=sim, instance_scores=inst_score,
            scores=np.where(known, det * inst_score, det).astype(np.float32), path=path,
        )


def _box_list(boxes: Any, n: int) -> list[Any]:
    """Normalize `boxes` to one entry (4 numbers or None) per image."""
    if boxes is None:
        return [None] * n
    arr = boxes
    if isinstance(boxes, np.ndarray):
        arr = boxes.tolist()
    if len(arr) == 4 and all(isinstance(v, (int, float, np.integer, np.floating)) for v in arr):
        if n != 1:
            raise ConfigError(f"one box given for {n} images; give one box per image (None = detector's best box)")
        return [list(arr)]
    if len(arr) != n:
        raise ConfigError(f"{len(arr)} boxes for {n} images; give one box per image (None = detector's best box)")
    return list(arr)


# ---------------------------------------------------------------------------------------------- open-set tuning
@dataclass
class QueryImage:
    """One query image for tuning: detections with their nearest instance (index into `instances`, -1 none),
    cosine similarity, detector confidence, and the ground truth (instance indices)."""

    boxes: np.ndarray
    conf: np.ndarray
    nearest: np.ndarray
    similarity: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray


def fit_calibration(episodes: Sequence[Sequence[QueryImage]], iou: float = 0.5) -> dict[str, float]:
    """Logistic fit of P(nearest instance is right | similarity) over named boxes that hit a ground-truth
    object (IoU ≥ iou); boxes on background carry no identity evidence. Falls back to the default when the
    data has only one outcome."""
    from sklearn.linear_model import LogisticRegression

    sims, ok = [], []
    for q in (q for ep in episodes for q in ep):
        for i in np.flatnonzero(q.nearest >= 0):
            if len(q.gt_boxes) == 0:
                continue
            ious = _iou(q.boxes[i], q.gt_boxes)
            j = int(ious.argmax())
            if ious[j] >= iou:
                sims.append(float(q.similarity[i]))
                ok.append(int(q.gt_labels[j] == q.nearest[i]))
    if len(set(ok)) < 2:
        return dict(DEFAULT_CALIBRATION)
    lr = LogisticRegression(C=10.0).fit(np.asarray(sims)[:, None], np.asarray(ok))
    slope = float(lr.coef_[0, 0])
    if slope <= 0:
        return dict(DEFAULT_CALIBRATION)
    return {"slope": slope, "center": float(-lr.intercept_[0] / slope)}


def tune_min_similarity(
    episodes: Sequence[Sequence[QueryImage]],
    enrolled: Sequence[Sequence[int]],
    candidates: Sequence[float] | None = None,
    calibration: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Choose `min_similarity` maximizing the mean strict mAP (COCO mAP over all enrolled instances, score =
    confidence × calibrated instance score; mocha.core.metrics.strict_map) over episodes.

    `episodes[e]`: that episode's query images; `enrolled[e]`: its enrolled instance indices. The calibration
    is fitted on the same data unless given. Returns {"min_similarity", "strict_map", "calibration", "table"}.
    """
    from mocha.core.metrics import ImagePreds, ImageTruth, strict_map

    if len(episodes) != len(enrolled) or not episodes:
        raise ConfigError("tune_min_similarity: give one enrolled list per episode (and at least one episode)")
    cal = calibration or fit_calibration(episodes)
    cands = list(np.round(np.arange(-0.2, 1.0, 0.05), 3)) if candidates is None else [float(c) for c in candidates]
    table = []
    for t in cands:
        maps = []
        for ep, ids in zip(episodes, enrolled, strict=True):
            preds, truths = [], []
            for q in ep:
                known = (q.nearest >= 0) & (q.similarity >= t)
                preds.append(ImagePreds(q.boxes, q.conf, np.where(known, calibrated(q.similarity, cal), 0.0),
                                        np.where(known, q.nearest, -1)))
                truths.append(ImageTruth(q.gt_boxes, q.gt_labels))
            m = strict_map(preds, truths, ids)
            if np.isfinite(m):
                maps.append(m)
        table.append({"min_similarity": t, "strict_map": float(np.mean(maps)) if maps else float("nan")})
    scores = np.nan_to_num([r["strict_map"] for r in table], nan=-1.0)
    ties = [r for r, m in zip(table, scores, strict=True) if m >= scores.max() - 1e-6]
    best = ties[len(ties) // 2]  # the middle of the best plateau: robust to small shifts in similarity
    return {"min_similarity": best["min_similarity"], "strict_map": best["strict_map"], "calibration": cal,
            "table": table}


def tune_on_dataset(
    engine: Any, data: str | Path, shots: int = 1, episodes: int = 10, seed: int = 0, conf: float = 0.1,
    iou: float = 0.6, max_det: int = 300, progress: bool = True,
) -> dict[str, Any]:
    """Run `tune_min_similarity` on a dataset's episodes (e.g. mochaworld small) with a loaded engine.

    Each image is detected/embedded once (cached); per episode the supports' ground-truth boxes are enrolled
    into a fresh conditional learner, as `Personalizer.enroll` does."""
    import torch
    from tqdm import tqdm

    from mocha.core.learners import ConditionalLearner
    from mocha.data import load_dataset, load_episodes, read_split
    from mocha.data.images import norm_cxcywh_to_xyxy

    spec = load_dataset(data)
    split, eps = load_episodes(spec, shots, n=episodes, seed=seed)
    records = read_split(spec, split)
    cache: dict[int, dict[str, np.ndarray]] = {}

    def get(i: int) -> dict[str, np.ndarray]:
        if i not in cache:
            rec = records[i]
            img = load_image(rec.image)
            lb_img, lb = letterbox(img, engine.imgsz)
            gt = norm_cxcywh_to_xyxy(rec.boxes, img.shape[1], img.shape[0])
            dets, embs = engine.detect(lb_img, conf=conf, iou=iou, max_det=max_det)
            cache[i] = {"gt": gt, "inst": rec.instance, "gt_emb": engine.embed(lb_img, lb.to_letterbox(gt)),
                        "boxes": lb.to_original(dets[:, :4]), "dets": dets, "embs": embs}
        return cache[i]

    per_episode, enrolled = [], []
    for ep in tqdm(eps, desc="tune", disable=not progress):
        learner = ConditionalLearner("drop")
        for inst, idxs in ep.support.items():
            vecs = [get(i)["gt_emb"][get(i)["inst"] == inst] for i in idxs]
            learner.add(int(inst), spec.coarse_of(inst), torch.as_tensor(np.concatenate(vecs)))
        ids = learner.instances()
        protos = learner.prototypes().numpy()
        protos = protos / np.maximum(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
        queries = []
        for i in ep.query:
            c = get(i)
            idx, _ = learner.predict_index(torch.as_tensor(c["embs"]), torch.as_tensor(c["dets"][:, 5]).long())
            idx = idx.numpy()
            e = c["embs"] / np.maximum(np.linalg.norm(c["embs"], axis=1, keepdims=True), 1e-12)
            sim = np.full(len(idx), np.nan, np.float32)
            sim[idx >= 0] = np.einsum("nd,nd->n", e[idx >= 0], protos[idx[idx >= 0]])
            nearest = np.where(idx >= 0, np.asarray(ids)[np.clip(idx, 0, None)], -1) if len(ids) else idx
            queries.append(QueryImage(c["boxes"], c["dets"][:, 4], nearest, sim, c["gt"], c["inst"]))
        per_episode.append(queries)
        enrolled.append(ids)
    out = tune_min_similarity(per_episode, enrolled)
    out.update({"data": str(data), "split": split, "shots": shots, "episodes": len(eps), "seed": seed, "conf": conf})
    return out
