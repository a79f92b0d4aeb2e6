"""Stage 2 for a student without its training loss (NanoDet-g): L_det = distilling its own frozen outputs."""

from __future__ import annotations

import json

import pytest
import torch

from mocha.data.images import letterbox, load_image
from mocha.distill.self_distill import OutputDistillation, detection_drift, output_loss, resolve_det_loss
from mocha.distill.train import train
from mocha.errors import ConfigError
from mocha.models.bundle import load_bundle
from mocha.models.detector import Student
from mocha.models.nanodet import NanoDetStudent, load_shipped
from tests.test_distill_train import config, splits, tensors
from tests.test_nanodet import as_batch, package_image


@pytest.fixture(scope="module")
def nanodet() -> NanoDetStudent:
    return load_shipped()


def bus(imgsz: int = 416) -> torch.Tensor:
    return as_batch(letterbox(load_image(package_image("ultralytics/assets/bus.jpg")), imgsz)[0])[0]


def test_output_loss_is_zero_at_the_frozen_outputs_and_grows_with_change():
    g = torch.Generator().manual_seed(0)
    cls_t, box_t = torch.randn(2, 50, 80, generator=g), torch.randn(2, 50, 44, generator=g)
    assert output_loss(cls_t, box_t, cls_t, box_t).abs().item() < 1e-5
    small = output_loss(cls_t + 0.1, box_t + 0.1 * torch.randn_like(box_t), cls_t, box_t)
    big = output_loss(cls_t + 1.0, box_t + 1.0 * torch.randn_like(box_t), cls_t, box_t)
    assert 0 < small.item() < big.item()


def test_det_loss_choice_follows_the_student(nanodet):
    yolo = Student.create("yolov8n.yaml", names=["a", "b"])
    assert resolve_det_loss("auto", yolo) == "labels" and resolve_det_loss("auto", nanodet) == "self"
    assert resolve_det_loss("self", yolo) == "self"
    with pytest.raises(ConfigError, match="det_loss=self"):
        resolve_det_loss("labels", nanodet)


def test_shipped_student_loads_by_name(nanodet):
    s = Student.load("nanodet-g")
    assert isinstance(s, NanoDetStudent) and s.names == nanodet.names


def test_self_distillation_keeps_the_detections_while_features_move(nanodet, tmp_path):
    """One detection epoch on tiny images (L_dist pulls the features), L_det = the frozen outputs: the bundle
    loads, the backbone moved, and on a real photo the detections of the original are still there."""
    tr, va = splits(tmp_path / "data", n_images=6)
    student = load_shipped()
    cfg = config(tmp_path, "nd", epochs=2, det_every=2, batch=3, lr_student=1e-4, lambda_dist=1.0)
    best = train(cfg, student, tr, va)
    rows = [json.loads(x) for x in (best.parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["translator", "detection"] and rows[1]["loss_det"] >= 0
    assert all(0.0 <= r["val_drift_recall"] <= 1.0 and 0.0 <= r["val_drift_mean_iou"] <= 1.0 for r in rows)
    bundle = load_bundle(best.parent / "latest")
    assert isinstance(bundle.student, NanoDetStudent) and bundle.translator.heads == 12
    before = {k: v for k, v in nanodet.state_dict().items()}
    after = bundle.student.state_dict()
    moved = max((after[k] - before[k]).abs().max().item() for k in before)
    assert moved > 1e-6
    drift = detection_drift(nanodet, bundle.student, [bus()])
    assert drift["original_detections"] >= 2 and drift["recall"] == 1.0 and drift["mean_iou"] > 0.9
    assert set(tensors(best.parent / "latest")) == set(tensors(best))


def test_drift_sees_a_broken_detector(nanodet):
    broken = load_shipped()
    with torch.no_grad():
        for level in broken.head:
            level.gfl_cls.conv.bias[:80] -= 4.0  # every class score collapses
    drift = detection_drift(nanodet, broken, [bus()])
    assert drift["recall"] < 0.5 and detection_drift(nanodet, nanodet, [bus()])["recall"] == 1.0


def test_frozen_copy_does_not_follow_the_live_student(nanodet):
    live = load_shipped()
    sd = OutputDistillation(live)
    with torch.no_grad():
        next(live.parameters()).add_(1.0)
    img = bus(128)
    _, raw = live(img)
    assert sd.loss(img, raw).item() > 0
