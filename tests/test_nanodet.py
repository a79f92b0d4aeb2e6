"""NanoDet-g, the second student architecture, with the real COCO weights it ships (docs/nanodet.md).

Real photos from installed packages (ultralytics' bus.jpg/zidane.jpg, scikit-image's astronaut/coffee); the
original ONNX is not committed, so the ORT outputs the conversion recorded on these photos (in the JSON next
to the weights) are the reference, and a fresh ONNX export of our module is compared with onnxruntime here.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mocha.data.images import letterbox, load_image
from mocha.errors import ConfigError
from mocha.io import file_sha256
from mocha.models.detector import Student, create_student, list_students
from mocha.models.nanodet import INPUT_SIZE, NanoDetStudent, shipped_path, verify_shipped

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "convert_nanodet.py"


@pytest.fixture(scope="module")
def model() -> NanoDetStudent:
    torch.set_num_threads(2)
    return create_student("nanodet-g", []).eval()


@pytest.fixture(scope="module")
def provenance() -> dict:
    return json.loads(shipped_path().with_suffix(".json").read_text())


def package_image(name: str) -> Path:
    """'ultralytics/assets/bus.jpg' → that file inside the installed package."""
    pkg, rel = name.split("/", 1)
    return Path(importlib.util.find_spec(pkg).origin).parent / rel


def as_batch(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


def named(model: NanoDetStudent, dets: torch.Tensor) -> list[tuple[str, float]]:
    return [(model.names[int(d[5])], float(d[4])) for d in dets]


def test_shipped_file_passes_its_hash_check_and_a_changed_one_fails(provenance, tmp_path):
    path = verify_shipped()
    assert file_sha256(path) == provenance["sha256"] and path.stat().st_size < 10_000_000
    assert _script().tensors_sha256(path) == provenance["tensors_sha256"]  # what a re-conversion reproduces
    bad = tmp_path / path.name
    shutil.copy(path, bad)
    shutil.copy(path.with_suffix(".json"), bad.with_suffix(".json"))
    data = bytearray(bad.read_bytes())
    data[-100] ^= 0xFF  # one flipped bit in the last tensor
    bad.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="sha256"):
        verify_shipped(bad)


def test_registry_load_dispatch_and_interface(model, tmp_path):
    assert "nanodet-g" in list_students()
    assert isinstance(Student.load(shipped_path()), NanoDetStudent)
    assert len(model.names) == 80 and model.names[:2] == ["person", "bicycle"]
    assert model.strides == (8, 16, 32) and model.feature_dims == (128, 128, 128) and model.region_dim == 384
    assert sum(p.numel() for p in model.parameters()) == 3_786_068
    with pytest.raises(ConfigError, match="80 COCO classes"):
        create_student("nanodet-g", ["mug", "ball"])
    x = torch.rand(2, 3, 128, 96)
    dets, feats = model.detect(x, conf=0.0, max_det=7)
    assert [tuple(f.shape) for f in feats] == [(2, 128, 16, 12), (2, 128, 8, 6), (2, 128, 4, 3)]
    assert all(d.shape[1] == 6 and len(d) == 7 for d in dets)
    assert model.region_features(feats, [d[:, :4] for d in dets]).shape == (14, 384)
    # save/load round trip (float32 and float16 files) through Student.load's metadata dispatch
    for dtype in (None, torch.float16):
        back = Student.load(model.save(tmp_path / f"n{dtype}.safetensors", dtype=dtype)).eval()
        assert isinstance(back, NanoDetStudent) and back.names == model.names
        torch.testing.assert_close(back(x)[0][0], model(x)[0][0], atol=1e-6 if dtype is None else 0.05, rtol=0)


def test_matches_the_recorded_onnxruntime_outputs_on_real_photos(model, provenance):
    refs = provenance["reference"]
    assert len(refs) >= 3
    for ref in refs:
        path = package_image(ref["image"])
        assert file_sha256(path) == ref["sha256"], f"{path} differs from the photo the reference was made on"
        img, _ = letterbox(load_image(path), INPUT_SIZE)
        assert __import__("hashlib").sha256(img.tobytes()).hexdigest() == ref["input_sha256"]
        with torch.no_grad():
            _, raw = model(as_batch(img))
        for s in ref["samples"]:
            cls, dist = raw[s["level"]]
            ours_cls = cls[0].sigmoid().flatten()[s["cls_index"]].numpy()
            ours_box = dist[0].flatten()[s["box_index"]].numpy()
            assert np.abs(ours_cls - np.array(s["cls"])).max() < 1e-4, ref["image"]
            assert np.abs(ours_box - np.array(s["box"])).max() < 1e-4, ref["image"]
        dets = model.postprocess(raw, (INPUT_SIZE, INPUT_SIZE), conf=0.3)[0]
        assert [n for n, _ in named(model, dets)] == [d["cls"] for d in ref["detections"]], ref["image"]
        np.testing.assert_allclose(dets[:, 4].numpy(), [d["conf"] for d in ref["detections"]], atol=1e-3)
        np.testing.assert_allclose(dets[:, :4].numpy(), [d["xyxy"] for d in ref["detections"]], atol=0.05)
        assert ref["max_abs_diff_torch_vs_onnx"] < 1e-4  # measured on the full outputs at conversion


def test_onnx_export_of_the_module_matches_onnxruntime(model, tmp_path):
    import onnxruntime as ort

    img, _ = letterbox(load_image(package_image("ultralytics/assets/zidane.jpg")), INPUT_SIZE)
    x = as_batch(img)

    class Flat(torch.nn.Module):  # the raw outputs as plain tensors for the exporter
        def __init__(self, m: NanoDetStudent) -> None:
            super().__init__()
            self.m = m

        def forward(self, images):
            feats, raw = self.m(images)
            return (*feats, *(t for level in raw for t in level))

    path = tmp_path / "nanodet.onnx"
    torch.onnx.export(Flat(model), (x,), str(path), dynamo=False, opset_version=17)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = Flat(model)(x)
    assert len(got) == 9
    assert max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True)) < 1e-3


def test_bus_photo_gives_the_known_detections(model):
    img = load_image(package_image("ultralytics/assets/bus.jpg"))
    import cv2

    # stretched to 416², as the npm package's own pipeline feeds it: the numbers the issue measured
    stretched = cv2.resize(img, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    top = {}
    for name, conf in named(model, model.detect(as_batch(stretched), conf=0.3)[0][0]):
        top.setdefault(name, conf)
    assert abs(top["person"] - 0.83) < 0.02 and abs(top["bus"] - 0.78) < 0.02
    # mocha's letterbox (grey 114): the bus and the people are still found
    lb, _ = letterbox(img, INPUT_SIZE)
    names = [n for n, c in named(model, model.detect(as_batch(lb), conf=0.5)[0][0])]
    assert names[0] == "bus" and names.count("person") >= 2


def test_detect_boxes_map_back_to_original_pixels(model):
    import cv2

    img = load_image(package_image("ultralytics/assets/bus.jpg"))
    h, w = img.shape[:2]
    lb_img, lb = letterbox(img, INPUT_SIZE)
    dets = model.detect(as_batch(lb_img), conf=0.5)[0][0]
    bus = lb.to_original(dets[dets[:, 5] == model.names.index("bus"), :4].numpy())[0]
    # the same bus found on the stretched image, scaled back per axis: an independent route to original pixels
    st = model.detect(as_batch(cv2.resize(img, (INPUT_SIZE, INPUT_SIZE))), conf=0.5)[0][0]
    other = st[st[:, 5] == model.names.index("bus"), :4].numpy()[0] * np.array([w, h, w, h]) / INPUT_SIZE
    inter = np.clip(np.minimum(bus[2:], other[2:]) - np.maximum(bus[:2], other[:2]), 0, None).prod()
    union = np.prod(bus[2:] - bus[:2]) + np.prod(other[2:] - other[:2]) - inter
    assert inter / union > 0.85
    assert 0 <= bus[0] < bus[2] <= w and 0 <= bus[1] < bus[3] <= h and bus[2] - bus[0] > 0.8 * w


def test_gradients_reach_every_parameter(model):
    m = NanoDetStudent.load(shipped_path()).train()
    img, _ = letterbox(load_image(package_image("skimage/data/astronaut.png")), 128)
    feats, raw = m(as_batch(img))
    loss = sum(f.square().mean() for f in feats) + sum(c.sigmoid().mean() + d.mean() for c, d in raw)
    loss.backward()
    params = dict(m.named_parameters())
    assert params and all(p.requires_grad for p in params.values())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())
    assert params["backbone.stem.conv.weight"].grad.abs().sum() > 0


def _script():
    spec = importlib.util.spec_from_file_location("convert_nanodet", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_conversion_script_refuses_the_wrong_environment(monkeypatch, tmp_path):
    # in mocha's venv: the TF stage names the missing pinned converter
    res = subprocess.run([sys.executable, str(SCRIPT), "onnx", str(tmp_path / "x.tgz")], capture_output=True, text=True)
    assert res.returncode != 0 and "tensorflow-cpu==2.21.0 is not installed" in res.stderr
    conv = _script()
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)  # as if run by the system Python, outside any venv
    with pytest.raises(SystemExit, match="throwaway venv"):
        conv.check_onnx_env()
    monkeypatch.undo()
    monkeypatch.setattr(conv.metadata, "version", lambda d: {"tensorflow-cpu": "2.20.0"}.get(d, "1.17.0"))
    monkeypatch.setattr(sys, "prefix", sys.prefix + "-venv")
    with pytest.raises(SystemExit, match=r"tensorflow-cpu 2\.20\.0 is installed.*==2\.21\.0"):
        conv.check_onnx_env()
    # the ship stage refuses before anything exists to ship from
    res = subprocess.run([sys.executable, str(SCRIPT), "ship", str(tmp_path / "x.tgz"), "--onnx",
                          str(tmp_path / "none.onnx")], capture_output=True, text=True)
    assert res.returncode != 0 and "run stage `onnx` in the TF venv first" in res.stderr
