"""ONNX export: PyTorch vs onnxruntime parity (predictions, boxes, embeddings), enrolment after export, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mocha.cli import main
from mocha.data.images import letterbox
from mocha.errors import ConfigError
from mocha.export.onnx_export import export_onnx, read_export_meta
from mocha.export.onnx_runner import OnnxEngine
from mocha.personalize.engine import TorchEngine
from mocha.personalize.personalizer import Personalizer
from tests.test_personalize_api import IMGSZ, make_bundle, scene


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    bundle = make_bundle(root / "bundle")
    return bundle, export_onnx(bundle, root / "onnx")


def test_files_and_meta(exported):
    bundle, out = exported
    assert sorted(p.name for p in out.iterdir()) == ["detector.onnx", "embedder.onnx", "export.json"]
    meta = read_export_meta(out)
    b = json.loads((bundle / "bundle.json").read_text())
    assert meta["bundle_digest"] == b["digest"] and meta["imgsz"] == IMGSZ and meta["dim"] == 32
    assert meta["names"] == ["mug", "ball", "can"] and meta["strides"] == [8, 16, 32]


def test_parity_with_pytorch(exported):
    bundle, out = exported
    pt, ox = TorchEngine.load(bundle, device="cpu"), OnnxEngine(out, threads=1)
    import torch

    for seed in (0, 1):
        lb_img, _ = letterbox(scene(seed), IMGSZ)
        with torch.no_grad():
            feats, raw = pt.bundle.student(pt._tensor(lb_img))
        pred, ofeats = ox.forward(lb_img)
        ref = raw[0].numpy()
        assert pred.shape == ref.shape
        assert np.abs(pred - ref).max() <= 1e-3 * max(1.0, np.abs(ref).max())
        for a, b in zip(ofeats, feats, strict=True):  # maps of magnitude ~50: float32 reordering, relative
            scale = max(1.0, float(np.abs(b.numpy()).max()))
            assert np.abs(a - b.numpy()).max() <= 1e-4 * scale
        # embeddings at given boxes (enrolment with user boxes), including tiny and full-image boxes
        boxes = np.array([[0, 0, IMGSZ, IMGSZ], [10.5, 20.25, 100, 180], [200, 30, 205, 33], [64, 64, 128, 96]],
                         np.float32)
        e_pt, e_ox = pt.embed(lb_img, boxes), ox.embed(lb_img, boxes)
        assert e_pt.shape == e_ox.shape == (4, 32)
        assert np.abs(e_pt - e_ox).max() <= 1e-3 * max(1.0, np.abs(e_pt).max())
        # the full detect path: same boxes after NMS, same embeddings
        d_pt, m_pt = pt.detect(lb_img, conf=0.0, max_det=50)
        d_ox, m_ox = ox.detect(lb_img, conf=0.0, max_det=50)
        assert len(d_pt) == len(d_ox) > 0
        # same boxes in the same order: coordinates to float32 precision (1e-4 of ~300 px), same scores, classes
        assert np.abs(d_pt[:, :4] - d_ox[:, :4]).max() <= 1e-4 * max(1.0, np.abs(d_pt[:, :4]).max())
        assert np.allclose(d_pt[:, 4], d_ox[:, 4], atol=1e-5) and np.array_equal(d_pt[:, 5], d_ox[:, 5])
        assert np.abs(m_pt - m_ox).max() <= 1e-3 * max(1.0, np.abs(m_pt).max())
    assert ox.embed(lb_img, np.zeros((0, 4), np.float32)).shape == (0, 32)


def test_enroll_after_export_and_backends_agree(exported, tmp_path):
    bundle, out = exported
    gpath = tmp_path / "g.gallery"
    img = scene(3)
    with Personalizer.load(out, gallery=gpath, backend="onnx", conf=0.0, max_det=10) as p:
        p.enroll("cup", img, boxes=[[30, 40, 120, 150]], coarse="mug")
        r_ox = p.detect(img)
        assert p.gallery.bundle_digest == read_export_meta(out)["bundle_digest"]
    with Personalizer.load(gallery=gpath, conf=0.0, max_det=10) as p:  # torch, bundle path from the gallery
        r_pt = p.detect(img)
    assert r_pt.labels == r_ox.labels and r_pt.instances == r_ox.instances
    assert np.array_equal(r_pt.boxes.instance, r_ox.boxes.instance)
    assert np.allclose(r_pt.boxes.xyxy, r_ox.boxes.xyxy, atol=1e-2)
    assert np.allclose(r_pt.boxes.similarity, r_ox.boxes.similarity, atol=1e-3, equal_nan=True)
    assert set(r_ox.speed) == {"preprocess", "inference", "embed", "postprocess"}


def test_bad_input(exported, tmp_path):
    bundle, out = exported
    with pytest.raises(ConfigError, match="needs its ONNX export folder"):
        Personalizer.load(bundle, backend="onnx")
    with pytest.raises(ConfigError, match="no export.json"):
        OnnxEngine(tmp_path)
    with pytest.raises(ConfigError, match="multiple of 32"):
        export_onnx(bundle, tmp_path / "x", imgsz=100)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="exported for imgsz 256"):
        Personalizer.load(out, backend="onnx", imgsz=320)
    with pytest.raises(ConfigError, match="backend must be"):
        Personalizer.load(bundle, backend="tflite")


def test_cli_export(exported, tmp_path, monkeypatch):
    bundle, _ = exported
    monkeypatch.chdir(tmp_path)
    main(["export", f"bundle={bundle}", "format=onnx", "imgsz=128"])
    meta = read_export_meta(tmp_path / "runs/export/bundle")
    assert meta["imgsz"] == 128
    for bad in ("format=tflite", "imgsz=100", "opset=3", "out"):
        with pytest.raises(SystemExit) as e:
            main(["export", f"bundle={bundle}", bad])
        assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["export", f"bundle={tmp_path / 'missing'}"])
    assert not (tmp_path / "runs/export/missing").exists()
    from mocha.export.cli import ExportConfig, export

    assert export(ExportConfig(bundle=bundle, out=tmp_path / "py", imgsz="160")) == tmp_path / "py"
    assert read_export_meta(tmp_path / "py")["imgsz"] == 160


def test_cli_detect_with_onnx_backend(exported, tmp_path, monkeypatch):
    from PIL import Image

    bundle, out = exported
    monkeypatch.chdir(tmp_path)
    Image.fromarray(scene(4)).save(tmp_path / "a.png")
    main(["enroll", "gallery=g.gallery", f"bundle={bundle}", "name=cup", "source=a.png", "box=20,20,120,120",
          "coarse=mug"])
    main(["detect", "gallery=g.gallery", "source=a.png", "name=pt", "conf=0.0", "max_det=5", "save=false"])
    main(["detect", "gallery=g.gallery", "source=a.png", "name=ox", "conf=0.0", "max_det=5", "save=false",
          "backend=onnx", f"onnx={out}"])
    pt = json.loads((tmp_path / "runs/detect/pt/a.json").read_text())["detections"]
    ox = json.loads((tmp_path / "runs/detect/ox/a.json").read_text())["detections"]
    assert [d["name"] for d in pt] == [d["name"] for d in ox] and len(pt) == 5
    assert np.allclose([d["box"] for d in pt], [d["box"] for d in ox], atol=0.05)
    with pytest.raises(SystemExit):
        main(["detect", "gallery=g.gallery", "source=a.png", "backend=onnx"])


def test_export_pooling_is_the_box_mean():
    """The embedder's pooling (one matrix product) is the plain mean over the cells each box touches."""
    import torch

    from mocha.export.onnx_export import pool_one_image

    g = torch.Generator().manual_seed(0)
    feat = torch.randn(1, 16, 20, 24, generator=g) * 30
    boxes = torch.tensor([[0, 0, 192, 160], [3.5, 7.25, 50, 60], [100, 100, 101, 101], [150, 20, 191, 159]])
    cells = [(0, 24, 0, 20), (0, 7, 0, 8), (12, 13, 12, 13), (18, 24, 2, 20)]  # x1, x2, y1, y2 at stride 8
    ref = torch.stack([feat[0, :, y1:y2, x1:x2].double().mean((1, 2)).float() for x1, x2, y1, y2 in cells])
    got = pool_one_image(feat, boxes, 8.0)
    assert got.shape == ref.shape and torch.allclose(got, ref, rtol=1e-5, atol=1e-5 * feat.abs().max().item())


