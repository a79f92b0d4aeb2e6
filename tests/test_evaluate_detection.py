"""Coarse detection mAP of a student's own boxes (mocha.evaluate.detection), on the tiny world's real labels:
a detector that returns the ground truth scores 99.5 (ultralytics' AP tops out there), one with the wrong
classes 0, one with boxes shifted by a tenth of their size in between; detector classes are mapped to the
dataset's by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mocha.data.dataset import load_dataset
from mocha.data.images import letterbox, load_image, norm_cxcywh_to_xyxy
from mocha.data.records import read_split
from mocha.evaluate.detection import coarse_detection_map

IMGSZ = 128


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from mocha.data.world import generate_world

    return generate_world(tmp_path_factory.mktemp("world") / "w", size="tiny", seed=0, progress=False)


class GroundTruthDetector:
    """Returns each image's ground-truth boxes (found by the image's pixels), optionally shifted or relabelled."""

    def __init__(self, world: Path, names: list[str], shift: float = 0.0, relabel: bool = False) -> None:
        spec = load_dataset(world)
        self.names = names
        self.truth: dict[bytes, np.ndarray] = {}
        for r in read_split(spec, "personal"):
            img = load_image(r.image)
            lb_img, lb = letterbox(img, IMGSZ)
            boxes = lb.to_letterbox(norm_cxcywh_to_xyxy(r.boxes, img.shape[1], img.shape[0]))
            wh = boxes[:, 2:] - boxes[:, :2]
            boxes = boxes + shift * np.concatenate([wh, wh], 1)
            # the detector's class index of each box's coarse name (names may be ordered differently)
            cls = np.array([names.index(spec.names[c]) for c in r.coarse], np.float32)
            if relabel:
                cls = (cls + 1) % len(names)
            key = (torch.from_numpy(lb_img).permute(2, 0, 1).float() / 255.0).numpy().tobytes()
            self.truth[key] = np.concatenate([boxes, np.ones((len(boxes), 1)), cls[:, None]], 1).astype(np.float32)

    def to(self, device):
        return self

    def eval(self):
        return self

    def detect(self, images: torch.Tensor, conf: float, iou: float):
        return [torch.from_numpy(self.truth[im.numpy().tobytes()]) for im in images], None


@pytest.mark.parametrize(("shift", "relabel", "expect"), [(0.0, False, (99.5, 99.5)), (0.0, True, (0.0, 0.0)),
                                                          (0.1, False, None)])
def test_coarse_detection_map_scores_the_boxes_it_is_given(world, monkeypatch, shift, relabel, expect):
    names = list(reversed(load_dataset(world).names))  # detector order ≠ dataset order: mapped by name
    fake = GroundTruthDetector(world, names, shift, relabel)
    monkeypatch.setattr("mocha.evaluate.episodic.load_box_source", lambda path, device: fake)
    got = coarse_detection_map("unused", world, imgsz=IMGSZ)
    if expect is not None:
        assert (got["map50_95"], got["map50"]) == pytest.approx(expect, abs=1e-6)
    else:  # shifted by a tenth of its size a box keeps IoU 0.81 / 1.19 = 0.68: a hit at 0.5-0.65, 4 of 10 thresholds
        assert got["map50"] == pytest.approx(99.5) and got["map50_95"] == pytest.approx(0.4 * 99.5)


def test_a_real_student_loads_from_weights_or_a_bundle(world, tmp_path):
    from mocha.models.bundle import save_bundle
    from mocha.models.detector import Student
    from mocha.models.translator import Translator

    names = load_dataset(world).names
    student = Student.create("yolov8n.yaml", names=names)
    student.save(tmp_path / "s.safetensors")
    bundle = save_bundle(tmp_path / "bundle", student, Translator(448, 8), None, {})
    a = coarse_detection_map(tmp_path / "s.safetensors", world, imgsz=64)
    b = coarse_detection_map(bundle, world, imgsz=64)
    assert a == b and 0 <= a["map50_95"] <= a["map50"] <= 100  # the same weights, however they are given
