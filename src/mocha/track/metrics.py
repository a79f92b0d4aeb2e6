"""Tracking metrics through motmetrics (MOTA, IDF1, ID switches) and identity accuracy per matched box.

motmetrics 1.4's own `iou_matrix` calls `np.asfarray` (gone in numpy 2), so distances are computed here;
its accumulator and metric computations are used as they are.
"""

from __future__ import annotations

import numpy as np

from mocha.track.mot import MotTable

IOU_MATCH = 0.5  # a hypothesis box covers a ground-truth box at IoU >= 0.5 (MOT challenge convention)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,4) × (m,4) xyxy → (n,m) IoU."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def mot_metrics(gt: MotTable, hyp: MotTable, frames: int, iou: float = IOU_MATCH) -> dict[str, float]:
    """MOTA, IDF1, ID switches (and their ingredients) of `hyp` against `gt` over frames 1..`frames`.
    Hypothesis ids must be unique within a frame."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for f in range(1, frames + 1):
        g, h = gt.at(f), hyp.at(f)
        if len(np.unique(hyp.id[h])) != len(h):
            raise ValueError(f"frame {f}: hypothesis ids repeat within the frame")
        d = 1.0 - iou_matrix(gt.xyxy[g], hyp.xyxy[h])
        d[d > 1.0 - iou] = np.nan  # NaN = may not be matched
        acc.update(gt.id[g].tolist(), hyp.id[h].tolist(), d)
    names = ["mota", "motp", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects",
             "precision", "recall"]
    row = mm.metrics.create().compute(acc, metrics=names, name="clip").iloc[0]
    out = {k: float(row[k]) for k in names}
    out["idsw"] = out.pop("num_switches")
    return out


def identity_accuracy(gt: MotTable, hyp: MotTable, frames: int, iou: float = IOU_MATCH) -> dict[str, float]:
    """Per frame, match GT to shown boxes one-to-one at IoU >= `iou` (max total IoU); a matched GT box is
    right when the box shows its instance. `id_accuracy` = right / matched, `id_recall` = right / all GT,
    `id_accuracy_frame` = mean over frames with a matched box of that frame's right / matched."""
    from scipy.optimize import linear_sum_assignment

    right = matched = 0
    per_frame: list[float] = []
    for f in range(1, frames + 1):
        g, h = gt.at(f), hyp.at(f)
        if not len(g) or not len(h):
            continue
        m = iou_matrix(gt.xyxy[g], hyp.xyxy[h])
        rows, cols = linear_sum_assignment(-m)
        ok = m[rows, cols] >= iou
        rows, cols = rows[ok], cols[ok]
        good = int((gt.instance[g][rows] == hyp.instance[h][cols]).sum())
        right += good
        matched += len(rows)
        if len(rows):
            per_frame.append(good / len(rows))
    return {"id_accuracy": right / matched if matched else 0.0,
            "id_recall": right / len(gt) if len(gt) else 0.0,
            "id_accuracy_frame": float(np.mean(per_frame)) if per_frame else 0.0}
