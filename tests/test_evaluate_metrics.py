"""Episode metrics on hand-built detections whose correct values are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mocha.core.metrics import ImagePreds, ImageTruth, paper_map, strict_map, top1_accuracy


def P(boxes, conf, prob, label):
    return ImagePreds(np.array(boxes, float).reshape(-1, 4), np.array(conf, float), np.array(prob, float),
                      np.array(label, int))


def T(boxes, label):
    return ImageTruth(np.array(boxes, float).reshape(-1, 4), np.array(label, int))


A, B, C = [10, 10, 50, 50], [60, 60, 100, 100], [0, 60, 30, 90]


def test_perfect_predictions_score_full_marks():
    truths = [T([A, B], [3, 4]), T([C], [5])]
    preds = [P([A, B], [0.9, 0.8], [0.7, 0.6], [3, 4]), P([C], [0.5], [0.9], [5])]
    m, m50 = paper_map(preds, truths)
    assert m == pytest.approx(0.995) and m50 == pytest.approx(0.995)  # ultralytics' interpolation tops at 0.995
    assert strict_map(preds, truths, [3, 4, 5]) == pytest.approx(1.0)
    assert top1_accuracy(preds, truths) == 1.0


def test_wrong_identity_and_dropped_boxes():
    truths = [T([A], [3]), T([B], [4])]
    preds = [P([A], [0.9], [0.8], [4]), P([B], [0.9], [0.8], [-1])]  # swapped identity; dropped box
    assert paper_map(preds, truths) == (0.0, 0.0)
    assert strict_map(preds, truths, [3, 4]) == 0.0
    assert top1_accuracy(preds, truths) == 0.0


def test_paper_ignores_absent_instances_strict_does_not():
    truths = [T([A], [3])]
    preds = [P([A, B], [0.9, 0.95], [0.9, 0.9], [3, 7])]  # instance 7 is enrolled but not in the query GT
    assert paper_map(preds, truths)[0] == pytest.approx(0.995)
    assert strict_map(preds, truths, [3, 7]) == pytest.approx(0.5)  # AP(3) = 1, AP(7) = 0 (false identity only)
    assert strict_map(preds, truths, [3, 7, 9]) == pytest.approx(0.5)  # never predicted, never present: skipped


def test_strict_map_ranks_by_confidence_times_probability():
    # two boxes labelled 3: the correct one has higher coarse confidence but a lower product score
    truths = [T([A], [3])]
    good_first = [P([A, B], [0.9, 0.5], [0.9, 0.1], [3, 3])]
    bad_first = [P([A, B], [0.9, 0.5], [0.1, 0.9], [3, 3])]
    assert paper_map(good_first, truths) == paper_map(bad_first, truths)  # paper score ignores the probability
    assert strict_map(good_first, truths, [3]) > strict_map(bad_first, truths, [3])
    assert top1_accuracy(good_first, truths) == 1.0
    assert top1_accuracy(bad_first, truths) == 0.0  # the top k-box (by score) misses k's box


def test_localization_thresholds_and_accuracy_per_image_instance():
    shifted = [A[0] + 8, A[1], A[2] + 8, A[3]]  # IoU = 32*40/(48*40) = 0.667
    truths = [T([A], [3]), T([B, C], [4, 5])]
    preds = [P([shifted], [0.9], [1.0], [3]), P([B], [0.9], [1.0], [4])]
    m, m50 = paper_map(preds, truths)
    assert 0 < m < m50 < 1
    assert top1_accuracy(preds, truths) == pytest.approx(2 / 3)  # (img0, 3) hit, (img1, 4) hit, (img1, 5) miss


def test_no_ground_truth_is_nan_and_no_predictions_is_zero():
    assert all(math.isnan(v) for v in paper_map([P([], [], [], [])], [T([], [])]))
    assert paper_map([P([], [], [], [])], [T([A], [3])]) == (0.0, 0.0)
    assert strict_map([P([], [], [], [])], [T([A], [3])], [3]) == 0.0


def _random_episode(seed: int, n_images: int = 40, n_inst: int = 6):
    rng = np.random.default_rng(seed)
    preds, truths = [], []
    for _ in range(n_images):
        m = int(rng.integers(0, 4))
        xy = rng.uniform(0, 100, (m, 2))
        gb = np.concatenate([xy, xy + rng.uniform(10, 40, (m, 2))], 1).astype(np.float32)
        n = int(rng.integers(0, 8)) if m else int(rng.integers(0, 3))
        src = gb[rng.integers(0, m, n)] if m else rng.uniform(0, 100, (n, 4)).astype(np.float32)
        pb = (src + rng.normal(0, 4, (n, 4))).astype(np.float32)
        pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2] + 1)
        conf = np.round(rng.uniform(0.1, 1, n), 1).astype(np.float32)  # ties in confidence
        prob = rng.uniform(0, 1, n).astype(np.float32)
        preds.append(ImagePreds(pb.reshape(-1, 4), conf, prob, rng.integers(-1, n_inst, n)))
        truths.append(ImageTruth(gb.reshape(-1, 4), rng.integers(0, n_inst - 1, m)))  # the last: never present
    return preds, truths


def _paper_map_image_by_image(preds, truths):
    """The reference: ultralytics' validator matching called once per image, then `ap_per_class`."""
    from types import SimpleNamespace

    import torch
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import ap_per_class, box_iou

    from mocha.core.metrics import IOUV

    tps, confs, classes = [], [], []
    for p, g in zip(preds, truths, strict=True):
        keep = np.flatnonzero(p.label >= 0)
        order = keep[np.argsort(-p.conf[keep], kind="stable")]
        if len(order) and len(g.label):
            iou = box_iou(torch.as_tensor(g.boxes, dtype=torch.float32),
                          torch.as_tensor(p.boxes[order], dtype=torch.float32))
            tps.append(BaseValidator.match_predictions(SimpleNamespace(iouv=IOUV), torch.as_tensor(p.label[order]),
                                                       torch.as_tensor(g.label), iou).numpy())
        else:
            tps.append(np.zeros((len(order), 10), bool))
        confs.append(p.conf[order])
        classes.append(p.label[order])
    ap = ap_per_class(np.concatenate(tps), np.concatenate(confs), np.concatenate(classes),
                      np.concatenate([g.label for g in truths]))[5]
    return float(ap.mean()), float(ap[:, 0].mean())


