"""The episodic evaluator: one feature pass per method over the split, then cheap episodes.

1. The box-source detector proposes query boxes for every image once (conf 0.1, NMS IoU 0.6, <= 300).
2. Each method embeds, per image and in one forward, the ground-truth boxes (support features) and the
   proposed boxes (query features); `teacher-gt` embeds only the GT boxes, which are also its query boxes.
   Image features do not depend on the episode, so they are computed once and reused by every episode.
3. Each episode enrols its support instances in a fresh learner and relabels all query boxes in one
   `predict` call; metrics (mocha.core.metrics) are averaged over episodes (mean ± std). The query
   ground truth is the boxes of the episode's enrolled instances (other boxes are not scored).
4. Time per image of a support pass and of a query pass (as a user would run them: query = detect + embed),
   after a warm-up, on the first `time_images` images; peak memory (RSS on CPU, CUDA peak on GPU).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mocha.core.device import choose_device
from mocha.core.learners import create_learner
from mocha.core.metrics import ImagePreds, ImageTruth, paper_map, strict_map, top1_accuracy
from mocha.core.progress import progress
from mocha.core.runs import resolve_artifact
from mocha.errors import ConfigError, DataError
from mocha.evaluate.cache import CHUNK, FeatureCache, digest, pack, records_digest, source_stamp, unpack
from mocha.evaluate.config import AUTO_WORKERS_MIN_EPISODES, EvalConfig, MethodSpec, learner_options
from mocha.evaluate.methods import Method, build_method

log = logging.getLogger("mocha.evaluate")
METRICS = ("map50_95", "map50", "strict_map50_95", "accuracy")


@dataclass
class ImageData:
    """Per split image: GT (letterboxed px) and the box source's detections mapped to dataset coarse ids."""

    gt_boxes: Tensor
    gt_coarse: Tensor
    gt_instance: Tensor
    det_boxes: Tensor
    det_conf: Tensor
    det_coarse: Tensor


@dataclass
class MethodFeatures:
    """Per image: features of the GT boxes and of the query boxes of one method."""

    method: Method
    support: list[Tensor] = field(default_factory=list)
    query: list[Tensor] = field(default_factory=list)
    support_ms: float = float("nan")
    query_ms: float = float("nan")
    peak_memory_mb: float = float("nan")
    model_memory_mb: float = float("nan")


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def coarse_map(detector_names: list[str], spec: Any, records: Any = None) -> np.ndarray:
    """Detector class index → dataset coarse id (-1 when the dataset lacks it); error if the instances of the
    evaluated split (all instances when `records` is None) use a coarse class the detector does not know."""
    if records is None:
        used = sorted({info.coarse for info in spec.instances.values()})
    else:
        ids = {int(i) for r in records for i in r.instance.tolist() if i >= 0}
        used = sorted({spec.coarse_of(i) for i in ids})
    lookup = {n: i for i, n in enumerate(detector_names)}
    missing = [spec.names[c] for c in used if spec.names[c] not in lookup]
    if missing:
        raise ConfigError(
            f"coarse vocabulary mismatch: the dataset {spec.path} uses {', '.join(map(repr, missing))}, which the "
            f"detector does not know (detector classes: {', '.join(detector_names[:40])})"
        )
    ds = {n: i for i, n in enumerate(spec.names)}
    return np.array([ds.get(n, -1) for n in detector_names], dtype=np.int64)


def load_box_source(path: str | Path, device: torch.device) -> Any:
    """Student from weights, or the student of a bundle / distill run folder."""
    from mocha.models.detector import Student

    return Student.load(resolve_artifact(path, "student.safetensors")).to(device).eval()


def _same_file(a: str | Path | None, b: str | Path | None) -> bool:
    """Whether two weight paths name the same student (a bundle folder and its student.safetensors match)."""
    if a is None or b is None:
        return False

    def norm(p: str | Path) -> Path:
        p = resolve_artifact(Path(p).resolve(), "student.safetensors")
        return p / "student.safetensors" if p.is_dir() else p

    return norm(a) == norm(b)


