"""NanoDet-g with an embedding branch (`mocha distill branch=k`): stage 2 moves a copy of the last k CSP stages and
the neck that regions are pooled from, while the detector stays exactly the shipped one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mocha.distill.self_distill import resolve_det_loss
from mocha.distill.train import attach_branch, train
from mocha.errors import ConfigError
from mocha.export.onnx_export import export_onnx
from mocha.export.onnx_runner import OnnxEngine
from mocha.models.bundle import load_bundle, save_bundle
from mocha.models.detector import Student
from mocha.models.nanodet import NanoDetStudent, load_shipped
from mocha.models.translator import Translator
from mocha.personalize.engine import TorchEngine
from tests.test_distill_self import bus
from tests.test_distill_train import config, splits


@pytest.fixture(scope="module")
def original() -> NanoDetStudent:
    torch.set_num_threads(2)
    return load_shipped().eval()


def branched(k: int = 1, light: bool = False) -> NanoDetStudent:
    m = load_shipped()
    m.add_embedding_branch(k, light=light)
    return m.eval()


def test_a_new_branch_pools_the_detector_maps_and_only_it_trains(original):
    x = bus(256)[None]
    m = branched(1)
    with torch.no_grad():
        f0, r0 = original(x)
        f1, r1 = m(x)
    assert all(torch.equal(a, b) for a, b in zip(f0, f1, strict=True))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(r0, r1, strict=True))
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("embed_stages.", "embed_neck.")) for n in trainable)
    assert any(n.startswith("embed_stages.") for n in trainable) and m.detector_frozen
    feats, raw = m.train()(x)
    sum(f.square().mean() for f in feats).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in m.named_parameters() if n in trainable)
    assert all(p.grad is None for n, p in m.named_parameters() if n not in trainable)
    assert not any(c.requires_grad or d.requires_grad for c, d in raw)  # nothing reaches the detections


def test_a_moved_branch_changes_the_maps_never_the_detections(original, tmp_path):
    x = bus()[None]
    m = branched(2)
    with torch.no_grad():
        for p in m.embed_stages.parameters():
            p.mul_(1.1)
        d0, f0 = original.detect(x)
        d1, f1 = m.detect(x)
    assert torch.equal(d0[0], d1[0]) and len(d0[0]) >= 2
    assert max((a - b).abs().max().item() for a, b in zip(f0, f1, strict=True)) > 1e-3
    m.save(tmp_path / "s.safetensors")
    back = Student.load(tmp_path / "s.safetensors")
    assert isinstance(back, NanoDetStudent) and back.branch_stages == 2 and back.weights_digest() == m.weights_digest()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(back.eval()(x)[0], f1, strict=True))


@pytest.mark.parametrize("k", [1, 2])
def test_a_light_branch_is_the_full_branch_with_shared_parts(original, tmp_path, k):
    """branch_light: the maps equal those of a full branch whose copied input conv and unchanged laterals are the
    detector's (the neck is linear after its laterals), only the copied parts train, and it saves and loads."""
    x = bus(256)[None]
    m = branched(k, light=True)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(original(x)[0], m(x)[0], strict=True))  # a new branch: no change
        for p in (*m.embed_stages.parameters(), *m.embed_laterals.parameters()):
            p.mul_(1.1)
    full = branched(k)
    with torch.no_grad():
        for name, p in full.embed_stages.named_parameters():
            if not name.startswith("0.in_conv."):
                p.copy_(dict(m.embed_stages.named_parameters())[name])
        for key, lateral in m.embed_laterals.items():
            full.embed_neck.lateral[int(key)].load_state_dict(lateral.state_dict())
        fl, fm = full(x)[0], m(x)[0]
        d0, _ = original.detect(x)
        d1, _ = m.detect(x)
    assert max((a - b).abs().max().item() for a, b in zip(fl, fm, strict=True)) < 1e-4
    assert max((a - b).abs().max().item() for a, b in zip(original(x)[0], fm, strict=True)) > 1e-3
    assert torch.equal(d0[0], d1[0])
    assert sorted(m.embed_laterals) == [str(i) for i in range(3 - k, 3)]  # the levels the branch changes
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert all(n.startswith(("embed_stages.", "embed_laterals.")) for n in trainable)
    assert not any(n.startswith("embed_stages.0.in_conv.") for n, _ in m.named_parameters())
    m.save(tmp_path / "s.safetensors")
    back = Student.load(tmp_path / "s.safetensors")
    assert back.branch_light and back.branch_stages == k and back.weights_digest() == m.weights_digest()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(back.eval()(x)[0], fm, strict=True))


