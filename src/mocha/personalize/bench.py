"""`mocha bench latency`: per-image CPU latency at 640×640 of plain detection, personalized detection in
PyTorch and personalized detection in onnxruntime.

Each runtime is timed in its own clean subprocess (torch and onnxruntime in one process fight over the
cores) with the same explicit thread count, after warm-up; the three processes time one image each in
turn (only one runs at a time), so load from other users of the machine hits all three alike; the median
of 40 images (20 with --quick) per runtime is kept.
Every mode starts from the original RGB image (letterbox and mapping back included). Keys:
`personalize_overhead` = personalized PyTorch / plain − 1 (target ≤ 0.15) and `onnx_speedup` =
personalized PyTorch / personalized onnxruntime (target ≥ 1.3).

Model: the bundle in $MOCHA_BENCH_BUNDLE (conf 0.1, up to 300 boxes, as the SPEC's protocol), else a fresh
random-weight YOLOv8n (BatchNorm statistics set from the image, `calibrate_bn`) + 448→512 translator bundle;
a random detector's scores are meaningless, so then the confidence threshold lets its 300 most confident
anchors into NMS and up to 100 boxes out — a cluttered scene, the costly case for personalization
(`clutter_conf`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mocha.bench.core import BenchResult
from mocha.bench.worker import TimedWorker

IMGSZ = 640
MODES = ("plain", "torch", "onnx")
NAMES = ["mug", "bottle", "ball", "book", "box", "can", "shoe", "toy"]


def bench_image() -> np.ndarray:
    """A real photo (scikit-image's coffee, 600×400), letterboxed inside each timed call."""
    from skimage import data

    return np.ascontiguousarray(data.coffee())


def prepare(work: Path, bundle: Path | None) -> dict[str, Any]:
    """Bundle (given or fresh), its ONNX export and a gallery of 5 instances; returns worker settings."""
    import torch

    from mocha.export.onnx_export import export_onnx
    from mocha.personalize.personalizer import Personalizer

    settings: dict[str, Any] = {"conf": 0.1, "max_det": 300}
    if bundle is None:
        from mocha.models.bundle import save_bundle
        from mocha.models.detector import Student
        from mocha.models.translator import Translator

        torch.manual_seed(0)
        student = Student.create("yolov8n.yaml", names=NAMES)
        calibrate_bn(student, bench_image())
        bundle = save_bundle(work / "bundle", student, Translator(448, 512).eval(), None,
                             {"imgsz": IMGSZ, "note": "latency benchmark"})
        settings = {"conf": clutter_conf(bundle, bench_image()), "max_det": 100}
    onnx = export_onnx(bundle, work / "onnx", imgsz=IMGSZ)
    gallery = work / "bench.gallery"
    img = bench_image()
    h, w = img.shape[:2]
    with Personalizer.load(bundle, gallery, imgsz=IMGSZ) as p:
        for k in range(5):  # five personal instances of two coarse classes
            x = 40 + 90 * k
            p.enroll(f"instance{k}", img, boxes=[[x, 60, min(w, x + 120), min(h, 300)]], coarse=k % 2)
    return {"bundle": str(bundle), "onnx": str(onnx), "gallery": str(gallery), **settings}


def calibrate_bn(student: Any, img: np.ndarray, imgsz: int = IMGSZ) -> None:
    """Set a random-weight student's BatchNorm statistics from one batch (the image and its mirror).

    At initialisation the running statistics (mean 0, var 1) do not match the activations, which then
    vanish layer by layer (~1e-7 at the head) and every anchor gets the same score."""
    import torch

    from mocha.data.images import letterbox

    x = torch.from_numpy(letterbox(img, imgsz)[0]).permute(2, 0, 1)[None].float() / 255.0
    bns = [m for m in student.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 1.0  # running stats := this batch's stats
    student.train()
    with torch.no_grad():
        student(torch.cat([x, x.flip(3)]))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    student.eval()


def clutter_conf(bundle: Path, img: np.ndarray, candidates: int = 300) -> float:
    """Confidence threshold that lets `candidates` anchors of a random-weight detector into NMS on `img`.

    Random class scores are all about equal, so conf 0 would feed all 8400 anchors to NMS (~100 ms here)
    and time NMS rather than the model; a threshold at the 300th score gives a busy but plausible scene."""
    import torch

    from mocha.data.images import letterbox
    from mocha.personalize.engine import TorchEngine

    engine = TorchEngine.load(bundle, device="cpu", imgsz=IMGSZ)
    with torch.inference_mode():
        _, raw = engine.bundle.student(engine._tensor(letterbox(img, IMGSZ)[0]))
    scores = raw[0][0, 4:].amax(0).sort(descending=True).values
    return float(scores[min(candidates, len(scores) - 1)])


def _worker(argv: list[str]) -> None:
    """One runtime in a clean process: load, warm up, print "ready"; then time one image per "time" line
    read from stdin (prints "<ms> <boxes>") until "quit"."""
    ap = argparse.ArgumentParser()
    for key in ("mode", "bundle", "onnx", "gallery"):
        ap.add_argument(f"--{key}", required=True)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--conf", type=float, default=0.1)
    ap.add_argument("--max-det", type=int, default=300)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from mocha.data.images import letterbox
    from mocha.personalize.personalizer import Personalizer

    img = bench_image()
    kw = {"conf": a.conf, "max_det": a.max_det, "threads": a.threads, "imgsz": IMGSZ, "device": "cpu"}
    if a.mode == "onnx":
        p = Personalizer.load(a.onnx, a.gallery, backend="onnx", **kw)
    else:
        p = Personalizer.load(a.bundle, a.gallery, **kw)
    engine = p.engine

    def plain() -> int:
        lb_img, lb = letterbox(img, IMGSZ)
        dets = engine.detect_plain(lb_img, conf=a.conf, max_det=a.max_det)
        lb.to_original(dets[:, :4])
        return len(dets)

    def personalized() -> int:
        return len(p.detect(img))

    fn = plain if a.mode == "plain" else personalized
    with torch.inference_mode():
        for _ in range(a.warmup):
            fn()
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() != "time":
                break
            t0 = time.perf_counter()
            boxes = fn()
            print(f"{(time.perf_counter() - t0) * 1000:.4f} {boxes}", flush=True)


def _worker_process(mode: str, setup: dict[str, Any], warmup: int, threads: int) -> TimedWorker:
    """A runtime's subprocess (`_worker` above), driven one image at a time."""
    args = ["--mode", mode, "--bundle", setup["bundle"], "--onnx", setup["onnx"], "--gallery", setup["gallery"],
            "--warmup", str(warmup), "--threads", str(threads), "--conf", str(setup["conf"]),
            "--max-det", str(setup["max_det"])]
    return TimedWorker("mocha.personalize.bench", args, threads, label=f"latency worker {mode}")


def run(out_dir: Path, quick: bool = False) -> BenchResult:
    """Time the three modes side by side; see the module docstring."""
    from mocha.core.progress import progress

    threads = max(1, min(2, os.cpu_count() or 1))
    n, warmup = (20, 2) if quick else (40, 5)
    given = os.environ.get("MOCHA_BENCH_BUNDLE")
    times: dict[str, list[float]] = {m: [] for m in MODES}
    boxes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="mocha-latency-") as tmp:
        setup = prepare(Path(tmp), Path(given) if given else None)
        workers: dict[str, TimedWorker] = {}
        try:
            for mode in MODES:
                workers[mode] = _worker_process(mode, setup, warmup, threads)
            for _ in progress(range(n), desc="latency", unit="round"):
                for mode, w in workers.items():  # one image per runtime in turn: load from other users hits all alike
                    ms, boxes[mode] = w.time()
                    times[mode].append(ms)
        finally:
            for w in workers.values():
                w.close()
    med = {m: statistics.median(times[m]) for m in MODES}
    labels = {"plain": "plain detection (PyTorch)", "torch": "personalized (PyTorch)",
              "onnx": "personalized (onnxruntime)"}
    rows = [{"mode": labels[m], "median_ms": round(med[m], 2), "p10_ms": round(float(np.percentile(times[m], 10)), 2),
             "p90_ms": round(float(np.percentile(times[m], 90)), 2), "images": len(times[m]),
             "boxes_per_image": boxes[m], "threads": threads} for m in MODES]
    summary = {
        "personalize_overhead": round(med["torch"] / med["plain"] - 1, 4),
        "onnx_speedup": round(med["torch"] / med["onnx"], 3),
        "plain_ms": round(med["plain"], 2),
        "personalized_torch_ms": round(med["torch"], 2),
        "personalized_onnx_ms": round(med["onnx"], 2),
        "imgsz": IMGSZ,
        "bundle": given or "fresh random-weight YOLOv8n + translator 448→512",
        "conf": round(float(setup["conf"]), 6),
        "max_det": setup["max_det"],
    }
    notes = (f"CPU, {threads} threads per runtime, each runtime in its own process, {warmup} warm-up images, then "
             f"{n} images per runtime taken in turn (one at a time); 5 enrolled instances; image 600×400 → 640×640.")
    return BenchResult("latency", rows, summary,
                       targets={"personalize_overhead": "<= 0.15", "onnx_speedup": ">= 1.3"}, notes=notes)


if __name__ == "__main__":
    _worker(sys.argv[1:])