class Evaluator:
    """Holds the split, the box source, the methods and their cached features."""

    def __init__(self, config: EvalConfig) -> None:
        from mocha.data.dataset import load_dataset, load_episodes
        from mocha.data.episodes import episode_split
        from mocha.data.records import read_split

        self.cfg = config
        if not config.shots:
            raise ConfigError("shots: give at least one shot count")
        labels = [m.label for m in config.methods]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"--method: method names must be unique, got {labels} (name them kind:path)")
        create_learner(config.learner, **self._learner_kw())  # validate early
        self.spec = load_dataset(config.data)
        self.split = episode_split(self.spec, config.split)
        self.records = read_split(self.spec, self.split)
        if not self.records:
            raise DataError(f"{self.spec.path}: split {self.split!r} has no images")
        self.episodes = {}
        for s in sorted({int(s) for s in config.shots}):
            split, eps = load_episodes(self.spec, s, config.episodes, config.seed, split=self.split,
                                       records=self.records)
            self.episodes[s] = eps
        self.device = choose_device(config.device)
        # The box source: --detector (student weights or a bundle), else the first method's own detector.
        # A method whose weights are the box source's shares its object, so its query pass is one forward.
        explicit = load_box_source(config.detector, self.device) if config.detector else None
        self.box_source = explicit
        box_id: Any = source_stamp(config.detector) if config.detector else None
        self.methods: list[MethodFeatures] = []
        for ms in config.methods:
            before = _rss_mb()
            m = build_method(ms, explicit, self.device)
            mf = MethodFeatures(m, model_memory_mb=max(0.0, _rss_mb() - before))
            if m.detector is not None and explicit is not None and m.detector is not explicit and \
                    _same_file(ms.detector or ms.bundle, config.detector):
                self.box_source = explicit = m.detector
            if self.box_source is None and m.detector is not None:
                self.box_source = m.detector
                box_id = self._identity(ms, m)
            self.methods.append(mf)
        if self.box_source is None and any(not mf.method.gt_queries for mf in self.methods):
            raise ConfigError("no detector proposes the query boxes: pass --detector (student weights or a bundle)")
        self.cmap = None
        if self.box_source is not None:
            self.cmap = coarse_map(list(self.box_source.names), self.spec, self.records)
        self.images: list[ImageData] = []
        self.cache = FeatureCache(Path(config.project) / ".cache" if config.cache else None)
        self.images_key = digest({"records": records_digest(self.records), "imgsz": config.imgsz, "conf": config.conf,
                                  "iou": config.iou, "max_det": config.max_det, "box_source": box_id,
                                  "data": str(Path(config.data).resolve())})
        self.method_keys = []
        for ms, mf in zip(config.methods, self.methods, strict=True):
            ident = self._identity(ms, mf.method)
            self.method_keys.append(None if ident is None else digest({"method": ident, "images": self.images_key,
                                                                      "gt": mf.method.gt_queries}))

    def _identity(self, spec: MethodSpec, method: Method) -> Any:
        """What determines a method's features (None when it cannot be stated → not cached)."""
        if spec.kind == "student":
            return ["student", source_stamp(spec.detector or self.cfg.detector)]
        if spec.kind == "mocha":
            return ["mocha", source_stamp(spec.bundle)]
        teacher = getattr(method, "teacher", None)
        name, settings = getattr(teacher, "name", None), getattr(teacher, "settings", None)
        if not isinstance(name, str) or not callable(settings):
            return None
        try:
            return ["teacher", name, settings()]
        except Exception:
            return None

    def _learner_kw(self) -> dict[str, Any]:
        return learner_options(self.cfg.learner, self.cfg.fallback, self.cfg.coarse_penalty)

    # ------------------------------------------------------------------------------------ feature pass
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _detect(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self._detect_maps(image)[0]

    def _detect_maps(self, image: Tensor) -> tuple[tuple[Tensor, Tensor, Tensor], list[Tensor]]:
        """(boxes, conf, coarse) of the box source and the feature maps of that same forward."""
        dets, maps = self.box_source.detect(image, conf=self.cfg.conf, iou=self.cfg.iou, max_det=self.cfg.max_det)
        return self._split_dets(dets[0]), maps

    def _split_dets(self, d: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        d = d.detach().float().cpu().clone()
        d[:, :4] = d[:, :4].clamp(0, self.cfg.imgsz)  # as ultralytics' predictor clips to the image
        coarse = torch.from_numpy(self.cmap[d[:, 5].long().numpy()]) if len(d) else torch.zeros(0, dtype=torch.long)
        return d[:, :4], d[:, 4], coarse

    def _names(self, coarse: Tensor) -> list[str]:
        return [self.spec.names[c] if c >= 0 else "object" for c in coarse.tolist()]

    def extract(self) -> None:
        """Detect once per image, then embed GT + proposed boxes per method in one forward each.

        Works in chunks of images; each chunk's detections and each method's features are cached on disk,
        so an interrupted run resumes and a rerun (more episodes, another learner) skips the pass.
        """
        from mocha.data.loader import DetectionDataset

        ds = DetectionDataset(self.records, self.cfg.imgsz)
        twins = self._twins()
        bar = progress(total=len(ds), desc="features", unit="img", enable=self.cfg.progress, leave=False)
        for c0 in range(0, len(ds), CHUNK):
            idx = list(range(c0, min(len(ds), c0 + CHUNK)))
            images = self.cache.load(self.images_key, c0)
            cached = [self.cache.load(k, c0) for k in self.method_keys]
            todo = [j for j, c in enumerate(cached) if c is None]
            fresh: dict[int, tuple[list[Tensor], list[Tensor]]] = {j: ([], []) for j in todo}
            chunk_images: list[ImageData] = [] if images is None else _unpack_images(images)
            if images is None or todo:
                for n, i in enumerate(idx):
                    raw, item = ds.load(i)
                    image = item["image"][None].to(self.device)
                    maps = None  # the box source's maps, reused by a method whose detector it is
                    if images is None:
                        data, maps = self._image_data(image, item)
                        chunk_images.append(data)
                    im = chunk_images[n]
                    gt_names, det_names = self._names(im.gt_coarse), self._names(im.det_coarse)
                    for j in todo:
                        if twins.get(j) in todo:  # the same teacher on the same GT boxes: reuse its features
                            sup = fresh[twins[j]][0][-1]
                            fresh[j][0].append(sup)
                            fresh[j][1].append(sup)
                            continue
                        method = self.methods[j].method
                        own = maps if maps is not None and method.detector is self.box_source else None
                        if method.gt_queries:
                            (sup,) = method.features(image, raw, item["letterbox"], [im.gt_boxes], [gt_names], own)
                            qry = sup
                        else:
                            sup, qry = method.features(image, raw, item["letterbox"], [im.gt_boxes, im.det_boxes],
                                                       [gt_names, det_names], own)
                        fresh[j][0].append(sup)
                        fresh[j][1].append(qry)
                    bar.update(1)
                if images is None:
                    self.cache.save(self.images_key, c0, _pack_images(chunk_images))
            else:
                bar.update(len(idx))
            self.images.extend(chunk_images)
            for j, mf in enumerate(self.methods):
                if j in fresh:
                    sup, qry = fresh[j]
                    (s_cat, s_n), (q_cat, q_n) = pack(sup), pack(qry)
                    self.cache.save(self.method_keys[j], c0, {"sup": s_cat, "sup_n": s_n, "qry": q_cat, "qry_n": q_n})
                else:
                    c = cached[j]
                    sup, qry = unpack(c["sup"], c["sup_n"]), unpack(c["qry"], c["qry_n"])
                mf.support.extend(sup)
                mf.query.extend(qry)
        bar.close()

    def _twins(self) -> dict[int, int]:
        """{j: k}: method j embeds only GT boxes (teacher-gt) with what method k (teacher, earlier) embeds them with,
        so j's features are k's support features and need no second teacher pass."""
        idents = [None if k is None else json.dumps(self._identity(ms, mf.method), sort_keys=True, default=str)
                  for k, ms, mf in zip(self.method_keys, self.cfg.methods, self.methods, strict=True)]
        out = {}
        for j, mf in enumerate(self.methods):
            if mf.method.gt_queries and idents[j] is not None:
                k = next((k for k in range(j) if idents[k] == idents[j] and not self.methods[k].method.gt_queries),
                         None)
                if k is not None:
                    out[j] = k
        return out

    def _image_data(self, image: Tensor, item: dict[str, Any]) -> tuple[ImageData, list[Tensor] | None]:
        keep = item["instance"] >= 0
        maps = None
        if self.box_source is not None:
            det, maps = self._detect_maps(image)
        else:
            det = (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long))
        return ImageData(item["boxes"][keep].float(), item["coarse"][keep], item["instance"][keep], *det), maps

    def measure(self) -> None:
        """Time support and query passes per image (after a warm-up) and record peak memory per method."""
        from mocha.data.loader import DetectionDataset

        ds = DetectionDataset(self.records, self.cfg.imgsz)
        n = max(1, min(self.cfg.time_images, len(ds)))
        items = [ds.load(i) for i in range(n)]
        for mf in self.methods:
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            peak = _rss_mb()
            self._support_pass(mf.method, items[0])  # warm-up
            self._query_pass(mf.method, items[0])
            t_sup = t_qry = 0.0
            for raw_item in items:
                self._sync()
                t0 = time.perf_counter()
                self._support_pass(mf.method, raw_item)
                self._sync()
                t1 = time.perf_counter()
                self._query_pass(mf.method, raw_item)
                self._sync()
                t_sup, t_qry = t_sup + t1 - t0, t_qry + time.perf_counter() - t1
                peak = max(peak, _rss_mb())
            mf.support_ms, mf.query_ms = 1000 * t_sup / n, 1000 * t_qry / n
            if self.device.type == "cuda":
                mf.peak_memory_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            else:
                mf.peak_memory_mb = peak

    @torch.no_grad()
    def _support_pass(self, method: Method, raw_item: tuple[np.ndarray, dict]) -> Tensor:
        raw, item = raw_item
        image = item["image"][None].to(self.device)
        return method.features(image, raw, item["letterbox"], [item["boxes"]], [self._names(item["coarse"])])[0]

    @torch.no_grad()
    def _query_pass(self, method: Method, raw_item: tuple[np.ndarray, dict]) -> Tensor:
        raw, item = raw_item
        image = item["image"][None].to(self.device)
        if method.gt_queries:
            return method.features(image, raw, item["letterbox"], [item["boxes"]], [self._names(item["coarse"])])[0]
        if method.detector is self.box_source:
            return method.detect_and_embed(image, self.cfg.conf, self.cfg.iou, self.cfg.max_det)[1]
        boxes, _, coarse = self._detect(image)
        return method.features(image, raw, item["letterbox"], [boxes], [self._names(coarse)])[0]

    # ------------------------------------------------------------------------------------ episodes
    def run_episode(self, mf: MethodFeatures, ep: Any) -> tuple[dict[str, float], list[ImagePreds], list[ImageTruth]]:
        """Fit a fresh learner on the episode's support, relabel every query box, compute the metrics."""
        return self.scorer().score(mf.support, mf.query, mf.method.gt_queries, ep)

    def scorer(self) -> EpisodeScorer:
        return EpisodeScorer(self.spec, self.images, self.cfg.learner, self._learner_kw())

    def _workers(self) -> int:
        """Processes that score episodes: `workers`, or (0 = auto) 2 on a machine with 2+ CPUs when there are
        enough episodes to repay starting them (a worker starts in seconds; an episode scores in ~0.1 s)."""
        import os

        if self.cfg.workers:
            return self.cfg.workers
        total = sum(len(e) for e in self.episodes.values()) * len(self.methods)
        return 2 if (os.cpu_count() or 1) >= 2 and total >= AUTO_WORKERS_MIN_EPISODES else 1

    def run(self) -> dict[str, Any]:
        """Feature pass, timing, all episodes; returns the report dict (metrics in percent)."""
        self.measure()  # first, so peak memory is not inflated by the stored features
        self.extract()
        results: dict[str, Any] = {}
        self.examples: dict[str, Any] = {}
        workers = self._workers()
        pool = None
        if workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # spawn: torch is loaded (fork would copy its threads); one torch thread each, the processes share the CPUs
            pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)
        scorer = self.scorer()
        try:
            for shots, eps in self.episodes.items():
                results[str(shots)] = {}
                for mf in self.methods:
                    gt_q = mf.method.gt_queries
                    bar = progress(total=len(eps), desc=f"{mf.method.label} {shots}-shot", enable=self.cfg.progress,
                                   leave=False)
                    if pool is None:
                        scored = []
                        for ep in eps:
                            row, preds, truths = scorer.score(mf.support, mf.query, gt_q, ep)
                            scored.append((row, preds, truths) if not scored else (row, [], []))
                            bar.update(1)
                    else:  # contiguous parts in order: the same rows as in-process, episode by episode
                        k = -(-len(eps) // workers)
                        futures = [pool.submit(_score_part, scorer, mf.support, mf.query, gt_q, eps[i:i + k])
                                   for i in range(0, len(eps), k)]
                        scored = []
                        for f in futures:
                            part = f.result()
                            scored.extend(part)
                            bar.update(len(part))
                    bar.close()
                    rows = [row for row, _, _ in scored]
                    if scored:
                        self.examples[(shots, mf.method.label)] = (eps[0], scored[0][1], scored[0][2])
                    results[str(shots)][mf.method.label] = summarize(rows, mf)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        return {"dataset": str(self.spec.path), "split": self.split, "episodes": self.cfg.episodes,
                "episodes_run": {str(s): len(e) for s, e in self.episodes.items()},
                "device": str(self.device), "results": results}


@dataclass
class EpisodeScorer:
    """What scoring an episode needs and no model: picklable, so worker processes can score episodes."""

    spec: Any
    images: list[ImageData]
    learner: str
    learner_kw: dict[str, Any]

    def score(self, support: list[Tensor], query: list[Tensor], gt_queries: bool,
              ep: Any) -> tuple[dict[str, float], list[ImagePreds], list[ImageTruth]]:
        """Fit a fresh learner on the episode's support, relabel every query box, compute the metrics."""
        learner = create_learner(self.learner, **self.learner_kw)
        for inst, idxs in ep.support.items():
            vecs = [support[i][self.images[i].gt_instance == inst] for i in idxs]
            vecs = torch.cat(vecs) if vecs else torch.zeros(0)
            if len(vecs) == 0:
                raise DataError(f"episode {ep.index}: instance {inst} ({self.spec.instance_name(inst)}) has no "
                                f"support box in its support images")
            learner.add(inst, self.spec.coarse_of(inst), vecs)
        enrolled = torch.tensor(learner.instances(), dtype=torch.long)
        feats = [query[i] for i in ep.query]
        coarse = [self.images[i].gt_coarse if gt_queries else self.images[i].det_coarse for i in ep.query]
        sizes = [len(f) for f in feats]
        idx, prob = learner.predict_index(torch.cat(feats), torch.cat(coarse)) if sum(sizes) else (
            torch.zeros(0, dtype=torch.long), torch.zeros(0))
        labels = torch.where(idx >= 0, enrolled[idx.clamp_min(0)], torch.full_like(idx, -1)) if len(idx) else idx
        preds, truths = [], []
        for i, lab, p in zip(ep.query, labels.split(sizes), prob.split(sizes), strict=True):
            im = self.images[i]
            boxes, conf = (im.gt_boxes, torch.ones(len(im.gt_boxes))) if gt_queries else (im.det_boxes, im.det_conf)
            preds.append(ImagePreds(boxes.numpy(), conf.numpy(), p.numpy(), lab.numpy()))
            mine = torch.isin(im.gt_instance, enrolled)
            truths.append(ImageTruth(im.gt_boxes[mine].numpy(), im.gt_instance[mine].numpy()))
        m50_95, m50 = paper_map(preds, truths)
        out = {"map50_95": m50_95, "map50": m50, "strict_map50_95": strict_map(preds, truths, learner.instances()),
               "accuracy": top1_accuracy(preds, truths)}
        return out, preds, truths


def _worker_init() -> None:
    torch.set_num_threads(1)


def _score_part(scorer: EpisodeScorer, support: list[Tensor], query: list[Tensor], gt_queries: bool,
                eps: list[Any]) -> list[tuple[dict[str, float], list[ImagePreds], list[ImageTruth]]]:
    """Score consecutive episodes in a worker; preds / truths only of the part's first (the report's examples)."""
    out = []
    for n, ep in enumerate(eps):
        row, preds, truths = scorer.score(support, query, gt_queries, ep)
        out.append((row, preds, truths) if n == 0 else (row, [], []))
    return out


_IMAGE_FIELDS = ("gt_boxes", "gt_coarse", "gt_instance", "det_boxes", "det_conf", "det_coarse")


def _pack_images(images: list[ImageData]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for f in _IMAGE_FIELDS:
        out[f], out[f"{f}_n"] = pack([getattr(im, f) for im in images])
    return out


def _unpack_images(t: dict[str, Tensor]) -> list[ImageData]:
    cols = {f: unpack(t[f], t[f"{f}_n"]) for f in _IMAGE_FIELDS}
    return [ImageData(*(cols[f][k].reshape(-1, 4) if f.endswith("boxes") else cols[f][k].reshape(-1)
                        for f in _IMAGE_FIELDS)) for k in range(len(cols["gt_boxes"]))]


def summarize(rows: list[dict[str, float]], mf: MethodFeatures) -> dict[str, float]:
    """Mean and std (percent) of each metric over episodes (NaN episodes, e.g. no query GT, are skipped)."""
    out: dict[str, float] = {}
    for k in METRICS:
        v = np.array([r[k] for r in rows], dtype=np.float64)
        v = v[np.isfinite(v)]
        out[k] = round(float(v.mean() * 100), 3) if len(v) else float("nan")
        out[f"{k}_std"] = round(float(v.std() * 100), 3) if len(v) else float("nan")
    out["support_ms_per_image"] = round(mf.support_ms, 3)
    out["query_ms_per_image"] = round(mf.query_ms, 3)
    out["peak_memory_mb"] = round(mf.peak_memory_mb, 1)
    out["model_memory_mb"] = round(mf.model_memory_mb, 1)
    return out


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run the episodic benchmark and write `<project>/<name>/` (report.md, report.json, plots); return the report.

    The run folder follows `mocha.core.runs.run_dir`: an existing one is replaced only with `exist_ok`.
    """
    from mocha.core.runs import run_dir
    from mocha.evaluate.report import write_run

    if config.threads:
        torch.set_num_threads(config.threads)
    run = run_dir(config.project, config.name, exist_ok=config.exist_ok)
    ev = Evaluator(config)
    report = ev.run()
    report["run_dir"] = str(write_run(ev, report, run))
    return report
