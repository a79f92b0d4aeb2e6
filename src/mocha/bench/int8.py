"""`mocha bench int8`: the accuracy cost of the int8 export — 1-shot mAP50-95 and top-1 of MOCHA on the same
episodes with the bundle's ONNX export in fp32 and its int8 export (`mocha export int8=true`).

Each variant proposes its own boxes (the deployed pipeline: the int8 detector's boxes, then the fp32 embedder on
the int8 detector's maps) and is scored by `mocha.evaluate` (the same episodes, learner and metrics as
`mocha evaluate`). Inputs: $MOCHA_BENCH_BUNDLE (required: a random bundle's accuracy means nothing), the dataset
$MOCHA_BENCH_DATA (default: the bundle's training data, i.e. the demo world), calibration images
$MOCHA_BENCH_CALIB (default: the dataset's base validation images). Keys: `int8_map_loss` (fp32 − int8 1-shot
mAP50-95 points, target ≤ 1.0), `int8_top1_loss`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mocha.bench.core import BenchResult
from mocha.errors import ConfigError
from mocha.evaluate.methods import Method


class OnnxBoxSource:
    """An OnnxEngine behind the evaluator's detector interface (`names`, `detect(image) -> ([dets], maps)`)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.names = list(engine.names)

    def maps(self, image: Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
        pred, *maps = self.engine.det.run(None, {"images": image.detach().cpu().float().numpy()})
        return pred, maps

    def detect(self, image: Tensor, conf: float, iou: float, max_det: int) -> tuple[list[Tensor], list[np.ndarray]]:
        pred, maps = self.maps(image)
        return [torch.from_numpy(self.engine._nms(pred, conf, iou, max_det))], maps


class OnnxMethod(Method):
    """MOCHA through an export: its detector's maps, its embedder."""

    def __init__(self, label: str, source: OnnxBoxSource) -> None:
        super().__init__(label)
        self.detector = source

    def features(self, image, raw, lb, box_sets, labels, maps=None):
        if maps is None:
            _, maps = self.detector.maps(image)
        boxes = torch.cat([b.reshape(-1, 4).float() for b in box_sets]).numpy()
        emb = torch.from_numpy(np.asarray(self.detector.engine._embed(maps, boxes)))
        return list(emb.float().split([len(b) for b in box_sets]))


def _scores(ev: Any) -> dict[str, float]:
    """1-shot metrics (%) of the evaluator's one method, over its episodes."""
    from mocha.evaluate.episodic import summarize

    ev.extract()
    mf = ev.methods[0]
    rows = [ev.run_episode(mf, ep)[0] for ep in ev.episodes[1]]
    s = summarize(rows, mf)
    return {k: s[k] for k in ("map50_95", "map50", "accuracy")}


def _data_path(bundle: Path) -> Path:
    given = os.environ.get("MOCHA_BENCH_DATA")
    if given:
        return Path(given)
    from mocha.models.bundle import load_bundle

    rel = Path(str((load_bundle(bundle, device="cpu").config or {}).get("data", "")))
    for base in (Path.cwd(), *bundle.resolve().parents):  # the demo records it relative to its checkout
        if rel.name and (base / rel).exists():
            return base / rel
    raise ConfigError(f"{bundle}: cannot find its dataset {str(rel)!r}; set MOCHA_BENCH_DATA=<dataset yaml>")


def run(out_dir: Path, quick: bool = False) -> BenchResult:
    """Score the two variants on the same 1-shot episodes; see the module docstring."""
    from mocha.evaluate.episodic import EvalConfig, Evaluator
    from mocha.evaluate.methods import MethodSpec
    from mocha.export.onnx_export import export_onnx
    from mocha.export.onnx_runner import OnnxEngine

    given = os.environ.get("MOCHA_BENCH_BUNDLE")
    if not given:
        raise ConfigError("mocha bench int8 needs MOCHA_BENCH_BUNDLE=<trained bundle> (e.g. runs/demo/bundle)")
    bundle = Path(given)
    data = _data_path(bundle)
    calib = Path(os.environ.get("MOCHA_BENCH_CALIB") or data.parent / "base" / "val" / "images")
    episodes = 20 if quick else 100
    threads = max(1, min(2, os.cpu_count() or 1))
    torch.set_num_threads(threads)
    imgsz = _bundle_imgsz(bundle)
    cfg = EvalConfig(data=data, methods=[MethodSpec("mocha", bundle=bundle)], shots=[1], episodes=episodes,
                     detector=bundle, imgsz=imgsz, cache=False, project=Path(tempfile.gettempdir()), time_images=0)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mocha-int8-") as tmp:
        exports = {"onnx": export_onnx(bundle, Path(tmp) / "fp32", imgsz=imgsz),
                   "int8": export_onnx(bundle, Path(tmp) / "int8", imgsz=imgsz, int8=True, calib=calib)}
        for name, path in exports.items():
            ev = Evaluator(cfg)
            source = OnnxBoxSource(OnnxEngine(path, threads=threads))
            ev.box_source = source
            ev.methods[0].method = OnnxMethod("mocha", source)
            results[name] = _scores(ev)
    labels = {"onnx": "MOCHA (onnxruntime fp32)", "int8": "MOCHA (onnxruntime int8)"}
    rows = [{"variant": labels[k], **{m: round(v, 2) for m, v in r.items()}} for k, r in results.items()]
    summary = {
        "int8_map_loss": round(results["onnx"]["map50_95"] - results["int8"]["map50_95"], 2),
        "int8_top1_loss": round(results["onnx"]["accuracy"] - results["int8"]["accuracy"], 2),
        "fp32_map50_95": round(results["onnx"]["map50_95"], 2),
        "int8_map50_95": round(results["int8"]["map50_95"], 2),
        "fp32_top1": round(results["onnx"]["accuracy"], 2),
        "int8_top1": round(results["int8"]["accuracy"], 2),
        "bundle": given, "data": str(data), "calibration": str(calib), "imgsz": imgsz, "episodes": episodes,
    }
    notes = (f"1-shot, {episodes} episodes (seed 0) of {data.name}'s episode split, conditional learner; "
             "each variant's "
             "own detector proposes the query boxes (conf 0.1, NMS 0.6, ≤ 300); metrics in %.")
    return BenchResult("int8", rows, summary, targets={"int8_map_loss": "<= 1.0"}, notes=notes)


def _bundle_imgsz(bundle: Path) -> int:
    import json

    return int((json.loads((Path(bundle) / "bundle.json").read_text()).get("config") or {}).get("imgsz", 640))
