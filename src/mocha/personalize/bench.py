"""`mocha bench latency`: per-image CPU latency of plain and personalized detection, in PyTorch and in
onnxruntime (fp32 and int8), with 1 and 2 threads, per stage and with each runtime's peak memory.

Students (`student=`): the default, YOLOv8n at 640×640 (everything below), or `nanodet-g` at NanoDet's 416×416
input (`STUDENTS`): its plain ONNX is the detector graph of `mocha export` alone (feature-map outputs dropped),
there is no int8 mode (the int8 export locates ultralytics' head by its node names), and the target is the
issue's: personalized ≤ 1.25× NanoDet alone. Its bundle: $MOCHA_BENCH_BUNDLE, else the shipped `coco` bundle,
else the shipped NanoDet-g + a random 384→512 translator (the translator's weights do not change the timing);
real COCO weights, so conf 0.1 as the protocol, no clutter threshold.

Runtimes (each in its own clean subprocess, `mocha.bench.worker.TimedWorker`: torch and onnxruntime in one
process fight over the cores):
    plain_torch  the student's plain detection in PyTorch
    plain_onnx   the same detector exported by ultralytics (`YOLO(...).export(format="onnx")`) in onnxruntime,
                 the number a YOLO user knows
    torch        personalized detection (detect + embed + match) in PyTorch
    onnx         personalized detection from `mocha export` in onnxruntime, fp32
    int8         the same with `mocha export int8=true` (detector quantized, calibrated on $MOCHA_BENCH_CALIB)
For each thread count the five processes time one image each in turn (only one runs at a time), so load from
other users of the machine hits all alike; after warm-up, the median of 40 images (20 with --quick) is kept.
Every mode starts from the original RGB image (letterbox and mapping back included). Stages: preprocess
(letterbox), detector (forward + NMS), embed (box pooling + translator), match (prototype matching + boxes
back to the image; for plain modes just the mapping back). Peak memory: the largest psutil RSS of the worker.
Keys (2 threads; `_1t` for 1 thread): `onnx_vs_plain_onnx` = personalized ORT / plain ORT (target ≤ 1.10),
`onnx_speedup` = personalized PyTorch / personalized ORT (≥ 2.0), `int8_speedup` = fp32 ORT / int8 ORT (≥ 1.5),
`personalize_overhead` = personalized PyTorch / plain PyTorch − 1 (≤ 0.15).

Model: the bundle in $MOCHA_BENCH_BUNDLE (conf 0.1, up to 300 boxes, as the SPEC's protocol), else a fresh
random-weight YOLOv8n (BatchNorm statistics set from the image, `calibrate_bn`) + 448→512 translator bundle;
a random detector's scores are meaningless, so then the confidence threshold lets its 300 most confident
anchors into NMS and up to 100 boxes out — a cluttered scene, the costly case for personalization
(`clutter_conf`). int8 calibration images: the folder $MOCHA_BENCH_CALIB (world images), else scikit-image's
sample photos and their mirrors.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mocha.bench.core import BenchResult
from mocha.bench.worker import TimedWorker, serve_timed_calls
from mocha.errors import ConfigError

IMGSZ = 640
MODES = ("plain_torch", "plain_onnx", "torch", "onnx", "int8")
LABELS = {"plain_torch": "plain detection (PyTorch)", "plain_onnx": "plain detection (ultralytics ONNX, onnxruntime)",
          "torch": "personalized (PyTorch)", "onnx": "personalized (onnxruntime fp32)",
          "int8": "personalized (onnxruntime int8)"}
STAGES = ("preprocess", "detector", "embed", "match")
THREADS = (1, 2)
REPS = {False: (40, 5), True: (20, 2)}  # quick -> (timed images per runtime, warm-up images)
NAMES = ["mug", "bottle", "ball", "book", "box", "can", "shoe", "toy"]


@dataclass(frozen=True)
class StudentBench:
    """What the latency benchmark runs for one student architecture."""

    imgsz: int
    modes: tuple[str, ...]
    plain_onnx_label: str
    targets: dict[str, str]


def _nanodet_imgsz() -> int:
    from mocha.models.nanodet import INPUT_SIZE

    return INPUT_SIZE


DEFAULT_STUDENT = "yolov8n"
STUDENTS = {
    DEFAULT_STUDENT: lambda: StudentBench(IMGSZ, MODES, LABELS["plain_onnx"], {
        "onnx_vs_plain_onnx": "<= 1.10", "onnx_speedup": ">= 2.0", "int8_speedup": ">= 1.5",
        "personalize_overhead": "<= 0.15"}),
    # issue 14: personalized ≤ 1.25× NanoDet alone (onnxruntime per the brief; the same bound in PyTorch)
    "nanodet-g": lambda: StudentBench(_nanodet_imgsz(), MODES[:4], "plain detection (detector-only ONNX, onnxruntime)",
                                      {"onnx_vs_plain_onnx": "<= 1.25", "personalize_overhead": "<= 0.25"}),
}


def student_bench(student: str) -> StudentBench:
    """The settings of `student=` ('' = the default YOLOv8n); ConfigError naming the option otherwise."""
    name = student or DEFAULT_STUDENT
    if name not in STUDENTS:
        raise ConfigError(f"student={student}: the latency benchmark runs {' | '.join(STUDENTS)}")
    return STUDENTS[name]()


def bench_image() -> np.ndarray:
    """A real photo (scikit-image's coffee, 600×400), letterboxed inside each timed call."""
    from skimage import data

    return np.ascontiguousarray(data.coffee())


def sample_calibration(folder: Path) -> Path:
    """scikit-image's sample photos and their mirrors as PNGs: calibration images when no world is given."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina"):
        img = np.asarray(getattr(data, name)())
        img = np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img[..., :3]
        Image.fromarray(img).save(folder / f"{name}.png")
        Image.fromarray(np.ascontiguousarray(img[:, ::-1])).save(folder / f"{name}_mirror.png")
    return folder


def plain_onnx_export(bundle: Path, work: Path, imgsz: int = IMGSZ) -> Path:
    """The bundle's student exported the way a YOLO user does it: an ultralytics checkpoint → `format="onnx"`."""
    import copy

    import torch
    from ultralytics import YOLO

    from mocha.models.bundle import load_bundle

    student = load_bundle(bundle, device="cpu").student
    model = copy.deepcopy(student.model).float().eval()
    model.args = {"task": "detect", "imgsz": imgsz}  # what ultralytics' checkpoint loader reads back
    work.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_args": dict(model.args)}, work / "plain.pt")
    # simplify=False: onnxslim is not installed (and nothing is fetched); onnxruntime optimises the graph itself
    out = YOLO(str(work / "plain.pt")).export(format="onnx", imgsz=imgsz, opset=17, simplify=False, dynamic=False,
                                             device="cpu", verbose=False)
    return Path(out)


def detector_only_export(bundle: Path, work: Path, imgsz: int) -> Path:
    """The bundle's detector alone as ONNX: `mocha export`'s detector graph without its feature-map outputs
    (ultralytics-layout predictions, so `PlainOnnx` runs the same NMS on it)."""
    import warnings

    import torch

    from mocha.export.onnx_export import DetectorGraph
    from mocha.models.bundle import load_bundle

    class PredictionsOnly(DetectorGraph):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return super().forward(images)[0]

    work.mkdir(parents=True, exist_ok=True)
    out = work / "detector-only.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript tracer warnings about shapes fixed on purpose
        torch.onnx.export(PredictionsOnly(load_bundle(bundle, device="cpu").student.eval()),
                          (torch.zeros(1, 3, imgsz, imgsz),), str(out), dynamo=False, opset_version=17,
                          input_names=["images"], output_names=["pred"], do_constant_folding=True)
    return out


def nanodet_bundle(work: Path, given: Path | None) -> tuple[Path, str]:
    """(bundle, what it is) for student=nanodet-g: the given one (its student must be NanoDet-g), the shipped
    `coco` bundle, else the shipped NanoDet-g + a random 384→512 translator."""
    import torch

    from mocha.models.bundle import resolve_bundle, save_bundle
    from mocha.models.nanodet import load_shipped
    from mocha.models.translator import Translator

    if given is not None:
        return given, str(given)
    coco = resolve_bundle("coco")
    if (coco / "bundle.json").exists():
        return coco, "shipped coco bundle"
    torch.manual_seed(0)
    student = load_shipped().eval()
    # heads: the distillation trainer's default (region_dim / 32)
    translator = Translator(student.region_dim, 512, heads=student.region_dim // 32).eval()
    path = save_bundle(work / "bundle", student, translator, None, {"imgsz": _nanodet_imgsz(),
                                                                    "note": "latency benchmark"})
    return path, "shipped NanoDet-g + random translator 384→512"


def check_student(bundle: Path, student: str) -> None:
    """MOCHA_BENCH_BUNDLE must hold the benchmarked student (its plain ONNX export depends on the architecture)."""
    from mocha.models.bundle import load_bundle
    from mocha.models.nanodet import NanoDetStudent

    is_nanodet = isinstance(load_bundle(bundle, device="cpu").student, NanoDetStudent)
    if is_nanodet != (student == "nanodet-g"):
        has = "NanoDet-g" if is_nanodet else "a YOLO"
        hint = "student=nanodet-g" if is_nanodet else "no student= (the YOLO default)"
        raise ConfigError(f"MOCHA_BENCH_BUNDLE={bundle}: its student is {has}, not the benchmarked {student}; "
                          f"run with {hint}")


def prepare(work: Path, bundle: Path | None, calib: Path | None = None, student: str = "") -> dict[str, Any]:
    """Bundle (given or fresh), its exports (fp32, int8 if benchmarked, plain) and a gallery of 5 instances;
    returns the worker settings."""
    import torch

    from mocha.export.onnx_export import export_onnx
    from mocha.personalize.personalizer import Personalizer

    spec, name = student_bench(student), student or DEFAULT_STUDENT
    settings: dict[str, Any] = {"conf": 0.1, "max_det": 300, "student": name, "imgsz": spec.imgsz,
                                "modes": spec.modes, "described": str(bundle) if bundle else None}
    if bundle is not None:
        check_student(bundle, name)
    if name == "nanodet-g":
        bundle, settings["described"] = nanodet_bundle(work, bundle)
    elif bundle is None:
        from mocha.models.bundle import save_bundle
        from mocha.models.detector import Student
        from mocha.models.translator import Translator

        torch.manual_seed(0)
        model = Student.create("yolov8n.yaml", names=NAMES)
        calibrate_bn(model, bench_image())
        bundle = save_bundle(work / "bundle", model, Translator(448, 512).eval(), None,
                             {"imgsz": IMGSZ, "note": "latency benchmark"})
        settings.update(conf=clutter_conf(bundle, bench_image()), max_det=100,
                        described="fresh random-weight YOLOv8n + translator 448→512")
    calib = (calib or sample_calibration(work / "calib")) if "int8" in spec.modes else None
    onnx = export_onnx(bundle, work / "onnx", imgsz=spec.imgsz)
    int8 = export_onnx(bundle, work / "int8", imgsz=spec.imgsz, int8=True, calib=calib) if calib else ""
    if name == "nanodet-g":
        plain = detector_only_export(bundle, work / "plain", spec.imgsz)
    else:
        plain = plain_onnx_export(bundle, work / "plain", spec.imgsz)
    gallery = work / "bench.gallery"
    img = bench_image()
    h, w = img.shape[:2]
    with Personalizer.load(bundle, gallery, imgsz=spec.imgsz) as p:
        for k in range(5):  # five personal instances of two coarse classes
            x = 40 + 90 * k
            p.enroll(f"instance{k}", img, boxes=[[x, 60, min(w, x + 120), min(h, 300)]], coarse=k % 2)
    return {"bundle": str(bundle), "onnx": str(onnx), "int8": str(int8), "plain_onnx": str(plain),
            "gallery": str(gallery), "calib": str(calib or ""), **settings}


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


class PlainOnnx:
    """An ultralytics ONNX detector in onnxruntime, with the same NMS as the student (plain detection only)."""

    def __init__(self, path: str, threads: int) -> None:
        import onnxruntime as ort

        from mocha.export.onnx_runner import session_options

        self.sess = ort.InferenceSession(path, session_options(threads), providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0].name

    def detect_plain(self, image_lb: np.ndarray, conf: float, max_det: int, iou: float = 0.6) -> np.ndarray:
        import torch
        from ultralytics.utils.nms import non_max_suppression

        x = np.ascontiguousarray(image_lb.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        pred = self.sess.run(None, {self.input: x})[0]
        return non_max_suppression(torch.from_numpy(pred), conf_thres=conf, iou_thres=iou, max_det=max_det)[0].numpy()


def _worker(argv: list[str]) -> None:
    """One runtime in a clean process: load, warm up, print "ready"; then time one image per "time" line
    read from stdin (prints "<ms> <boxes> <stage>=<ms> ... rss=<MiB>") until "quit"."""
    ap = argparse.ArgumentParser()
    for key in ("mode", "bundle", "onnx", "plain-onnx", "gallery"):
        ap.add_argument(f"--{key}", required=True)
    ap.add_argument("--int8", default="")
    ap.add_argument("--imgsz", type=int, default=IMGSZ)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--conf", type=float, default=0.1)
    ap.add_argument("--max-det", type=int, default=300)
    a = ap.parse_args(argv)
    import psutil
    import torch

    torch.set_num_threads(a.threads)
    from mocha.data.images import letterbox
    from mocha.personalize.personalizer import Personalizer

    img = bench_image()
    kw = {"conf": a.conf, "max_det": a.max_det, "threads": a.threads, "imgsz": a.imgsz, "device": "cpu"}
    if a.mode == "plain_onnx":
        engine: Any = PlainOnnx(a.plain_onnx, a.threads)
    elif a.mode in ("onnx", "int8"):
        p = Personalizer.load(getattr(a, a.mode), a.gallery, backend="onnx", **kw)
    else:
        p = Personalizer.load(a.bundle, a.gallery, **kw)
    if a.mode != "plain_onnx":
        engine = p.engine

    def plain() -> tuple[int, dict[str, float]]:
        t0 = time.perf_counter()
        lb_img, lb = letterbox(img, a.imgsz)
        t1 = time.perf_counter()
        dets = engine.detect_plain(lb_img, conf=a.conf, max_det=a.max_det)
        t2 = time.perf_counter()
        lb.to_original(dets[:, :4])
        t3 = time.perf_counter()
        return len(dets), {"preprocess": (t1 - t0) * 1e3, "detector": (t2 - t1) * 1e3, "embed": 0.0,
                           "match": (t3 - t2) * 1e3}

    def personalized() -> tuple[int, dict[str, float]]:
        r = p.detect(img)
        sp = r.speed
        return len(r), {"preprocess": sp["preprocess"], "detector": sp["inference"], "embed": sp["embed"],
                        "match": sp["postprocess"]}

    fn = plain if a.mode.startswith("plain") else personalized
    proc = psutil.Process()
    with torch.inference_mode():
        serve_timed_calls(fn, a.warmup, after=lambda: {"rss": proc.memory_info().rss / 2**20})


def _worker_process(mode: str, setup: dict[str, Any], warmup: int, threads: int) -> TimedWorker:
    """A runtime's subprocess (`_worker` above), driven one image at a time."""
    args = ["--mode", mode, "--bundle", setup["bundle"], "--onnx", setup["onnx"], "--int8", setup["int8"],
            "--plain-onnx", setup["plain_onnx"], "--gallery", setup["gallery"], "--warmup", str(warmup),
            "--threads", str(threads), "--conf", str(setup["conf"]), "--max-det", str(setup["max_det"]),
            "--imgsz", str(setup["imgsz"])]
    return TimedWorker("mocha.personalize.bench", args, threads, label=f"latency worker {mode} ({threads} threads)")


def time_modes(setup: dict[str, Any], threads: int, n: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Per mode: the n total times, per-stage times, boxes of the last image and peak RSS (MiB)."""
    from mocha.core.progress import progress

    modes = setup.get("modes", MODES)
    out: dict[str, dict[str, Any]] = {m: {"ms": [], "stages": {s: [] for s in STAGES}, "rss": 0.0} for m in modes}
    workers: dict[str, TimedWorker] = {}
    try:
        for mode in modes:
            workers[mode] = _worker_process(mode, setup, warmup, threads)
        for _ in progress(range(n), desc=f"latency {threads}t", unit="round"):
            for mode, w in workers.items():  # one image per runtime in turn: load from other users hits all alike
                ms, out[mode]["boxes"] = w.time()
                out[mode]["ms"].append(ms)
                for s in STAGES:
                    out[mode]["stages"][s].append(w.extra[s])
                out[mode]["rss"] = max(out[mode]["rss"], w.extra["rss"])
    finally:
        for w in workers.values():
            w.close()
    return out


def _row(mode: str, threads: int, t: dict[str, Any], label: str | None = None) -> dict[str, Any]:
    row = {"mode": label or LABELS[mode], "threads": threads, "median_ms": round(statistics.median(t["ms"]), 2),
           "min_ms": round(min(t["ms"]), 2), "p10_ms": round(float(np.percentile(t["ms"], 10)), 2),
           "p90_ms": round(float(np.percentile(t["ms"], 90)), 2)}
    row.update({f"{s}_ms": round(statistics.median(t["stages"][s]), 2) for s in STAGES})
    row.update({"peak_rss_mib": round(t["rss"], 1), "images": len(t["ms"]), "boxes_per_image": t["boxes"]})
    return row


def ratios(med: dict[str, float]) -> dict[str, float]:
    """The headline ratios from per-mode medians (ms); `int8_speedup` only when int8 was timed."""
    out = {
        "onnx_vs_plain_onnx": round(med["onnx"] / med["plain_onnx"], 3),
        "onnx_speedup": round(med["torch"] / med["onnx"], 3),
        "int8_speedup": round(med["onnx"] / med["int8"], 3) if "int8" in med else None,
        "personalize_overhead": round(med["torch"] / med["plain_torch"] - 1, 4),
    }
    return {k: v for k, v in out.items() if v is not None}


def run(out_dir: Path, quick: bool = False, student: str = "") -> BenchResult:
    """Time the runtimes side by side with 1 and 2 threads; see the module docstring."""
    spec = student_bench(student)
    threads_list = [t for t in THREADS if t <= max(1, os.cpu_count() or 1)]
    n, warmup = REPS[quick]
    given = os.environ.get("MOCHA_BENCH_BUNDLE")
    calib = os.environ.get("MOCHA_BENCH_CALIB") if "int8" in spec.modes else None
    labels = {**LABELS, "plain_onnx": spec.plain_onnx_label}
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mocha-latency-") as tmp:
        setup = prepare(Path(tmp), Path(given) if given else None, Path(calib) if calib else None, student)
        for threads in threads_list:
            timed = time_modes(setup, threads, n, warmup)
            med = {m: statistics.median(timed[m]["ms"]) for m in spec.modes}
            rows += [_row(m, threads, timed[m], labels[m]) for m in spec.modes]
            suffix = "" if threads == threads_list[-1] else f"_{threads}t"
            summary.update({f"{k}{suffix}": v for k, v in ratios(med).items()})
            summary.update({f"{m}_ms{suffix}": round(med[m], 2) for m in spec.modes})
            # minima too: on a shared machine they are closer to the unloaded cost than the medians
            mins = {m: min(timed[m]["ms"]) for m in spec.modes}
            summary.update({f"{k}_min{suffix}": v for k, v in ratios(mins).items()})
    img = bench_image()
    summary.update({
        "student": setup["student"],
        "threads": threads_list[-1],
        "imgsz": spec.imgsz,
        "bundle": setup["described"],
        "calibration": (calib or "scikit-image sample photos + mirrors (12)") if "int8" in spec.modes else None,
        "conf": round(float(setup["conf"]), 6),
        "max_det": setup["max_det"],
    })
    notes = (f"CPU; threads {', '.join(map(str, threads_list))} per runtime (headline keys: {threads_list[-1]}; "
             f"_1t: 1 thread); each runtime in its own process, {warmup} warm-up images, then {n} images per runtime "
             f"taken in turn (one at a time); 5 enrolled instances; image {img.shape[1]}×{img.shape[0]} → "
             f"{spec.imgsz}×{spec.imgsz}; stage times are medians "
             "(detector = forward + NMS, match = prototype matching + boxes back to the image).")
    return BenchResult("latency", rows, summary, notes=notes, targets=spec.targets)


if __name__ == "__main__":
    _worker(sys.argv[1:])
