"""The Personalizer: enroll personal instances from a few images, then detect and name them.

    p = Personalizer.load("runs/distill/a/best", gallery="my.gallery")      # or backend="onnx"
    p.enroll("my mug", ["mug1.jpg", "mug2.jpg"], boxes=[[10, 20, 200, 220], None])
    r = p.detect("kitchen.jpg")                 # one image → Results (mocha.personalize.results)
    for r in p("photos/", stream=True): ...     # an image, a list, a folder, a glob or a video
    for r in p.track("clip.mp4", stream=True): r.boxes.id   # tracked: one identity per track (docs/track.md)

Student and translator stay frozen: enrolling stores support embeddings and a prototype in the gallery,
nothing is retrained. A detected box is compared with every prototype; the detector's coarse class is a
prior, not a filter: instances of another class lose `coarse_penalty` of cosine similarity (inf: only the
box's own class is searched, the SPEC's conditional learner), scaled down for the classes the detector also
voted for at enrolment (`coarse_prior`: an object outside its vocabulary gets several). Each instance names at
most one box per image, its most similar. The best similarity is the open-set signal:
below `min_similarity` the box is reported as `unknown <coarse>` (instance id -1). The instance score maps similarity
to a probability with a logistic calibration (`calibration = {"slope", "center"}`, fitted by `mocha gallery tune`).
Tracking reuses the same threshold: `min_similarity` is the identity rule's "not enrolled" option (`none_sim`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mocha.data.images import letterbox, zoom_out
from mocha.errors import ConfigError, DataError
from mocha.personalize.boxes import box_list, check_box, iou_one
from mocha.personalize.engine import load_engine
from mocha.personalize.gallery import Gallery, Support, summed_votes
from mocha.personalize.matching import (
    DEFAULT_CALIBRATION,
    DEFAULT_COARSE_PENALTY,
    DEFAULT_MIN_SIMILARITY,
    DEFAULT_SUPPORT_SCALE,
    calibrated,
    coarse_prior,
    identify,
    one_box_per_instance,
    prior_similarities,
    unit_prototypes,
)
from mocha.personalize.results import Boxes, Results
from mocha.personalize.sources import Frame, Source, is_image_like, read_image


@dataclass
class EnrollReport:
    """What enroll did: the instance, its coarse class, and per image which box was used and why."""

    name: str
    coarse: str
    shots: list[dict[str, Any]]
    also: list[str] = field(default_factory=list)  # other classes the detector voted for (the soft coarse prior)

    def lines(self) -> list[str]:
        also = f"; the detector also saw {', '.join(self.also)}" if self.also else ""
        out = [f"enrolled {self.name!r} ({self.coarse}{also}) with {len(self.shots)} shot(s):"]
        for s in self.shots:
            how = "your box" if s["box_source"] == "user" else f"detector's best box (conf {s['det_conf']:.2f})"
            zoom = f", embedded zoomed out ×{s['zoom']:.2f}" if s.get("zoom", 1.0) < 1.0 else ""
            out.append(f"  {s['source']}: {how} {[round(v, 1) for v in s['box']]}{zoom}")
        return out


def box_votes(lb_box: np.ndarray, dets: np.ndarray, min_iou: float = 0.3) -> dict[int, float]:
    """The detector's coarse-class votes for one support box: per class, the highest confidence × IoU of its
    detections overlapping the box by ≥ `min_iou` (letterboxed pixels)."""
    out: dict[int, float] = {}
    if not len(dets):
        return out
    ious = iou_one(np.asarray(lb_box, np.float32), dets[:, :4])
    for j in np.flatnonzero(ious >= min_iou):
        c, v = int(dets[j, 5]), float(dets[j, 4]) * float(ious[j])
        out[c] = max(out.get(c, 0.0), v)
    return out


# ---------------------------------------------------------------------------------------------- personalizer
class Personalizer:
    """Enroll / remove / list personal instances and detect them; all state lives in the gallery."""

    def __init__(
        self,
        engine: Any,
        gallery: Gallery,
        min_similarity: float | None = None,
        coarse_penalty: float | None = None,
        conf: float = 0.25,
        iou: float = 0.6,
        max_det: int = 300,
        enroll_conf: float = 0.05,
        support_scale: float = DEFAULT_SUPPORT_SCALE,
    ) -> None:
        from mocha.core.learners import ConditionalLearner

        gallery.check_bundle(engine.digest, getattr(engine, "bundle_path", "") or "")
        if gallery.dim != engine.dim:
            raise ConfigError(f"{gallery.path}: stores {gallery.dim}-d embeddings, the model gives {engine.dim}-d")
        self.engine, self.gallery = engine, gallery
        self.names = list(engine.names)
        # open-set settings: given here > tuned into the gallery > the bundle's own defaults > the library's
        shipped = dict(getattr(engine, "defaults", None) or {})

        def setting(key: str, given: Any, default: Any) -> Any:
            for value in (given, gallery.get_setting(key), shipped.get(key)):
                if value is not None:
                    return value
            return default

        self.min_similarity = float(setting("min_similarity", min_similarity, DEFAULT_MIN_SIMILARITY))
        self.coarse_penalty = float(setting("coarse_penalty", coarse_penalty, DEFAULT_COARSE_PENALTY))
        if not self.coarse_penalty >= 0:
            raise ConfigError(f"coarse_penalty={coarse_penalty}: must be >= 0 (inf = only the box's own class)")
        self.calibration = dict(setting("calibration", None, None) or DEFAULT_CALIBRATION)
        self.conf, self.iou, self.max_det, self.enroll_conf = float(conf), float(iou), int(max_det), float(enroll_conf)
        if not 0 <= support_scale <= 1:
            raise ConfigError(f"support_scale={support_scale}: must be in [0, 1] (0 = embed supports as given)")
        self.support_scale = float(support_scale)
        self.learner = ConditionalLearner(fallback="drop")
        self._ids: dict[str, int] = {}  # instance name → the gallery's instance id
        self._votes: dict[str, dict[int, float] | None] = {}  # instance name → the detector's enrolment votes
        for rec in gallery.instances(supports=True):
            self.learner.add(rec.name, rec.coarse, np.stack([s.embedding for s in rec.supports]))
            self._ids[rec.name] = rec.id
            self._votes[rec.name] = rec.coarse_votes()
        self._protos: np.ndarray | None = None
        self._by_id: tuple[list[int], np.ndarray, np.ndarray, np.ndarray] | None = None

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

        With an existing gallery the bundle may be omitted (the gallery records its path); a new gallery without
        one uses the shipped `coco` bundle (NanoDet-g, COCO-80; `bundle="coco"` by name); with no gallery it
        lives in memory. Keywords: min_similarity, coarse_penalty, conf, iou, max_det, enroll_conf, support_scale.
        """
        g = None
        if gallery is not None and str(gallery) != ":memory:" and Path(gallery).exists():
            g = Gallery(gallery)
            if bundle is None:
                if backend == "onnx":
                    g.close()
                    raise ConfigError("backend='onnx' needs the export folder (bundle=... ; CLI: onnx=...)")
                bundle = g.bundle_path
                if not bundle:
                    g.close()
                    raise ConfigError(f"{gallery}: gallery records no bundle path; give the bundle")
        if bundle is None:
            if backend == "onnx":
                raise ConfigError("backend='onnx' needs the export folder (bundle=... ; CLI: onnx=...)")
            from mocha.models.bundle import DEFAULT_BUNDLE

            bundle = DEFAULT_BUNDLE
        try:
            engine = load_engine(bundle, backend, device=device, threads=threads, imgsz=imgsz)
        except BaseException:
            if g is not None:
                g.close()
            raise
        if g is None:
            try:
                g = Gallery.create(gallery if gallery is not None else ":memory:", engine.digest,
                                   getattr(engine, "bundle_path", None), engine.dim)
            except ConfigError:
                if gallery is None or str(gallery) == ":memory:" or not Path(gallery).is_file():
                    raise
                g = Gallery(gallery)  # another process created it since we looked: open theirs (bundle checked below)
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
        self._ids.pop(name, None)
        self._votes.pop(name, None)
        self._protos = self._by_id = None

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
                              "use append=true (Python: append=True) to add shots, or remove it first")
        imgs = [images] if isinstance(images, str | Path) or is_image_like(images) else list(images)
        if not imgs:
            raise ConfigError(f"instance {name!r}: no images given")
        per_image = box_list(boxes, len(imgs))
        want = self.coarse_id(coarse) if coarse is not None else None
        if append and name in self.learner:
            have = self.learner.coarse_of(name)
            if want is not None and want != have:
                raise ConfigError(f"instance {name!r} is enrolled as {self.names[have]!r}, not {self.names[want]!r}")
            want = have
        user_coarse = coarse is not None
        shots, votes = [], np.zeros(len(self.names))
        for img_in, box in zip(imgs, per_image, strict=True):
            img, source, sha = read_image(img_in)
            h, w = img.shape[:2]
            lb_img, lb = letterbox(img, self.engine.imgsz)
            dets, embs = self.engine.detect(lb_img, conf=self.enroll_conf, iou=self.iou, max_det=300)
            if box is not None:
                b = check_box(box, w, h, source)
                lb_box = lb.to_letterbox(b[None])[0]
                emb, zoom = self._support_embedding(lb_img, lb_box)
                shot = {"source": source, "sha256": sha, "box": b.tolist(), "box_source": "user", "det_conf": None,
                        "zoom": zoom, "embedding": emb}
            else:
                cand = np.arange(len(dets)) if want is None else np.flatnonzero(dets[:, 5].astype(int) == want)
                if len(cand) == 0:
                    what = "object" if want is None else repr(self.names[want])
                    raise DataError(f"{source}: the detector found no {what} (conf ≥ {self.enroll_conf:g}); "
                                    "give a box (box=x1,y1,x2,y2)")
                j = int(cand[np.argmax(dets[cand, 4])])
                b = lb.to_original(dets[j, :4][None])[0]
                lb_box = dets[j, :4]  # it votes below with its confidence (IoU 1 with itself)
                emb, zoom = self._support_embedding(lb_img, lb_box, embs[j])
                shot = {"source": source, "sha256": sha, "box": b.tolist(), "box_source": "detector",
                        "det_conf": float(dets[j, 4]), "zoom": zoom, "embedding": emb}
            shot_votes = box_votes(lb_box, dets)
            for c, v in shot_votes.items():
                votes[c] += v
            shot["coarse_votes"] = None if user_coarse else shot_votes
            shots.append(shot)
        if want is None:
            if not votes.any():
                raise ConfigError(f"instance {name!r}: cannot tell its coarse class from the detector (no detection "
                                  "overlaps the boxes); give coarse=...")
            want = int(votes.argmax())
        supports = [Support(s["source"], s["sha256"], s["box"], s["box_source"],
                            np.asarray(s["embedding"], np.float32), s["det_conf"], coarse_votes=s["coarse_votes"])
                    for s in shots]
        self.gallery.add(name, want, self.names[want], supports, append=append)
        self.learner.add(name, want, np.stack([s.embedding for s in supports]))
        self._ids[name] = next(r.id for r in self.gallery.instances() if r.name == name)
        self._votes[name] = summed_votes(supports, self._votes.get(name) if append else None)
        self._protos = self._by_id = None
        prior = coarse_prior(want, self._votes[name], len(self.names))
        also = [self.names[c] for c in np.argsort(-prior, kind="stable") if c != want and prior[c] >= 0.5]
        return EnrollReport(name, self.names[want], [{k: v for k, v in s.items() if k not in ("embedding",
                                                                                            "coarse_votes")}
                                                     for s in shots], also)

    def _support_embedding(self, lb_img: np.ndarray, lb_box: np.ndarray,
                           emb: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """The support's embedding and the zoom it was taken at. A box longer than `support_scale` of the input
        side (a close-up: the object fills the photo) is embedded from the letterboxed image shrunk until the box
        spans `support_scale`: pooled student features of a frame-filling box are far from those of the same
        object inside a scene (docs/personalize.md, *Close-ups*). `emb`: the embedding at zoom 1, if known."""
        frac = float(np.max(lb_box[2:4] - lb_box[0:2])) / lb_img.shape[0]
        if self.support_scale <= 0 or frac <= self.support_scale:
            return (emb if emb is not None else self.engine.embed(lb_img, lb_box[None])[0]), 1.0
        zoom = self.support_scale / frac
        view, scale, off = zoom_out(lb_img, zoom)
        return self.engine.embed(view, (np.asarray(lb_box, np.float32) * scale + off)[None])[0], round(scale, 4)

    # ------------------------------------------------------------------ detection
    def _prototypes(self) -> np.ndarray:
        if self._protos is None:
            self._protos = unit_prototypes(self.learner, self.engine.dim)
        return self._protos

    @property
    def gallery_ids(self) -> list[int]:
        """The enrolled instances' gallery ids, increasing: the column order of `Results.similarities`."""
        return sorted(self._ids.values())

    def _gallery_matrix(self) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        """(gallery ids, their unit prototypes (K, dim), their coarse ids (K,), their coarse priors (K, classes)),
        cached until the gallery changes."""
        if self._by_id is None:
            order = self.learner.instances()  # names, in prototype order
            row = {self._ids[name]: j for j, name in enumerate(order)}
            ids = self.gallery_ids
            protos = self._prototypes()[[row[i] for i in ids]] if ids else np.zeros((0, self.engine.dim), np.float32)
            coarse = np.array([self.learner.coarse_of(order[row[i]]) for i in ids], np.int64)
            prior = np.stack([coarse_prior(c, self._votes.get(order[row[i]]), len(self.names))
                              for i, c in zip(ids, coarse, strict=True)]) if ids else \
                np.zeros((0, len(self.names)), np.float32)
            self._by_id = (ids, protos, coarse, prior)
        return self._by_id

    def similarities(self, embeddings: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        """(n, K) similarity of each box to every enrolled instance (columns: `gallery_ids`): cosine, minus
        `coarse_penalty` for instances of another coarse class than the box, scaled by their coarse prior (-1
        there when the penalty is inf: the conditional learner never names them)."""
        _, protos, inst_coarse, prior = self._gallery_matrix()
        return prior_similarities(embeddings, protos, coarse, inst_coarse, self.coarse_penalty, prior)

    def identify(self, embeddings: np.ndarray, coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest instance index (into learner.instances(); -1 none) and its similarity (NaN none) per box."""
        return identify(self.learner, self._prototypes(), embeddings, coarse, self.coarse_penalty)

    def detect(self, image: Any, conf: float | None = None, min_similarity: float | None = None) -> Results:
        """Detect and name enrolled instances in one image (path, RGB array or PIL image)."""
        img, label, _ = read_image(image, digest=False)
        return self._detect_frame(Frame(img, None if label == "<array>" else label), conf, min_similarity)

    def predict(self, source: Any, stream: bool = False, conf: float | None = None,
                min_similarity: float | None = None) -> list[Results] | Iterator[Results]:
        """Results for every image of `source`: an image (path, array, PIL), a list, a folder, a glob or a video
        (one Results per frame). A list, or with stream=True a generator yielding them one by one (a long
        video then never sits in memory). Missing files fail here, before any detection."""
        frames = Source(source)
        gen = (self._detect_frame(f, conf, min_similarity) for f in frames)
        return gen if stream else list(gen)

    __call__ = predict

    def _detect_frame(self, frame: Frame, conf: float | None, min_similarity: float | None) -> Results:
        speed: dict[str, float] = {}
        t0 = time.perf_counter()
        lb_img, lb = letterbox(frame.image, self.engine.imgsz)
        speed["preprocess"] = (time.perf_counter() - t0) * 1e3
        dets, embs = self.engine.detect(lb_img, conf=self.conf if conf is None else float(conf), iou=self.iou,
                                        max_det=self.max_det, speed=speed)
        return self.results(frame.image, lb, dets, embs, path=frame.path, frame=frame.frame,
                            min_similarity=min_similarity, speed=speed)

    def results(self, img: np.ndarray, lb: Any, dets: np.ndarray, embs: np.ndarray, path: str | None = None,
                min_similarity: float | None = None, frame: int | None = None,
                speed: dict[str, float] | None = None) -> Results:
        """Build Results from engine output (letterboxed detections + embeddings) for an original image."""
        t0 = time.perf_counter()
        thr = self.min_similarity if min_similarity is None else float(min_similarity)
        coarse = dets[:, 5].astype(np.int64)
        sims = self.similarities(embs, coarse)
        ids = np.asarray(self.gallery_ids, np.int64)
        if np.isinf(self.coarse_penalty) or not len(ids):  # the conditional learner's own choice
            idx, sim = self.identify(embs, coarse)
            order = self.learner.instances()
            named = np.array([self._ids[order[i]] if i >= 0 else -1 for i in idx.tolist()], np.int64)
        else:  # the best column of the (penalised) similarity matrix: computed once for naming and tracking
            col = sims.argmax(axis=1) if len(sims) else np.zeros(0, np.int64)
            named, sim = ids[col], sims[np.arange(len(sims)), col].astype(np.float32)
        named = one_box_per_instance(named, sim)
        known = (named >= 0) & (sim >= thr)
        instance = np.where(known, named, -1).astype(np.int64)
        inst_conf = np.where(known, calibrated(sim, self.calibration), 0.0).astype(np.float32)
        det = dets[:, 4].astype(np.float32)
        h, w = img.shape[:2]
        boxes = Boxes(
            xyxy=lb.to_original(dets[:, :4]).astype(np.float32) if len(dets) else np.zeros((0, 4), np.float32),
            conf=det, cls=coarse, instance=instance, similarity=sim.astype(np.float32), instance_conf=inst_conf,
            score=np.where(known, det * inst_conf, det).astype(np.float32), orig_shape=(int(h), int(w)),
        )
        speed = dict(speed or {})
        speed["postprocess"] = (time.perf_counter() - t0) * 1e3
        return Results(orig_img=img, boxes=boxes, names=dict(enumerate(self.names)),
                       instances={i: n for n, i in self._ids.items()}, path=path, frame=frame, speed=speed,
                       similarities=sims, gallery_ids=tuple(self.gallery_ids))

    # ------------------------------------------------------------------ tracking
    def detections(self, image: Any, conf: float | None = None) -> Any:
        """One image's tracker input (`mocha.track.frames.Detections`): boxes, confidences, coarse ids and the
        (n, K) similarities to every enrolled instance in `gallery_ids` order, before any threshold."""
        return self.detect(image, conf=conf).to_detections()

    def identity_params(self, **overrides: Any) -> Any:
        """The track identity rule's settings (`mocha.track.identity.IdentityParams`) with this Personalizer's
        open-set threshold as the "not enrolled" similarity `none_sim`: one threshold for detect and track."""
        from mocha.track.identity import IdentityParams

        return IdentityParams(**{"none_sim": self.min_similarity, **overrides})

    def track(self, source: Any, stream: bool = False, tracker: str = "bytetrack", identity: str = "track",
              conf: float | None = None, min_similarity: float | None = None, params: Any = None
              ) -> list[Results] | Iterator[Results]:
        """Follow enrolled instances through a video (file), a folder of frames (sorted) or a webcam (`0`).

        Yields one Results per frame whose `boxes.id` are track ids (ultralytics' ByteTrack / BoT-SORT over our
        detections) and whose `boxes.instance` is the track's identity, decided from all of its frames
        (mocha.track.identity; `unknown <coarse>` until the evidence is enough). As in ultralytics, only boxes
        in a confirmed track are shown. `identity="frame"` is the per-frame baseline (no tracker, every box
        named on its own, `boxes.id` None). `conf`: default `TRACK_CONF` (0.1, as ultralytics' tracking: the
        tracker's low-score pass needs those boxes) when tracking, the Personalizer's `conf` per frame.
        `params`: IdentityParams (default `identity_params()`). The tracker restarts with every video of the
        source. A list, or with stream=True a generator."""
        from mocha.track.run import MODES
        from mocha.track.tracker import TRACK_CONF, TRACKERS

        TRACKERS.get(tracker)  # bad names fail here, before any frame is read
        if identity not in MODES:
            raise ConfigError(f"identity={identity}: unknown mode; choose one of {', '.join(MODES)}")
        thr = self.min_similarity if min_similarity is None else float(min_similarity)
        params = params if params is not None else self.identity_params(none_sim=thr)
        if conf is None:
            conf = min(self.conf, TRACK_CONF) if identity == "track" else self.conf
        gen = self._track(Source(source), tracker, identity, conf, thr, params)
        return gen if stream else list(gen)

    def _track(self, frames: Source, tracker: str, identity: str, conf: float | None, thr: float, params: Any
               ) -> Iterator[Results]:
        from mocha.track.run import track_stream

        ids = self.gallery_ids
        by_id = {i: n for n, i in self._ids.items()}
        names = [by_id[i] for i in ids]
        now: dict[str, Any] = {}

        def images(group: Iterator[Frame]) -> Iterator[np.ndarray]:
            for f in group:
                now["frame"] = f
                yield f.image

        def detect_fn(image: np.ndarray, i: int) -> Any:
            now["results"] = self._detect_frame(now["frame"], conf, thr)
            return now["results"].to_detections()

        def stream_key(f: Frame) -> Any:  # one tracker per video; stills (a frames folder) form one stream
            return f.path if f.frame is not None else None

        for _, group in itertools.groupby(frames, key=stream_key):
            for fr in track_stream(images(group), detect_fn, names, self.names, tracker, identity, params):
                yield self._tracked(now["results"], fr, ids, identity == "track")

    def _tracked(self, r: Results, fr: Any, ids: list[int], with_ids: bool) -> Results:
        """The frame's Results restricted to the shown boxes, named by the track identity."""
        sub = r[fr.index]
        k = np.asarray(fr.instance, np.int64)
        named = k >= 0
        n = len(sub)
        sims = sub.similarities if sub.similarities is not None else np.zeros((n, len(ids)), np.float32)
        sim = np.where(named, sims[np.arange(n), np.clip(k, 0, None)] if sims.shape[1] else 0.0,
                       sub.boxes.similarity).astype(np.float32)
        inst_conf = np.where(named, calibrated(sim, self.calibration), 0.0).astype(np.float32)
        b = sub.boxes
        boxes = replace(b, instance=np.array([ids[j] if j >= 0 else -1 for j in k.tolist()], np.int64),
                        similarity=sim, instance_conf=inst_conf,
                        score=np.where(named, b.conf * inst_conf, b.conf).astype(np.float32),
                        id=np.asarray(fr.track_id, np.int64) if with_ids else None)
        return replace(sub, boxes=boxes)
