"""Episode metrics: the paper protocol (ultralytics AP), a strict COCO-style mAP (faster-coco-eval), top-1 accuracy.

Every function takes one episode's query images as `ImagePreds` (relabelled detections) and `ImageTruth`
(ground-truth instance boxes), boxes xyxy in any one pixel frame. Results are fractions in [0, 1].

- `paper_map`: ultralytics' validator matching (`box_iou` + `match_predictions`, IoU 0.50:0.95) and
  `ap_per_class`; score = coarse confidence; classes = instances present in the query ground truth
  (predictions of other instances are ignored, as `ap_per_class` does). Dropped boxes (label -1) are not
  predictions.
- `strict_map`: COCO mAP@[.5:.95] over *all enrolled instances* as categories, score = coarse confidence x
  instance probability (faster-coco-eval, maxDets 100). An enrolled instance with no query ground truth but
  with detections counts as AP 0 (COCO itself would skip it), so false identities always cost.
- `top1_accuracy`: for each query image and each instance k in its ground truth, take the detection labelled
  k with the highest score (coarse confidence x instance probability); a hit when it exists and has IoU >= 0.5
  with a ground-truth box of k. Accuracy = hits / (image, instance) pairs — "where is my k in this image?".
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

# Report columns: metric key → table header (report.md, plots).
COLUMNS = [
    ("map50_95", "mAP50-95"),
    ("map50", "mAP50"),
    ("strict_map50_95", "strict mAP50-95"),
    ("accuracy", "top-1 acc"),
]

IOUV = torch.linspace(0.5, 0.95, 10)


@dataclass
class ImagePreds:
    """Relabelled detections of one query image: boxes (n,4) xyxy, conf (n,), prob (n,), label (n,) (-1 = dropped)."""

    boxes: np.ndarray
    conf: np.ndarray
    prob: np.ndarray
    label: np.ndarray

    @property
    def score(self) -> np.ndarray:
        return self.conf * self.prob


@dataclass
class ImageTruth:
    """Ground truth of one query image: boxes (m,4) xyxy and instance ids (m,)."""

    boxes: np.ndarray
    label: np.ndarray


MATCH_BLOCK = 1 << 22  # IoU entries per matching call: images are matched together up to this (GT x predictions)


def _pair_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of box a[i] with box b[i]: ultralytics' `box_iou` formula, operation for operation (float32), on pairs."""
    wh = (torch.min(a[:, 2:], b[:, 2:]) - torch.max(a[:, :2], b[:, :2])).clamp_(0)
    wh1, wh2 = a[:, 2:] - a[:, :2], b[:, 2:] - b[:, :2]
    inter = wh[:, 0] * wh[:, 1]
    return inter / (wh1[:, 0] * wh1[:, 1] + wh2[:, 0] * wh2[:, 1] - inter + eps)


def _match_block(gt_boxes: list[np.ndarray], gt_labels: list[np.ndarray], pred_boxes: list[np.ndarray],
                 pred_labels: list[np.ndarray]) -> np.ndarray:
    """(n, 10) correct flags of several images' predictions (each image's in descending confidence) in one call of
    ultralytics' validator matching. The IoU is computed for the (GT, prediction) pairs of the same image only and
    is 0 across images, so no match crosses an image and the greedy matcher walks each image's predictions in the
    same order, with the same IoU values, as image by image."""
    from ultralytics.engine.validator import BaseValidator

    m = np.array([len(g) for g in gt_labels])
    n = np.array([len(p) for p in pred_labels])
    if n.sum() == 0 or m.sum() == 0:
        return np.zeros((int(n.sum()), len(IOUV)), dtype=bool)
    pairs = m * n
    img = np.repeat(np.arange(len(m)), pairs)
    local = np.arange(pairs.sum()) - np.repeat(np.cumsum(pairs) - pairs, pairs)
    gi = (np.cumsum(m) - m)[img] + local // n[img]
    pj = (np.cumsum(n) - n)[img] + local % n[img]
    gt = torch.as_tensor(np.concatenate(gt_boxes), dtype=torch.float32)
    pr = torch.as_tensor(np.concatenate(pred_boxes), dtype=torch.float32)
    iou = torch.zeros(int(m.sum()), int(n.sum()))
    iou[gi, pj] = _pair_iou(gt[gi], pr[pj])
    return BaseValidator.match_predictions(
        SimpleNamespace(iouv=IOUV), torch.as_tensor(np.concatenate(pred_labels)),
        torch.as_tensor(np.concatenate(gt_labels)), iou).numpy()


