"""`mocha bench episodes` / `mocha bench prototypes` in quick mode: real runs, checked keys and sanity of values."""

from __future__ import annotations

import torch

from mocha.evaluate.bench import run_episodes, run_prototypes


def test_prototypes_bench_reports_match_ms(tmp_path):
    res = run_prototypes(tmp_path, quick=True)
    assert res.name == "prototypes" and res.targets == {"match_ms": "<= 5"}
    assert 0 < res.summary["match_ms"] < 1000
    assert {r["learner"] for r in res.rows} == {"conditional", "conditional-all", "flat", "simpleshot"}
    assert torch.get_num_threads() >= 1


def test_episodes_bench_ratio(tmp_path):
    threads = torch.get_num_threads()
    res = run_episodes(tmp_path, quick=True)
    assert torch.get_num_threads() == threads  # restored
    assert [r["episodes"] for r in res.rows] == [1, res.summary["episodes_compared"]]
    # 20 episodes reuse the features of the single feature pass: far less than 20x one episode
    assert 0.5 < res.summary["ratio_100_vs_1"] < 10
