"""`mocha bench peers` and `mocha bench int8` pieces (no timings asserted): a peer worker answers the timing
protocol with the boxes it was given, the evaluator adapters run an export exactly like its engine."""

from __future__ import annotations

import json

import numpy as np
import torch

from mocha.bench.peers import PEERS
from mocha.bench.worker import TimedWorker
from mocha.data.images import letterbox
from mocha.export.onnx_export import export_onnx
from mocha.export.onnx_runner import OnnxEngine
from tests.test_personalize_api import IMGSZ, make_bundle, scene


def test_teacher_peer_embeds_the_given_boxes(tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"boxes": [[10, 20, 200, 220], [300, 40, 420, 300], [0, 0, 5, 5]],
                                 "labels": ["mug", "bottle", "mug"]}))
    w = TimedWorker("mocha.bench.peers", ["--peer", "teacher", "--threads", "1", "--warmup", "1",
                                          "--boxes", str(boxes)], 1, "teacher peer")
    try:
        ms, n = w.time()
    finally:
        w.close()
    assert n == 3 and ms > 0


def test_peer_table_covers_the_issue():
    assert {"onnx", "int8", "plain_onnx", "yoloe", "owlvit", "owlv2", "teacher"} == set(PEERS)
    assert PEERS["owlv2"][1] == "960²" and PEERS["owlvit"][1] == "768²"
    for _, _, weights, (full, quick) in PEERS.values():
        assert full[0] >= quick[0] >= 1 and weights


def test_int8_bench_adapters_match_the_engine(tmp_path):
    from mocha.bench.int8 import OnnxBoxSource, OnnxMethod

    engine = OnnxEngine(export_onnx(make_bundle(tmp_path / "b"), tmp_path / "onnx"), threads=1)
    src = OnnxBoxSource(engine)
    lb_img, _ = letterbox(scene(9), IMGSZ)
    x = torch.from_numpy(lb_img).permute(2, 0, 1)[None].float() / 255.0
    (dets,), maps = src.detect(x, conf=0.0, iou=0.6, max_det=10)
    ref_dets, ref_embs = engine.detect(lb_img, conf=0.0, max_det=10)
    assert np.allclose(dets.numpy(), ref_dets, atol=1e-4)
    sup, qry = OnnxMethod("mocha", src).features(x, None, None, [dets[:2, :4], dets[:, :4]], [[], []], maps)
    assert sup.shape == (2, 32) and qry.shape == (10, 32)
    assert np.allclose(qry.numpy(), ref_embs, atol=1e-5) and np.allclose(sup.numpy(), ref_embs[:2], atol=1e-5)
