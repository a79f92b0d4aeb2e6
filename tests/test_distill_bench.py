"""`mocha bench translator`: batched region work vs the one-region-per-call reference."""

from __future__ import annotations

import json

from mocha.bench.core import run_benchmark


def test_translator_bench_writes_speedup(tmp_path):
    obj = run_benchmark("translator", tmp_path, quick=True)
    saved = json.loads((tmp_path / "translator.json").read_text())
    assert saved["batched_speedup"] == obj["batched_speedup"]
    assert saved["regions"] == 128 and saved["targets"]["batched_speedup"]["target"] == ">= 10"
    # the loop does 128 translator and pooling calls; batching must win clearly even on a busy machine
    assert obj["batched_speedup"] > 3, obj["rows"]
