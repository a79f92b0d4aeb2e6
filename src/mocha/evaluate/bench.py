"""`mocha bench episodes` (features reused across episodes) and `mocha bench prototypes` (matching speed)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from mocha.bench.core import BenchResult


def run_episodes(out_dir: Path, quick: bool = False) -> BenchResult:
    """Wall time of `evaluate` with 100 episodes vs 1 episode (same tiny world, student method, same boxes).

    Image features are computed once per run, so 100 episodes must cost at most ~3x one episode. The data is
    the tiny mochaworld (generated in a temp folder); 2-shot episodes are drawn with a seed (the world ships
    episode files only for 1 and 5 shots). The detector is a randomly initialised YOLOv8n at conf 0.001, so
    every image yields the maximum number of query boxes (worst case for matching and metrics).
    """
    from mocha.data.world import generate_world
    from mocha.evaluate.config import EvalConfig, MethodSpec
    from mocha.evaluate.episodic import evaluate
    from mocha.models.detector import Student

    many = 20 if quick else 100
    max_det = 50 if quick else 300
    rows, times = [], {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared CPU extra torch threads wait on each other (10-100x swings)
    with tempfile.TemporaryDirectory(prefix="mocha-bench-episodes-") as tmp:
        tmp = Path(tmp)
        data = generate_world(tmp / "world", size="tiny", seed=0, progress=False)
        torch.manual_seed(0)
        from mocha.data.dataset import load_dataset

        Student.create("yolov8n.yaml", names=load_dataset(data).names).save(tmp / "student.safetensors")
        try:
            for n in (1, 1, many):  # the first run only warms up (imports, allocator)
                cfg = EvalConfig(data=data, methods=[MethodSpec("student")], shots=[2], episodes=n,
                                 detector=tmp / "student.safetensors", imgsz=128, conf=0.001, max_det=max_det,
                                 time_images=2, project=tmp / "runs", name=f"e{n}", exist_ok=True, plots=False,
                                 progress=False,
                                 cache=False)
                t0 = time.perf_counter()
                report = evaluate(cfg)
                first = n not in times and not rows and "warm" not in times
                times["warm" if first else n] = time.perf_counter() - t0
                if not first:
                    rows.append({"episodes": n, "wall_s": round(times[n], 3),
                                 "per_episode_ms": round(1000 * times[n] / n, 2),
                                 "map50_95": report["results"]["2"]["student"]["map50_95"]})
        finally:
            torch.set_num_threads(threads)
    ratio = times[many] / times[1]
    return BenchResult(
        name="episodes",
        rows=rows,
        summary={"ratio_100_vs_1": round(ratio, 3), "episodes_compared": many},
        targets={"ratio_100_vs_1": "<= 3"},
        notes=(f"evaluate() wall time with {many} vs 1 episode(s) on the tiny world (48 images, 8 instances, 2-shot "
               f"draws, random YOLOv8n at 128 px, conf 0.001, <= {max_det} boxes/image); includes loading, the "
               "one feature pass, timing pass and report writing; after one warm-up run; 1 torch thread."),
    )


def run_prototypes(out_dir: Path, quick: bool = False) -> BenchResult:
    """Conditional learner: 1000 enrolled instances (31 coarse classes, 512-d), 300 query boxes → match_ms."""
    from mocha.core.learners import ConditionalLearner, FlatLearner, SimpleShotLearner

    g = torch.Generator().manual_seed(0)
    n_inst, n_query, dim, n_coarse = 1000, 300, 512, 31
    support = torch.randn(n_inst, 5, dim, generator=g)
    queries = torch.randn(n_query, dim, generator=g)
    qcoarse = torch.randint(0, n_coarse, (n_query,), generator=g)
    reps = 20 if quick else 200
    threads = torch.get_num_threads()
    rows, summary = [], {}
    try:
        for nthreads in sorted({1, threads}):
            torch.set_num_threads(nthreads)
            for name, learner in (("conditional", ConditionalLearner()), ("conditional-all",
                                  ConditionalLearner(fallback="all")), ("flat", FlatLearner()),
                                  ("simpleshot", SimpleShotLearner())):
                t0 = time.perf_counter()
                for k in range(n_inst):
                    learner.add(k, k % n_coarse, support[k])
                learner.predict_index(queries, qcoarse)  # builds prototypes once (cached until the next add)
                enrol_ms = 1000 * (time.perf_counter() - t0)
                samples = []
                for _ in range(reps):
                    t = time.perf_counter()
                    learner.predict_index(queries, qcoarse)
                    samples.append(1000 * (time.perf_counter() - t))
                med = statistics.median(samples)
                rows.append({"learner": name, "threads": nthreads, "match_ms_median": round(med, 3),
                             "match_ms_min": round(min(samples), 3), "enrol_1000_ms": round(enrol_ms, 1)})
                if name == "conditional":
                    summary.setdefault("match_ms", round(med, 3))
                    summary["match_ms"] = min(summary["match_ms"], round(med, 3))
    finally:
        torch.set_num_threads(threads)
    return BenchResult(
        name="prototypes",
        rows=rows,
        summary=summary,
        targets={"match_ms": "<= 5"},
        notes=(f"predict of {n_query} query boxes against {n_inst} enrolled instances ({n_coarse} coarse classes, "
               f"{dim}-d, 5 shots each), median of {reps}; match_ms = the conditional learner at the better of 1 "
               f"and {threads} torch threads (on a shared CPU, extra threads wait on each other)."),
    )
