"""Time the ONNX embedder's two ways of taking box means: summed-area tables (float64 cumsums, the export until
2026-12-07) against one matrix product per level (`mocha.export.onnx_export.pool_one_image`, the export since).

    python scripts/time_embedder_pooling.py <bundle> <imgsz> [boxes ...]

Exports the bundle's embedder both ways into a temporary folder, feeds both the same maps (the student's, on a
random image) and the same random boxes, times them in turn in one process (median of 35 runs after 5 warm-up
runs) with 1 and 2 onnxruntime threads, and prints a markdown table plus the largest difference of the outputs.
A measuring tool for docs/deploy.md, not used by the package or the tests.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import mocha.export.onnx_export as oe
from mocha.export.onnx_runner import session_options
from mocha.models.bundle import load_bundle, resolve_bundle


def pool_tables(feat: torch.Tensor, boxes: torch.Tensor, stride: float) -> torch.Tensor:
    """The previous export's pooling: channel-last float64 summed-area table, four lookups a box."""
    _, c, h, w = feat.shape
    table = torch.nn.functional.pad(feat[0].permute(1, 2, 0).double().cumsum(0).cumsum(1), (0, 0, 1, 0, 1, 0))
    flat = table.reshape((h + 1) * (w + 1), c)
    x1, y1, x2, y2 = oe.box_cells(boxes, stride, h, w)

    def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return flat[y * (w + 1) + x]

    sums = at(y2, x2) - at(y1, x2) - at(y2, x1) + at(y1, x1)
    return (sums / ((y2 - y1) * (x2 - x1)).unsqueeze(1).double()).to(feat.dtype)


def main(bundle_arg: str, imgsz: int, counts: list[int]) -> None:
    warnings.simplefilter("ignore")  # tracer warnings
    torch.manual_seed(0)
    bundle = load_bundle(resolve_bundle(bundle_arg), device="cpu")
    student = bundle.student.eval()
    with torch.no_grad():
        feats, _ = student(torch.rand(1, 3, imgsz, imgsz))
    example = torch.tensor([[0.0, 0.0, imgsz, imgsz], [1.0, 2.0, 9.0, 7.0]])
    ways = {"summed-area tables": pool_tables, "matrix product": oe.pool_one_image}
    rng = np.random.default_rng(0)
    maps = {k: f.numpy() for k, f in zip(("p3", "p4", "p5"), feats, strict=True)}
    print("| boxes | threads | " + " | ".join(ways) + " | max abs difference |")
    print("|---" * (len(ways) + 3) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for i, (name, fn) in enumerate(ways.items()):
            oe.pool_one_image = fn  # EmbedderGraph looks the function up at trace time
            paths[name] = Path(tmp) / f"{i}.onnx"
            torch.onnx.export(oe.EmbedderGraph(bundle.translator.eval(), student.strides, 1), (*feats, example),
                              str(paths[name]), dynamo=False, opset_version=17,
                              input_names=["p3", "p4", "p5", "boxes"], output_names=["e"],
                              dynamic_axes={"boxes": {0: "n"}, "e": {0: "n"}})
        for n in counts:
            xy = rng.uniform(0, imgsz * 0.7, (n, 2))
            boxes = np.concatenate([xy, np.minimum(xy + rng.uniform(8, imgsz / 2, (n, 2)), imgsz)], 1)
            feed = {**maps, "boxes": boxes.astype(np.float32)}
            for threads in (2, 1):
                sessions = {k: ort.InferenceSession(str(p), session_options(threads),
                                                    providers=["CPUExecutionProvider"]) for k, p in paths.items()}
                times: dict[str, list[float]] = {k: [] for k in sessions}
                outs = {}
                for _ in range(40):
                    for k, s in sessions.items():
                        t = time.perf_counter()
                        outs[k] = s.run(None, feed)[0]
                        times[k].append(time.perf_counter() - t)
                med = [f"{np.median(v[5:]) * 1e3:.2f}" for v in times.values()]
                diff = np.abs(outs["summed-area tables"] - outs["matrix product"]).max()
                print(f"| {n} | {threads} | " + " | ".join(med) + f" | {diff:.1e} |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), [int(a) for a in sys.argv[3:]] or [15, 100, 300])
