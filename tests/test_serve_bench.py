"""`mocha bench serve` in miniature: a real `mocha serve` subprocess on loopback, a tiny bundle, 2 s of load.
The full benchmark (8 clients, 30 s, 640 px) is `mocha bench serve`, not a unit test."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from mocha.bench.core import list_benchmarks
from mocha.personalize.personalizer import Personalizer
from mocha.serve.bench import Setup, measure
from tests.fixtures_serve import make_bundle, scene


def test_serve_bench_measures_overhead_errors_and_enrolments(tmp_path):
    assert "serve" in list_benchmarks()
    bundle = make_bundle(tmp_path / "bundle")
    gallery, query = tmp_path / "bench.gallery", tmp_path / "query.jpg"
    Image.fromarray(scene(0)).save(query, quality=90)
    with Personalizer.load(bundle, gallery, enroll_conf=0.0) as p:
        p.enroll("first", query, boxes=[[10, 10, 100, 100]], coarse="mug")
    res = measure(Setup(gallery, query, conf=0.0, max_det=10, imgsz=256, bundle_note="tiny"), threads=1, single=4,
                  warmup=1, clients=3, seconds=2.0)
    s = res["summary"]
    assert res["error_samples"] == [] and s["errors"] == 0 and s["lost_enrolments"] == 0
    assert s["enrolments"] >= 1 and s["boxes_per_image"] == 10 and s["clients"] == 3
    # HTTP + JSON + the lock on top of a direct call: target <= 0.15 with the real bundle; with this tiny one on
    # a busy machine it measured 0.23, so the bound is "never faster than direct by much, never double it"
    assert math.isfinite(s["serve_overhead"]) and -0.25 < s["serve_overhead"] < 1.0
    assert s["server_p50_ms"] == pytest.approx(s["direct_p50_ms"] * (1 + s["serve_overhead"]), rel=0.01)
    assert s["server_p50_ms"] > 0 and s["direct_p50_ms"] > 0 and s["throughput_rps"] > 0
    assert [r["clients"] for r in res["rows"]] == [1, 1, 3] and res["rows"][2]["requests"] > 0
    with Personalizer.load(gallery=gallery) as p:  # every enrolment answered 201 is in the file
        assert len(p.instances()) == 1 + s["enrolments"]