def test_bad_branch_requests_are_one_clear_error(original):
    with pytest.raises(ConfigError, match="branch=5"):
        load_shipped().add_embedding_branch(5)
    m = branched(1)
    with pytest.raises(ConfigError, match="already has"):
        m.add_embedding_branch(1)
    assert resolve_det_loss("auto", m) == "none" and resolve_det_loss("auto", original) == "self"
    with pytest.raises(ConfigError, match="det_loss=self: the student's detector is frozen"):
        resolve_det_loss("self", m)


def test_stage_two_on_a_branch_keeps_the_shipped_detector(original, tmp_path):
    """Two detection epochs with L_dist pulling: the branch moved, every detector weight is bit-identical, the bundle
    saves the branch and loads back with it, and no L_det was computed (the detector cannot change)."""
    tr, va = splits(tmp_path / "data", n_images=6)
    student = load_shipped()
    student.add_embedding_branch(1)
    cfg = config(tmp_path, "br", epochs=2, det_every=1, batch=3, lr_student=1e-3, lambda_dist=1.0, branch=1)
    best = train(cfg, student, tr, va)
    rows = [json.loads(x) for x in (best.parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["detection", "detection"] and all(r["loss_det"] == 0 for r in rows)
    bundle = load_bundle(best.parent / "latest")
    assert bundle.student.branch_stages == 1
    before, after = original.state_dict(), bundle.student.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # the detector, exactly
    moved = max((after[k] - after[k.replace("embed_stages.0.", "backbone.stages.3.")]).abs().max().item()
                for k in after if k.startswith("embed_stages."))
    assert moved > 1e-6


def test_distill_refuses_a_branch_on_a_yolo_student():
    yolo = Student.create("yolov8n.yaml", names=["a", "b"])
    with pytest.raises(ConfigError, match="branch=1: only nanodet-g has an embedding branch; yolov8n.yaml"):
        attach_branch(yolo, 1, "yolov8n.yaml")
    m = branched(2)
    attach_branch(m, 1, "bundle")  # a student that carries its branch keeps it
    assert m.branch_stages == 2


@pytest.mark.parametrize("light", [False, True])
def test_a_branched_bundle_exports_to_onnx_with_the_same_boxes_and_embeddings(tmp_path, light):
    from mocha.teacher.pca import PCAArtifact
    from tests.test_export_parity import photos

    g = torch.Generator().manual_seed(3)
    m = branched(1, light=light)
    with torch.no_grad():
        for p in m.embed_stages.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    translator = Translator(384, 16, heads=12).eval()
    pca = PCAArtifact.fit(torch.randn(200, 32, generator=g), 16)
    bundle = save_bundle(tmp_path / "bundle", m, translator, pca, {"imgsz": 256})
    assert (bundle / "student.safetensors").is_file()  # a changed student is copied, not referenced
    pt = TorchEngine.load(bundle, device="cpu")
    ox = OnnxEngine(export_onnx(bundle, tmp_path / "onnx"), threads=1)
    from mocha.data.images import letterbox

    lb_img, _ = letterbox(photos()[0], 256)
    d_pt, m_pt = pt.detect(lb_img, conf=0.05, max_det=50)
    d_ox, m_ox = ox.detect(lb_img, conf=0.05, max_det=50)
    assert len(d_pt) == len(d_ox) > 0 and np.abs(d_pt[:, :4] - d_ox[:, :4]).max() <= 1e-3
    assert np.abs(m_pt - m_ox).max() <= 1e-4 * max(1.0, np.abs(m_pt).max())
