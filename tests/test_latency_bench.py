"""`mocha bench latency` pieces (no timings asserted): the plain ultralytics ONNX is the student's detector, the
worker protocol carries stage times, the ratios point the right way; `student=nanodet-g` end to end, small."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from mocha.bench.core import run_benchmark
from mocha.bench.worker import TimedWorker
from mocha.data.images import letterbox
from mocha.errors import ConfigError
from mocha.personalize import bench
from mocha.personalize.bench import PlainOnnx, plain_onnx_export, ratios
from mocha.personalize.engine import TorchEngine
from tests.test_personalize_api import IMGSZ, make_bundle, scene


def test_plain_onnx_is_the_students_detector(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    path = plain_onnx_export(bundle, tmp_path / "plain", imgsz=IMGSZ)
    assert path.suffix == ".onnx" and path.exists()
    pt, ox = TorchEngine.load(bundle, device="cpu"), PlainOnnx(str(path), threads=1)
    lb_img, _ = letterbox(scene(7), IMGSZ)
    d_pt, d_ox = pt.detect_plain(lb_img, conf=0.0, max_det=20), ox.detect_plain(lb_img, conf=0.0, max_det=20)
    assert len(d_pt) == len(d_ox) == 20
    # px: ultralytics fuses Conv+BN, which reorders float sums
    assert np.abs(d_pt[:, :4] - d_ox[:, :4]).max() < 0.05 and np.array_equal(d_pt[:, 5], d_ox[:, 5])
    with torch.no_grad():  # and the raw head output over every anchor matches
        _, raw = pt.bundle.student(pt._tensor(lb_img))
    x = np.ascontiguousarray(lb_img.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    # relative too: an untrained head decodes boxes up to ~600 px, where the fused sums differ by ~1e-4 of the value
    np.testing.assert_allclose(ox.sess.run(None, {ox.input: x})[0], raw[0].numpy(), rtol=1e-3, atol=0.05)


def test_worker_extra_fields():
    code = ("import sys\nprint('ready', flush=True)\nfor line in sys.stdin:\n    if line.strip() != 'time': break\n"
            "    print('12.5 3 detector=10.25 rss=300.0', flush=True)\n")
    import subprocess
    import sys

    w = TimedWorker.__new__(TimedWorker)  # the real protocol parser over a scripted worker process
    w.label, w.extra = "echo", {}
    w.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    w._expect("ready")
    assert w.time() == (12.5, 3) and w.extra == {"detector": 10.25, "rss": 300.0}
    w.close()
    assert w.proc.returncode == 0


def test_ratios_direction():
    med = {"plain_torch": 100.0, "plain_onnx": 50.0, "torch": 110.0, "onnx": 55.0, "int8": 25.0}
    r = ratios(med)
    assert r == {"onnx_vs_plain_onnx": 1.1, "onnx_speedup": 2.0, "int8_speedup": 2.2, "personalize_overhead": 0.1}


def test_ratios_without_int8():
    r = ratios({"plain_torch": 100.0, "plain_onnx": 50.0, "torch": 120.0, "onnx": 60.0})
    assert r == {"onnx_vs_plain_onnx": 1.2, "onnx_speedup": 2.0, "personalize_overhead": 0.2}


def test_detector_only_onnx_is_nanodets_detector(tmp_path):
    from mocha.models.nanodet import INPUT_SIZE
    from tests.test_export_parity import photos

    bundle, _ = bench.nanodet_bundle(tmp_path, None)
    pt = TorchEngine.load(bundle, device="cpu")
    ox = PlainOnnx(str(bench.detector_only_export(bundle, tmp_path / "plain", INPUT_SIZE)), threads=1)
    assert [o.name for o in ox.sess.get_outputs()] == ["pred"]  # no feature maps: NanoDet alone
    lb_img, _ = letterbox(photos()[0], INPUT_SIZE)
    d_pt, d_ox = pt.detect_plain(lb_img, conf=0.1, max_det=300), ox.detect_plain(lb_img, conf=0.1, max_det=300)
    assert len(d_pt) == len(d_ox) > 10  # bus.jpg: the bus and its people, real detections
    assert np.abs(d_pt[:, :4] - d_ox[:, :4]).max() < 1e-2 and np.array_equal(d_pt[:, 5], d_ox[:, 5])


def test_bench_latency_nanodet_quick(tmp_path, monkeypatch):
    """`mocha bench latency student=nanodet-g`, 1 thread, 2 images per runtime: the JSON's schema, real numbers."""
    monkeypatch.delenv("MOCHA_BENCH_BUNDLE", raising=False)
    monkeypatch.setattr(bench, "REPS", {True: (2, 1)})
    monkeypatch.setattr(bench, "THREADS", (1,))  # monkeypatch reaches the parent only: REPS/THREADS are read there
    obj = run_benchmark("latency", tmp_path, quick=True, student="nanodet-g")
    saved = json.loads((tmp_path / "latency-nanodet-g.json").read_text())
    assert saved["command"] == "mocha bench latency student=nanodet-g --quick"
    assert not (tmp_path / "latency.json").exists()  # the default's results stay apart
    assert saved["student"] == "nanodet-g" and saved["imgsz"] == 416 and saved["conf"] == 0.1
    assert set(saved["targets"]) == {"onnx_vs_plain_onnx", "personalize_overhead"}
    assert saved["targets"]["onnx_vs_plain_onnx"]["target"] == "<= 1.25"
    for key in ("onnx_vs_plain_onnx", "onnx_speedup", "personalize_overhead"):
        assert isinstance(saved[key], float) and isinstance(saved[f"{key}_min"], float)
    assert "int8_speedup" not in saved and "int8_ms" not in saved
    assert saved["onnx_vs_plain_onnx"] == obj["onnx_vs_plain_onnx"]
    assert saved["onnx_vs_plain_onnx"] == pytest.approx(saved["onnx_ms"] / saved["plain_onnx_ms"], abs=2e-3)
    rows = saved["rows"]
    assert [r["mode"] for r in rows] == [  # no int8 for NanoDet
        "plain detection (PyTorch)", "plain detection (detector-only ONNX, onnxruntime)", "personalized (PyTorch)",
        "personalized (onnxruntime fp32)"]
    for r in rows:
        assert r["threads"] == 1 and r["images"] == 2 and r["peak_rss_mib"] > 100
        assert r["boxes_per_image"] > 0  # real COCO weights on a real photo (coffee: cup, spoon, table, ...)
        assert 0 < r["min_ms"] <= r["median_ms"] and r["preprocess_ms"] > 0 and r["detector_ms"] > 0
        personalized = not r["mode"].startswith("plain")
        assert (r["embed_ms"] > 0) == personalized and r["match_ms"] > 0
        # the stages add up to (nearly) the whole call: they are the work, not a placeholder
        stages = sum(r[f"{s}_ms"] for s in bench.STAGES)
        assert 0.5 * r["median_ms"] < stages <= 1.05 * r["median_ms"] + 1
    assert len({r["boxes_per_image"] for r in rows}) == 1  # every runtime finds the same boxes


def test_bench_student_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=re.escape("student=yolo11n: the latency benchmark runs yolov8n | nanodet-g")):
        run_benchmark("latency", tmp_path, quick=True, student="yolo11n")
    with pytest.raises(ConfigError, match="does not take a student"):
        run_benchmark("translator", tmp_path, quick=True, student="nanodet-g")
    monkeypatch.setenv("MOCHA_BENCH_BUNDLE", str(make_bundle(tmp_path / "yolo")))
    with pytest.raises(ConfigError, match="its student is a YOLO, not the benchmarked nanodet-g"):
        run_benchmark("latency", tmp_path, quick=True, student="nanodet-g")
    assert not list(tmp_path.glob("*.json"))
