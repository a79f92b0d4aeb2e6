"""int8 export: a quantized detector that still detects like fp32, the manifest, enrolment after export, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from PIL import Image

from mocha.cli import main
from mocha.data.images import letterbox
from mocha.errors import ConfigError
from mocha.export.onnx_export import export_onnx, read_export_meta
from mocha.export.onnx_runner import OnnxEngine
from mocha.export.quantize import calibration_images
from mocha.personalize.personalizer import Personalizer
from tests.test_personalize_api import IMGSZ, make_bundle, scene


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calib")
    for k in range(8):
        Image.fromarray(scene(200 + k)).save(folder / f"s{k}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def exports(tmp_path_factory, calib):
    root = tmp_path_factory.mktemp("int8")
    bundle = make_bundle(root / "bundle")
    return bundle, export_onnx(bundle, root / "fp32"), export_onnx(bundle, root / "int8", int8=True, calib=calib)


def ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_manifest_and_graphs(exports, calib):
    _, fp32, int8 = exports
    meta = read_export_meta(int8, verify=True)
    q = meta["int8"]
    assert q["format"] == "QDQ" and q["per_channel"] and q["calibration"]["count"] == 8  # the .txt is no image
    assert q["calibration"]["path"] == str(calib.resolve()) and len(q["calibration"]["sha256"]) == 64
    assert read_export_meta(fp32)["int8"] is None
    det = ops(int8 / "detector.onnx")
    assert det.count("QuantizeLinear") > 50 and "QuantizeLinear" not in ops(fp32 / "detector.onnx")
    assert "QuantizeLinear" not in ops(int8 / "embedder.onnx")  # the embedder stays fp32
    assert (int8 / "detector.onnx").stat().st_size < 0.4 * (fp32 / "detector.onnx").stat().st_size
    assert sorted(p.name for p in int8.iterdir()) == ["detector.onnx", "embedder.onnx", "export.json"]


def test_int8_detects_like_fp32(exports):
    _, fp32, int8 = exports
    a, b = OnnxEngine(fp32, threads=1), OnnxEngine(int8, threads=1)
    assert b.int8 and not a.int8
    lb_img, _ = letterbox(scene(5), IMGSZ)
    pa, fa = a.forward(lb_img)
    pb, fb = b.forward(lb_img)
    # scores stay probabilities (the decode tail is fp32: one uint8 scale for pixels and scores would zero them)
    sa, sb = pa[0, 4:], pb[0, 4:]
    assert 0 <= sb.min() and sb.max() <= 1 and np.abs(sa - sb).mean() < 0.05
    assert np.corrcoef(sa.ravel(), sb.ravel())[0, 1] > 0.95
    for x, y in zip(fa, fb, strict=True):  # the maps the embedder pools: int8 rounding, well correlated
        assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.95
    da, db = a.detect_plain(lb_img, conf=0.0, max_det=5), b.detect_plain(lb_img, conf=0.0, max_det=5)
    assert len(da) == len(db) == 5


def test_enroll_after_int8_export(exports, tmp_path):
    bundle, _, int8 = exports
    img = scene(3)
    with Personalizer.load(int8, gallery=tmp_path / "g.gallery", backend="onnx", conf=0.0, max_det=10) as p:
        assert p.engine.int8
        p.enroll("cup", img, boxes=[[30, 40, 120, 150]], coarse="mug")
        r = p.detect(img)
    assert len(r) == 10 and "cup" in r.instances.values()
    # the same gallery serves the PyTorch bundle: the int8 export keeps the bundle's digest
    with Personalizer.load(gallery=tmp_path / "g.gallery", conf=0.0, max_det=10) as p:
        assert p.instances()[0]["name"] == "cup"


def test_bad_input(exports, calib, tmp_path):
    bundle, fp32, int8 = exports
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(ConfigError, match=f"calib={empty}: holds no images"):
        export_onnx(bundle, tmp_path / "x", int8=True, calib=empty)
    with pytest.raises(ConfigError, match="int8=true needs calib"):
        export_onnx(bundle, tmp_path / "x", int8=True)
    with pytest.raises(ConfigError, match="only used with int8=true"):
        export_onnx(bundle, tmp_path / "x", calib=calib)
    with pytest.raises(ConfigError, match="opset=12: int8 .* needs opset >= 13"):
        export_onnx(bundle, tmp_path / "x", int8=True, calib=calib, opset=12)
    assert not (tmp_path / "x").exists()
    # a manifest from another export (here: the fp32 one beside int8 graphs) is refused, naming the graph
    mixed = tmp_path / "mixed"
    shutil.copytree(int8, mixed)
    shutil.copy(fp32 / "export.json", mixed / "export.json")
    with pytest.raises(ConfigError, match=f"{mixed / 'detector.onnx'}: does not match"):
        OnnxEngine(mixed)
    with pytest.raises(ConfigError, match=f"calib={tmp_path / 'nope'}: not a folder"):
        calibration_images(tmp_path / "nope")


def test_runtime_that_cannot_run_int8(exports, calib, tmp_path, monkeypatch):
    import onnxruntime as ort

    bundle, _, _ = exports
    real = ort.InferenceSession

    def refuse_int8(path, *a, **kw):
        if "QuantizeLinear" in ops(path):
            raise RuntimeError("NOT_IMPLEMENTED: QLinearConv")
        return real(path, *a, **kw)

    monkeypatch.setattr(ort, "InferenceSession", refuse_int8)
    with pytest.raises(ConfigError, match="cannot run the quantized detector"):
        export_onnx(bundle, tmp_path / "y", int8=True, calib=calib)
    assert not (tmp_path / "y").exists() and not list(tmp_path.glob(".y*"))  # nothing half-written


def test_cli_int8(exports, calib, tmp_path, monkeypatch):
    bundle, _, _ = exports
    monkeypatch.chdir(tmp_path)
    main(["export", f"bundle={bundle}", "int8=true", f"calib={calib}", "out=q"])
    assert json.loads((tmp_path / "q/export.json").read_text())["int8"]["calibration"]["count"] == 8
    for bad in (["int8=true"], [f"calib={calib}"], ["int8=true", f"calib={tmp_path / 'missing'}"]):
        with pytest.raises(SystemExit) as e:
            main(["export", f"bundle={bundle}", "out=bad", *bad])
        assert e.value.code == 2
    assert not (tmp_path / "bad").exists()