def paper_map(preds: Sequence[ImagePreds], truths: Sequence[ImageTruth]) -> tuple[float, float]:
    """(mAP50-95, mAP50) of the paper protocol over the instances present in the query ground truth."""
    from ultralytics.utils.metrics import ap_per_class

    gts, preds_in_order = [], []  # per image: (boxes, labels), predictions kept and in descending confidence
    for p, g in zip(preds, truths, strict=True):
        keep = np.flatnonzero(p.label >= 0)
        order = keep[np.argsort(-p.conf[keep], kind="stable")]
        gts.append((np.asarray(g.boxes).reshape(-1, 4), np.asarray(g.label)))
        preds_in_order.append((np.asarray(p.boxes).reshape(-1, 4)[order], p.label[order], p.conf[order]))
    target_cls = np.concatenate([g[1] for g in gts]) if gts else np.zeros(0)
    if len(target_cls) == 0:
        return float("nan"), float("nan")
    tps, start, rows, cols = [], 0, 0, 0
    for i in range(len(gts) + 1):  # consecutive images matched together while their IoU matrix stays small
        if i == len(gts) or (i > start and (rows + len(gts[i][1])) * (cols + len(preds_in_order[i][1])) > MATCH_BLOCK):
            part = range(start, i)
            tps.append(_match_block([gts[k][0] for k in part], [gts[k][1] for k in part],
                                    [preds_in_order[k][0] for k in part], [preds_in_order[k][1] for k in part]))
            start, rows, cols = i, 0, 0
        if i < len(gts):
            rows, cols = rows + len(gts[i][1]), cols + len(preds_in_order[i][1])
    tp = np.concatenate(tps)
    if len(tp) == 0:
        return 0.0, 0.0
    conf = np.concatenate([p[2] for p in preds_in_order])
    pred_cls = np.concatenate([p[1] for p in preds_in_order])
    ap = ap_per_class(tp, conf, pred_cls, target_cls)[5]
    return float(ap.mean()), float(ap[:, 0].mean())


def strict_map(preds: Sequence[ImagePreds], truths: Sequence[ImageTruth], enrolled: Sequence[int]) -> float:
    """COCO mAP@[.5:.95] over all enrolled instances, score = confidence x instance probability."""
    from faster_coco_eval import COCO, COCOeval_faster

    cats = sorted(int(k) for k in enrolled)
    images, gt_rows, det_rows = [], [], []  # rows: image id, x, y, w, h, category (, score), in each box's dtype
    for i, (p, g) in enumerate(zip(preds, truths, strict=True)):
        gb, pb = np.asarray(g.boxes).reshape(-1, 4), np.asarray(p.boxes).reshape(-1, 4)
        images.append({"id": i + 1, "width": float(max([1.0, *gb[:, 2].tolist(), *pb[:, 2].tolist()])),
                       "height": float(max([1.0, *gb[:, 3].tolist(), *pb[:, 3].tolist()]))})
        gt_rows += zip([i + 1] * len(gb), gb[:, 0].tolist(), gb[:, 1].tolist(), (gb[:, 2] - gb[:, 0]).tolist(),
                       (gb[:, 3] - gb[:, 1]).tolist(), np.asarray(g.label).tolist(), strict=True)
        k = np.flatnonzero(np.asarray(p.label) >= 0)
        b = pb[k]
        det_rows += zip([i + 1] * len(k), b[:, 0].tolist(), b[:, 1].tolist(), (b[:, 2] - b[:, 0]).tolist(),
                        (b[:, 3] - b[:, 1]).tolist(), np.asarray(p.label)[k].tolist(),
                        np.asarray(p.score)[k].tolist(), strict=True)
    anns = [{"id": n + 1, "image_id": im, "category_id": int(c), "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
            for n, (im, x, y, w, h, c) in enumerate(gt_rows)]
    dets = [{"image_id": im, "category_id": int(c), "score": float(sc), "bbox": [x, y, w, h]}
            for im, x, y, w, h, c, sc in det_rows]
    present = {a["category_id"] for a in anns}
    predicted = {d["category_id"] for d in dets}
    scored = [c for c in cats if c in present]
    zeros = [c for c in cats if c not in present and c in predicted]  # only false identities: AP 0
    if not scored:
        return 0.0 if zeros else float("nan")
    if not dets:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in cats]}
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval_faster(gt, dt, "bbox")
        ev.params.catIds = scored
        # only what stats[0] (AP@[.5:.95], all areas, 100 detections) reads: the other area ranges and detection
        # caps would cost three quarters of the evaluation
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0.0, 1e10]], ["all"], [100]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, 0]  # (IoU thresholds, recall points, categories)
    ap = float(precision[precision > -1].mean()) if (precision > -1).any() else 0.0
    return ap * len(scored) / (len(scored) + len(zeros))


def top1_accuracy(preds: Sequence[ImagePreds], truths: Sequence[ImageTruth]) -> float:
    """Fraction of (query image, instance in its ground truth) pairs whose top-scoring k-labelled box hits k."""
    from ultralytics.utils.metrics import box_iou

    hits = total = 0
    for p, g in zip(preds, truths, strict=True):
        iou = None  # (n_pred, n_gt), computed once per image and only when some instance was labelled
        for k in np.unique(g.label).tolist():
            total += 1
            mine = np.flatnonzero(p.label == k)
            if len(mine) == 0:
                continue
            if iou is None:
                iou = box_iou(torch.as_tensor(p.boxes, dtype=torch.float32),
                              torch.as_tensor(g.boxes, dtype=torch.float32)).numpy()
            best = mine[np.argmax(p.score[mine])]
            hits += int(bool((iou[best, g.label == k] >= 0.5).any()))
    return hits / total if total else float("nan")
