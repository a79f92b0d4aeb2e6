"""Open-set tuning: choose `min_similarity` and fit the score calibration on a dataset's episodes.

`tune_on_dataset(engine, data, ...)` (what `mocha gallery tune` runs) detects and embeds each image once,
enrolls each episode's supports at their ground-truth boxes, then, for each candidate `coarse_penalty`
(mocha.personalize.matching), `tune_min_similarity` scans thresholds for the best mean strict mAP with the
calibration `fit_calibration` fitted on the same data; the best (penalty, threshold) pair wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mocha.errors import ConfigError
from mocha.personalize.boxes import iou_one
from mocha.personalize.matching import DEFAULT_CALIBRATION, calibrated, identify, unit_prototypes

# coarse_penalty candidates, from the SPEC's filter (inf) to class-agnostic (0)
PENALTIES = (float("inf"), 0.5, 0.3, 0.2, 0.1, 0.05, 0.0)


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
        if len(q.gt_boxes) == 0:
            continue
        for i in np.flatnonzero(q.nearest >= 0):
            ious = iou_one(q.boxes[i], q.gt_boxes)
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


class DetectionCache:
    """Each image of a split detected and embedded once (letterboxed as the engine does), with its ground truth."""

    def __init__(self, engine: Any, records: Sequence[Any], conf: float, iou: float, max_det: int) -> None:
        self.engine, self.records, self.conf, self.iou, self.max_det = engine, records, conf, iou, max_det
        self.items: dict[int, dict[str, np.ndarray]] = {}

    def get(self, i: int) -> dict[str, np.ndarray]:
        from mocha.data.images import letterbox, load_image, norm_cxcywh_to_xyxy

        if i not in self.items:
            rec, engine = self.records[i], self.engine
            img = load_image(rec.image)
            lb_img, lb = letterbox(img, engine.imgsz)
            gt = norm_cxcywh_to_xyxy(rec.boxes, img.shape[1], img.shape[0])
            dets, embs = engine.detect(lb_img, conf=self.conf, iou=self.iou, max_det=self.max_det)
            self.items[i] = {"gt": gt, "inst": rec.instance, "gt_emb": engine.embed(lb_img, lb.to_letterbox(gt)),
                             "boxes": lb.to_original(dets[:, :4]), "dets": dets, "embs": embs}
        return self.items[i]


def episode_learner(cache: DetectionCache, spec: Any, support: dict[int, list[int]], dim: int) -> tuple[Any, Any]:
    """A conditional learner holding the supports' ground-truth boxes (as `Personalizer.enroll` would) and its
    unit prototypes."""
    import torch

    from mocha.core.learners import ConditionalLearner

    learner = ConditionalLearner("drop")
    for inst, idxs in support.items():
        vecs = [cache.get(i)["gt_emb"][cache.get(i)["inst"] == inst] for i in idxs]
        learner.add(int(inst), spec.coarse_of(inst), torch.as_tensor(np.concatenate(vecs)))
    return learner, unit_prototypes(learner, dim)


def tune_on_dataset(
    engine: Any, data: str | Path, shots: int = 1, episodes: int = 10, seed: int = 0, conf: float = 0.1,
    iou: float = 0.6, max_det: int = 300, progress: bool = True,
    penalties: Sequence[float] = PENALTIES,
) -> dict[str, Any]:
    """Run `tune_min_similarity` on a dataset's episodes (e.g. mochaworld small) with a loaded engine, once per
    `coarse_penalty` candidate; returns the best run plus `coarse_penalty` and `penalties` (one row each).

    Each image is detected/embedded once (cached); per episode the supports' ground-truth boxes are enrolled
    into a fresh conditional learner, as `Personalizer.enroll` does."""
    from mocha.core.progress import progress as bar
    from mocha.data import load_dataset, load_episodes, read_split

    spec = load_dataset(data)
    split, eps = load_episodes(spec, shots, n=episodes, seed=seed)
    cache = DetectionCache(engine, read_split(spec, split), conf, iou, max_det)
    get = cache.get
    learners = []
    for ep in bar(eps, desc="tune", unit="episode", enable=progress):
        learners.append((ep, *episode_learner(cache, spec, ep.support, engine.dim)))
        for i in ep.query:
            get(i)  # detect + embed now, under the progress bar
    runs = []
    for penalty in penalties:
        per_episode, enrolled = [], []
        for ep, learner, protos in learners:
            ids = learner.instances()
            queries = []
            for i in ep.query:
                c = get(i)
                idx, sim = identify(learner, protos, c["embs"], c["dets"][:, 5], float(penalty))
                nearest = np.where(idx >= 0, np.asarray(ids)[np.clip(idx, 0, None)], -1) if len(ids) else idx
                queries.append(QueryImage(c["boxes"], c["dets"][:, 4], nearest, sim, c["gt"], c["inst"]))
            per_episode.append(queries)
            enrolled.append(ids)
        runs.append(tune_min_similarity(per_episode, enrolled) | {"coarse_penalty": float(penalty)})
    out = max(runs, key=lambda r: np.nan_to_num(r["strict_map"], nan=-1.0))  # first best: the larger penalty
    out["penalties"] = [{"coarse_penalty": r["coarse_penalty"], "min_similarity": r["min_similarity"],
                         "strict_map": r["strict_map"]} for r in runs]
    out.update({"data": str(data), "split": split, "shots": shots, "episodes": len(eps), "seed": seed, "conf": conf})
    return out