def test_a_grid_pooled_bundle_exports_with_parity(tmp_path):
    """pool_bins=2: the embedder graph pools the box and its 2x2 grid and runs the written-out attention."""
    import torch

    from mocha.models.bundle import load_bundle, save_bundle
    from mocha.models.translator import Translator

    base = load_bundle(make_bundle(tmp_path / "b1"))
    base.student.pool_bins = 2
    torch.manual_seed(3)
    translator = Translator(448, 32, tokens=5).eval()
    path = save_bundle(tmp_path / "b2", base.student, translator, None, {"imgsz": IMGSZ, "pool_bins": 2})
    assert load_bundle(path).student.pool_bins == 2 and load_bundle(tmp_path / "b1").student.pool_bins == 1
    out = export_onnx(path, tmp_path / "onnx")
    assert read_export_meta(out)["pool_bins"] == 2
    pt, ox = TorchEngine.load(path, device="cpu"), OnnxEngine(out, threads=1)
    lb_img, _ = letterbox(scene(0), IMGSZ)
    boxes = np.array([[0, 0, IMGSZ, IMGSZ], [10.5, 20.25, 100, 180], [200, 30, 205, 33]], np.float32)
    e_pt, e_ox = pt.embed(lb_img, boxes), ox.embed(lb_img, boxes)
    assert e_pt.shape == e_ox.shape == (3, 32)
    assert np.abs(e_pt - e_ox).max() <= 1e-3 * max(1.0, np.abs(e_pt).max())
    # the grid matters: the same translator reading one token per region gives other embeddings
    meta = json.loads((path / "bundle.json").read_text())
    meta["config"]["pool_bins"] = 3
    (path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="region features"):
        load_bundle(path)