@pytest.mark.parametrize("block", [1 << 22, 40])
def test_paper_map_matches_images_together_as_one_by_one(block, monkeypatch):
    """Matching many images in one call (no match across images) gives the per-image protocol's numbers exactly,
    also when the images are split into several blocks; duplicates, misses, empty images and ties included."""
    import mocha.core.metrics as metrics

    monkeypatch.setattr(metrics, "MATCH_BLOCK", block)
    preds, truths = _random_episode(3, n_images=60)
    assert paper_map(preds, truths) == _paper_map_image_by_image(preds, truths)


def test_strict_map_is_faster_coco_evals_ap_over_enrolled_instances():
    """The reference: faster-coco-eval with its default parameters, `summarize()`'s AP, and an enrolled instance
    that is detected but absent from the ground truth counted as AP 0."""
    from faster_coco_eval import COCO, COCOeval_faster

    for seed in range(3):
        preds, truths = _random_episode(seed)
        enrolled = list(range(6))
        images, anns, dets = [], [], []
        for i, (p, g) in enumerate(zip(preds, truths, strict=True)):
            images.append({"id": i + 1, "width": float(max([1.0, *g.boxes[:, 2], *p.boxes[:, 2]])),
                           "height": float(max([1.0, *g.boxes[:, 3], *p.boxes[:, 3]]))})
            for b, k in zip(g.boxes, g.label, strict=True):
                w, h = float(b[2] - b[0]), float(b[3] - b[1])
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(k),
                             "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h, "iscrowd": 0})
            dets += [{"image_id": i + 1, "category_id": int(k), "score": float(s),
                      "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
                     for b, k, s in zip(p.boxes, p.label, p.score, strict=True) if k >= 0]
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in enrolled]}
        gt.createIndex()
        ev = COCOeval_faster(gt, gt.loadRes(dets), "bbox")
        present = sorted({a["category_id"] for a in anns})
        ev.params.catIds = present
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        zeros = {d["category_id"] for d in dets} - set(present)
        assert zeros  # the never-present instance is detected: it must cost
        want = ev.stats[0] * len(present) / (len(present) + len(zeros))
        assert strict_map(preds, truths, enrolled) == pytest.approx(want, abs=1e-12)
