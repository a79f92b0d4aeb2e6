"""`mocha bench peers`: per-image CPU latency of MOCHA against the tools a user would pick instead.

Peers, each in its own clean process (`TimedWorker`), at its own input size, on the same photo; the fast ones
(MOCHA, YOLOv8n, YOLOE) time one image each in turn, the slow ones run alone, one after another:
    MOCHA personalized, onnxruntime fp32 and int8 (640²; `mocha.personalize.bench` workers)
    plain YOLOv8n, ultralytics ONNX export in onnxruntime (640²)
    ultralytics YOLOE-11n with a visual prompt (640, ultralytics' own letterbox: 640×448 for this photo): the
        prompt (one box) is embedded once, then each image is detected against it
        (`YOLOE.predict(..., visual_prompts=, refer_image=)`, then plain predict)
    OWL-ViT B/32 (768²) and OWLv2 B/16 (960²) image-guided detection (transformers `image_guided_detection`,
        the query image given with every call, as the API takes it; image processor + post-processing included)
    the built-in teacher (MiniLM + MobileNetV2) embedding the boxes MOCHA found in the image: the heavy
        pipeline MOCHA distils away (its cost comes on top of a detector)
Weights: YOLOE, OWL-ViT and OWLv2 are built from their configs with random weights (nothing is downloaded;
latency depends on the architecture, not the weights — their box counts mean nothing); MOCHA and YOLOv8n use
the bundle of $MOCHA_BENCH_BUNDLE when set (else random weights). Iterations: 30 after 3 warm-up images for the
fast runtimes, 5 after 1 warm-up for OWL-ViT and the teacher, 3 after 1 for OWLv2 (--quick: 10, 2, 1). Median kept.
Keys: `owlv2_ratio` = OWLv2 image-guided / MOCHA ORT fp32 (target ≥ 100), `yoloe_ratio` = YOLOE / MOCHA ORT fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mocha.bench.core import BenchResult
from mocha.bench.worker import TimedWorker

# name → (label, input, weights, (images, warm-up), the same with --quick)
FAST, HEAVY, SLOWEST = ((30, 3), (10, 2)), ((5, 1), (2, 1)), ((3, 1), (1, 1))
PEERS: dict[str, tuple[str, str, str, tuple[tuple[int, int], tuple[int, int]]]] = {
    "onnx": ("MOCHA personalized (onnxruntime fp32)", "640²", "bundle", FAST),
    "int8": ("MOCHA personalized (onnxruntime int8)", "640²", "bundle", FAST),
    "plain_onnx": ("YOLOv8n plain (ultralytics ONNX, onnxruntime)", "640²", "bundle", FAST),
    "yoloe": ("YOLOE-11n visual prompt (ultralytics, PyTorch)", "640×448 (rect)", "random (yaml)", FAST),
    "owlvit": ("OWL-ViT B/32 image-guided (transformers)", "768²", "random (config)", HEAVY),
    "owlv2": ("OWLv2 B/16 image-guided (transformers)", "960²", "random (config)", SLOWEST),  # ~1 min an image here
    "teacher": ("built-in teacher on MOCHA's boxes (MiniLM + MobileNetV2)", "224² crops", "shipped", HEAVY),
}
MOCHA_MODES = ("onnx", "int8", "plain_onnx")  # run by the latency benchmark's worker
PROMPT_BOX = [40.0, 60.0, 160.0, 300.0]  # the visual prompt / query region in the photo (a mug)


def _timing_loop(fn: Any, warmup: int) -> None:
    """Serve timed calls of `fn` (→ boxes) over stdin/stdout (mocha.bench.worker's protocol)."""
    from mocha.bench.worker import serve_timed_calls

    serve_timed_calls(lambda: (fn(), {}), warmup)


def _yoloe(img: np.ndarray) -> Any:
    from ultralytics import YOLOE

    model = YOLOE("yoloe-11n.yaml")
    bgr = np.ascontiguousarray(img[..., ::-1])  # ultralytics takes numpy images as BGR
    prompt = {"bboxes": np.array([PROMPT_BOX]), "cls": np.array([0])}
    model.predict(bgr, visual_prompts=prompt, refer_image=bgr, imgsz=640, verbose=False, device="cpu")

    def fn() -> int:  # the prompt's embedding is now the model's class: detect against it
        return len(model.predict(bgr, imgsz=640, conf=0.25, verbose=False, device="cpu")[0].boxes)

    return fn


def _owl(img: np.ndarray, v2: bool) -> Any:
    import torch
    from transformers import (
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
    )

    torch.manual_seed(0)
    if v2:  # the configs' defaults are the B/16 and B/32 sizes; OWLv2 B/16 runs at 960² (its image processor's size)
        cfg = Owlv2Config(vision_config={"image_size": 960})
        model, proc = Owlv2ForObjectDetection(cfg).eval(), Owlv2ImageProcessor()
    else:
        model, proc = OwlViTForObjectDetection(OwlViTConfig()).eval(), OwlViTImageProcessor()
    x1, y1, x2, y2 = (int(v) for v in PROMPT_BOX)
    query = np.ascontiguousarray(img[y1:y2, x1:x2])
    h, w = img.shape[:2]

    def fn() -> int:
        with torch.inference_mode():
            pixels = proc(images=img, return_tensors="pt")["pixel_values"]
            query_pixels = proc(images=query, return_tensors="pt")["pixel_values"]
            out = model.image_guided_detection(pixel_values=pixels, query_pixel_values=query_pixels)
            res = proc.post_process_image_guided_detection(out, threshold=0.9, nms_threshold=0.3,
                                                           target_sizes=torch.tensor([[h, w]]))
        return len(res[0]["boxes"])

    return fn


def _teacher(img: np.ndarray, boxes_file: str) -> Any:
    import torch

    from mocha.teacher.crops import crop_regions
    from mocha.teacher.registry import create_teacher

    spec = json.loads(Path(boxes_file).read_text())
    boxes, labels = np.asarray(spec["boxes"], np.float32).reshape(-1, 4), spec["labels"]
    teacher = create_teacher("builtin")

    def fn() -> int:
        with torch.inference_mode():
            crops = crop_regions(img, boxes, strict=False)
            return len(teacher.embed(crops, labels))

    return fn


def _worker(argv: list[str]) -> None:
    """One peer in a clean process (the TimedWorker protocol)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", required=True, choices=["yoloe", "owlvit", "owlv2", "teacher"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--boxes", default="")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from mocha.personalize.bench import bench_image

    img = bench_image()
    if a.peer == "yoloe":
        fn = _yoloe(img)
    elif a.peer == "teacher":
        fn = _teacher(img, a.boxes)
    else:
        fn = _owl(img, v2=a.peer == "owlv2")
    _timing_loop(fn, a.warmup)


def _mocha_boxes(setup: dict[str, Any], out: Path) -> Path:
    """The boxes (original pixels) and coarse names MOCHA's ONNX engine finds in the photo, for the teacher."""
    from mocha.personalize.bench import IMGSZ, bench_image
    from mocha.personalize.personalizer import Personalizer

    with Personalizer.load(setup["onnx"], setup["gallery"], backend="onnx", conf=setup["conf"],
                           max_det=setup["max_det"], imgsz=IMGSZ) as p:
        r = p.detect(bench_image())
    names = [p.names[int(c)] for c in r.boxes.cls]
    out.write_text(json.dumps({"boxes": r.boxes.xyxy.tolist(), "labels": names}))
    return out


def _start(peer: str, setup: dict[str, Any], threads: int, warmup: int) -> TimedWorker:
    if peer in MOCHA_MODES:
        from mocha.personalize.bench import _worker_process

        return _worker_process(peer, setup, warmup, threads)
    args = ["--peer", peer, "--threads", str(threads), "--warmup", str(warmup), "--boxes", setup["boxes_file"]]
    return TimedWorker("mocha.bench.peers", args, threads, label=f"peers worker {peer}")


def run(out_dir: Path, quick: bool = False) -> BenchResult:
    """Time every peer, one process after another; see the module docstring."""
    from mocha.core.progress import progress
    from mocha.personalize.bench import prepare

    threads = max(1, min(2, os.cpu_count() or 1))
    given, calib = os.environ.get("MOCHA_BENCH_BUNDLE"), os.environ.get("MOCHA_BENCH_CALIB")
    times: dict[str, list[float]] = {}
    boxes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="mocha-peers-") as tmp:
        setup = prepare(Path(tmp), Path(given) if given else None, Path(calib) if calib else None)
        setup["boxes_file"] = str(_mocha_boxes(setup, Path(tmp) / "boxes.json"))
        # the fast peers side by side, one image each in turn (load from other users hits all alike), then the
        # slow ones alone, one after another
        groups = [[p for p, v in PEERS.items() if v[3] is FAST]] + [[p] for p, v in PEERS.items() if v[3] is not FAST]
        for group in groups:
            n, warmup = PEERS[group[0]][3][quick]
            workers: dict[str, TimedWorker] = {}
            try:
                for peer in group:
                    workers[peer], times[peer] = _start(peer, setup, threads, warmup), []
                for _ in progress(range(n), desc=f"peers {'+'.join(group)}", unit="round"):
                    for peer, w in workers.items():
                        ms, boxes[peer] = w.time()
                        times[peer].append(ms)
            finally:
                for w in workers.values():
                    w.close()
    med = {p: statistics.median(t) for p, t in times.items()}
    rows = [{"peer": label, "input": size, "weights": weights, "median_ms": round(med[p], 1),
             "vs_mocha_onnx": round(med[p] / med["onnx"], 2), "images": len(times[p]), "boxes": boxes[p]}
            for p, (label, size, weights, _) in PEERS.items()]
    summary = {
        "owlv2_ratio": round(med["owlv2"] / med["onnx"], 1),
        "yoloe_ratio": round(med["yoloe"] / med["onnx"], 2),
        "owlvit_ratio": round(med["owlvit"] / med["onnx"], 1),
        "teacher_ratio": round(med["teacher"] / med["onnx"], 2),
        "mocha_onnx_ms": round(med["onnx"], 2),
        "mocha_int8_ms": round(med["int8"], 2),
        "threads": threads,
        "bundle": given or "fresh random-weight YOLOv8n + translator 448→512",
        "teacher_boxes": boxes["teacher"],
    }
    counts = {p: PEERS[p][3][quick] for p in ("onnx", "owlvit", "owlv2")}
    notes = (f"CPU, {threads} threads, each peer in its own process; MOCHA, YOLOv8n and YOLOE one image each in "
             "turn, the others alone; median of "
             f"{counts['onnx'][0]} images after {counts['onnx'][1]} warm-up for MOCHA, YOLOv8n and YOLOE, "
             f"{counts['owlvit'][0]} after {counts['owlvit'][1]} for OWL-ViT and the teacher, "
             f"{counts['owlv2'][0]} after "
             f"{counts['owlv2'][1]} for OWLv2 (about a minute an image on this 2-core machine). YOLOE / OWL-ViT / "
             "OWLv2: architectures from their configs with random weights (latency depends on the architecture, not "
             "the weights; their box counts mean nothing).")
    return BenchResult("peers", rows, summary, targets={"owlv2_ratio": ">= 100"}, notes=notes)


if __name__ == "__main__":
    _worker(sys.argv[1:])
