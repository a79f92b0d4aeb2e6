"""NanoDet-g pooling its stride-4 level (`mocha distill stride4=true`): the first CSP stage's 64 channels join the
region vector (448-d), the detections and the PAN maps stay exactly the shipped ones, and the ONNX export carries
the extra map (p2) with the same boxes and embeddings. `stride4_only=true` pools that map alone (64-d). The weights
are the shipped ones either way, so a bundle refers to the shipped file and records the pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mocha.data.images import letterbox
from mocha.distill.train import attach_stride4
from mocha.errors import ConfigError
from mocha.export.onnx_export import export_onnx, map_names
from mocha.export.onnx_runner import OnnxEngine
from mocha.models.bundle import load_bundle, save_bundle
from mocha.models.detector import Student
from mocha.models.nanodet import NanoDetStudent, load_shipped
from mocha.models.translator import Translator
from mocha.personalize.engine import TorchEngine
from tests.test_distill_self import bus
from tests.test_export_parity import photos


@pytest.fixture(scope="module")
def original() -> NanoDetStudent:
    torch.set_num_threads(2)
    return load_shipped().eval()


def fine(only: bool = False) -> NanoDetStudent:
    m = load_shipped()
    m.add_stride4_level(only=only)
    return m.eval()


def test_the_stride4_level_comes_first_and_nothing_else_changes(original, tmp_path):
    x = bus(256)[None]
    m = fine()
    assert m.strides == (4, 8, 16, 32) and m.feature_dims == (64, 128, 128, 128) and m.region_dim == 448
    assert m.shipped_as == original.shipped_as and original.region_dim == 384  # the same weights
    with torch.no_grad():
        f0, _ = original(x)
        f1, _ = m(x)
        d0, _ = original.detect(x)
        d1, _ = m.detect(x)
        first = original.backbone.stages[0](torch.nn.functional.max_pool2d(
            original.backbone.stem(original.preprocess(x)), 3, 2, padding=1))
    assert len(f1) == 4 and f1[0].shape == (1, 64, 64, 64) and torch.equal(f1[0], first)
    assert all(torch.equal(a, b) for a, b in zip(f0, f1[1:], strict=True))
    assert torch.equal(d0[0], d1[0]) and len(d0[0]) >= 2
    boxes = [torch.tensor([[10.0, 20.0, 120.0, 200.0]])]
    assert torch.allclose(m.region_features(f1, boxes)[:, 64:], original.region_features(f0, boxes))
    m.save(tmp_path / "s.safetensors")
    back = Student.load(tmp_path / "s.safetensors")
    assert isinstance(back, NanoDetStudent) and back.stride4 and back.region_dim == 448
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(back.eval()(x)[0], f1, strict=True))
    with pytest.raises(ConfigError, match="already pools the stride-4 level"):
        m.add_stride4_level()


def test_with_a_branch_the_stride4_level_stays_the_detectors(original):
    x = bus(256)[None]
    m = load_shipped()
    m.add_embedding_branch(1, light=True)
    m.add_stride4_level()
    with torch.no_grad():
        for p in m.embed_stages.parameters():
            p.mul_(1.1)
        f0, _ = original(x)
        f1, _ = m.eval()(x)
    assert len(f1) == 4 and torch.equal(f1[0], fine()(x)[0][0])
    assert max((a - b).abs().max().item() for a, b in zip(f0, f1[1:], strict=True)) > 1e-3  # the branch moved


def test_attach_stride4_only_for_nanodet():
    yolo = Student.create("yolov8n.yaml", names=["a", "b"])
    with pytest.raises(ConfigError, match="stride4=true: only nanodet-g has a stride-4 pooling level; yolov8n.yaml"):
        attach_stride4(yolo, "yolov8n.yaml")
    m = fine()
    attach_stride4(m, "bundle")  # a student that pools it already keeps it
    assert m.strides == (4, 8, 16, 32)


def test_stride4_only_pools_the_first_stage_alone(original, tmp_path):
    x = bus(256)[None]
    m = fine(only=True)
    assert m.strides == (4,) and m.feature_dims == (64,) and m.region_dim == 64
    with torch.no_grad():
        f, _ = m(x)
        d0, _ = original.detect(x)
        d1, _ = m.detect(x)
    assert len(f) == 1 and torch.equal(f[0], fine()(x)[0][0])
    assert torch.equal(d0[0], d1[0])  # the detector untouched
    boxes = [torch.tensor([[10.0, 20.0, 120.0, 200.0]])]
    assert torch.allclose(m.region_features(f, boxes), fine().region_features(fine()(x)[0], boxes)[:, :64])
    m.save(tmp_path / "s.safetensors")
    back = Student.load(tmp_path / "s.safetensors")
    assert back.stride4_only and back.region_dim == 64
    with pytest.raises(ConfigError, match="stride4_only.*branch only changes the PAN maps"):
        _branch_then_only()
    with pytest.raises(ConfigError, match="pools its stride-4 map alone"):
        m.add_embedding_branch(1)


def _branch_then_only() -> None:
    m = load_shipped()
    m.add_embedding_branch(1)
    m.add_stride4_level(only=True)


def test_attach_stride4_refuses_a_student_that_pools_other_levels():
    with pytest.raises(ConfigError, match="stride4_only=true: student=bundle already pools the stride-4 map and the "
                                          "PAN; give stride4_only=false"):
        attach_stride4(fine(), "bundle", only=True)
    with pytest.raises(ConfigError, match="stride4=true: student=b already pools the stride-4 map alone"):
        attach_stride4(fine(only=True), "b")
    m = load_shipped()
    attach_stride4(m, "nanodet-g", only=True)
    assert m.region_dim == 64


@pytest.mark.parametrize("only", [False, True])
def test_a_stride4_bundle_refers_to_the_shipped_file_and_exports_with_the_same_boxes_and_embeddings(tmp_path, only):
    from mocha.teacher.pca import PCAArtifact

    width = 64 if only else 448
    g = torch.Generator().manual_seed(4)
    translator = Translator(width, 16, heads=width // 32)
    with torch.no_grad():
        translator.mu.copy_(torch.randn(width, generator=g))
    pca = PCAArtifact.fit(torch.randn(200, 32, generator=g), 16)
    bundle = save_bundle(tmp_path / "bundle", fine(only), translator.eval(), pca, {"imgsz": 256})
    # the shipped weights: the bundle refers to them and records the pooling
    loaded = load_bundle(bundle)
    assert not (bundle / "student.safetensors").exists() and loaded.student.stride4_only == only
    assert loaded.student.region_dim == width
    assert Student.load(bundle).region_dim == width  # a bundle folder as the student: the shipped file, as recorded
    pt = TorchEngine.load(bundle, device="cpu")
    ox = OnnxEngine(export_onnx(bundle, tmp_path / "onnx"), threads=1)
    assert ox.maps == map_names(loaded.student.strides) == (["p2"] if only else ["p2", "p3", "p4", "p5"])
    lb_img, _ = letterbox(photos()[0], 256)
    d_pt, m_pt = pt.detect(lb_img, conf=0.05, max_det=50)
    d_ox, m_ox = ox.detect(lb_img, conf=0.05, max_det=50)
    assert len(d_pt) == len(d_ox) > 0 and np.abs(d_pt[:, :4] - d_ox[:, :4]).max() <= 1e-3
    assert np.abs(m_pt - m_ox).max() <= 1e-4 * max(1.0, np.abs(m_pt).max())
