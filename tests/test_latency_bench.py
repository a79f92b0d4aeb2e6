"""`mocha bench latency` pieces (no timings asserted): the plain ultralytics ONNX is the student's detector, the
worker protocol carries stage times, the ratios point the right way."""

from __future__ import annotations

import numpy as np
import torch

from mocha.bench.worker import TimedWorker
from mocha.data.images import letterbox
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
    assert np.abs(ox.sess.run(None, {ox.input: x})[0] - raw[0].numpy()).max() < 0.05


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
