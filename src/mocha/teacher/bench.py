"""`mocha bench extract`: the extraction pipeline against the teacher's own forward-only ceiling.

On the tiny world with the built-in teacher, side by side in one process:
- forward-only: `teacher.embed` on ready 224×224 crops already in memory, at batch sizes 1..32 → the best
  regions/s is the ceiling;
- pipeline: `extract_split` into a fresh store at that batch size (hash, decode each image once, crop,
  preprocess, forward, durable chunk writes, compaction, split lists) → regions/s;
- rerun: the same call over the now complete store (nothing to compute; the teacher is not loaded).

`pipeline_efficiency` = pipeline regions/s ÷ forward-only regions/s; `resume_fraction` = rerun time ÷ original.
Each figure is the best of `reps` repetitions (the machine is noisy; best-of is the least biased).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mocha.bench.core import BenchResult
from mocha.data.dataset import load_dataset
from mocha.data.images import load_image, norm_cxcywh_to_xyxy
from mocha.data.records import read_split
from mocha.teacher.base import Teacher
from mocha.teacher.crops import crop_regions
from mocha.teacher.extract import extract_split
from mocha.teacher.registry import create_teacher

SPLITS = ("base_train", "base_val", "personal")


def _ready_crops(spec, records_by_split) -> tuple[list[np.ndarray], list[str]]:
    crops, labels = [], []
    for records in records_by_split.values():
        for rec in records:
            img = load_image(rec.image)
            h, w = img.shape[:2]
            crops += crop_regions(img, norm_cxcywh_to_xyxy(np.asarray(rec.boxes), w, h))
            labels += [spec.names[int(c)] for c in rec.coarse]
    return crops, labels


def _forward_rate(teacher: Teacher, crops: list[np.ndarray], labels: list[str], batch: int, reps: int) -> float:
    teacher.embed(crops[:batch], labels[:batch])  # warm-up (and the text cache)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for i in range(0, len(crops), batch):
            teacher.embed(crops[i:i + batch], labels[i:i + batch])
        best = min(best, time.perf_counter() - t0)
    return len(crops) / best


def _pipeline(teacher: Teacher | None, yaml: Path, store: Path, records_by_split, batch: int) -> float:
    t0 = time.perf_counter()
    for split, records in records_by_split.items():
        extract_split(yaml, split, store, teacher=teacher, records=records, batch_size=batch, progress=False)
    return time.perf_counter() - t0


def run(out_dir: Path, quick: bool = False) -> BenchResult:
    from mocha.data.world import generate_world

    reps = 2 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="mocha-bench-extract-"))
    try:
        yaml = generate_world(tmp / "world", size="tiny", seed=0)
        spec = load_dataset(yaml)
        records = {s: read_split(spec, s) for s in SPLITS}
        teacher = create_teacher("builtin", device="cpu")
        crops, labels = _ready_crops(spec, records)
        n = len(crops)
        rows, rates = [], {}
        for b in (1, 4, 8, 16, 32):
            rates[b] = _forward_rate(teacher, crops, labels, b, reps)
            rows.append({"measure": f"forward-only, batch {b}", "regions": n, "regions_per_s": round(rates[b], 1)})
        best_b = max(rates, key=rates.get)
        # fresh stores; the first pass also warms the page cache the way a real rerun would find it
        pipe, rerun = float("inf"), float("inf")
        for r in range(reps):
            store = tmp / f"store{r}"
            pipe = min(pipe, _pipeline(teacher, yaml, store, records, best_b))
            rerun = min(rerun, _pipeline(None, yaml, store, records, best_b))
        pipe_rate = n / pipe
        rows.append({"measure": f"pipeline (fresh store), batch {best_b}", "regions": n,
                     "regions_per_s": round(pipe_rate, 1), "seconds": round(pipe, 3)})
        rows.append({"measure": "rerun over the complete store", "regions": n, "seconds": round(rerun, 3)})
        summary = {
            "pipeline_efficiency": round(pipe_rate / rates[best_b], 3),
            "resume_fraction": round(rerun / pipe, 4),
            "forward_regions_per_s": round(rates[best_b], 1),
            "pipeline_regions_per_s": round(pipe_rate, 1),
            "best_batch": best_b,
            "regions": n,
        }
        return BenchResult("extract", rows, summary,
                           targets={"pipeline_efficiency": ">= 0.8", "resume_fraction": "<= 0.05"},
                           notes="built-in teacher (MobileNetV2 + MiniLM) on the tiny world, CPU; best of "
                                 f"{reps} repetitions")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
