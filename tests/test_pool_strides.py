"""YOLO students pooling a subset of the head's maps (`mocha distill pool_strides=8`: P3 alone): the detections stay
the same, the region vector shrinks to the chosen maps, the choice survives save / load and a bundle, and the ONNX
export carries only those maps with the same boxes and embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mocha.data.images import letterbox
from mocha.errors import ConfigError
from mocha.export.onnx_export import export_onnx
from mocha.export.onnx_runner import OnnxEngine
from mocha.models.bundle import load_bundle, save_bundle
from mocha.models.detector import Student
from mocha.models.translator import Translator
from mocha.personalize.engine import TorchEngine
from tests.test_export_parity import DIM, NAMES, perturbed_bundle, photos


def test_p3_alone_keeps_the_detector_and_pools_p3(tmp_path):
    torch.manual_seed(0)
    full = Student.create("yolov8n.yaml", names=NAMES).eval()
    p3 = Student.create("yolov8n.yaml", names=NAMES).eval()
    p3.load_state_dict(full.state_dict())
    p3.pool_levels([8])
    assert p3.strides == (8,) and p3.feature_dims == (64,) and p3.region_dim == 64 and full.region_dim == 448
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        f_full, raw_full = full(x)
        f_p3, raw_p3 = p3(x)
    assert len(f_p3) == 1 and torch.equal(f_p3[0], f_full[0])
    assert all(torch.equal(a, b) for a, b in zip(full.dense_outputs(raw_full), p3.dense_outputs(raw_p3), strict=True))
    boxes = [torch.tensor([[8.0, 16.0, 100.0, 90.0]])]
    assert torch.equal(p3.region_features(f_p3, boxes), full.region_features(f_full, boxes)[:, :64])
    assert p3.architecture()["pool_strides"] == [8] and "pool_strides" not in full.architecture()
    back = Student.load(p3.save(tmp_path / "s.safetensors"))
    assert back.strides == (8,) and back.region_dim == 64
    p45 = Student.create("yolov8n.yaml", names=NAMES)
    p45.pool_levels([32, 16])
    assert p45.strides == (16, 32) and p45.feature_dims == (128, 256)
    p45.pool_levels([8, 16, 32])  # all of them: the default again
    assert p45.levels is None and p45.region_dim == 448


def test_bad_strides_name_the_option():
    s = Student.create("yolov8n.yaml", names=NAMES)
    with pytest.raises(ConfigError, match=r"pool_strides=4: choose among this student's map strides 8,16,32"):
        s.pool_levels([4])
    with pytest.raises(ConfigError, match="pool_strides"):
        s.pool_levels([])


def test_a_p3_bundle_exports_p3_alone_with_the_same_maps_and_embeddings(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        img = photos()[0]
        full = load_bundle(perturbed_bundle(tmp_path / "full", img))  # BatchNorms far from identity, spread scores
        student = full.student
        student.pool_levels([8])
        g = torch.Generator().manual_seed(2)
        translator = Translator(64, DIM, heads=2)
        with torch.no_grad():
            translator.mu.copy_(torch.randn(64, generator=g))
            translator.sigma.copy_(0.5 + torch.rand(64, generator=g))
        bundle = save_bundle(tmp_path / "p3", student, translator.eval(), full.pca, {"imgsz": 320})
        assert load_bundle(bundle).student.region_dim == 64
        pt = TorchEngine.load(bundle, device="cpu")
        ox = OnnxEngine(export_onnx(bundle, tmp_path / "onnx"), threads=1)
        assert ox.maps == ["p3"]
        lb_img, _ = letterbox(img, 320)
        with torch.no_grad():
            feats, _ = pt.bundle.student(pt._tensor(lb_img))
        _, ofeats = ox.forward(lb_img)
        assert len(feats) == len(ofeats) == 1 and ofeats[0].shape == (1, 64, 40, 40)
        assert np.abs(ofeats[0] - feats[0].numpy()).max() <= 1e-4 * max(1.0, float(feats[0].abs().max()))
        d_pt, m_pt = pt.detect(lb_img, conf=0.0, max_det=50)
        d_ox, m_ox = ox.detect(lb_img, conf=0.0, max_det=50)
        assert len(d_pt) == len(d_ox) == 50 and np.abs(d_pt[:, :4] - d_ox[:, :4]).max() <= 1e-4 * 320
        assert m_pt.shape == (50, DIM) and np.abs(m_pt - m_ox).max() <= 1e-4 * max(1.0, np.abs(m_pt).max())
    finally:
        torch.set_num_threads(threads)


def test_pool_strides_is_for_yolo_students():
    from mocha.distill.train import attach_pool_strides
    from mocha.models.nanodet import load_shipped

    with pytest.raises(ConfigError, match="pool_strides=8: YOLO students only; nanodet-g chooses its maps with "
                                          "stride4 / stride4_only"):
        attach_pool_strides(load_shipped(), "nanodet-g", [8])
    s = Student.create("yolov8n.yaml", names=NAMES)
    attach_pool_strides(s, "yolov8n.yaml", [8, 16])
    assert s.strides == (8, 16)
