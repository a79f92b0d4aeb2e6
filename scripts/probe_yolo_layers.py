"""Which of a YOLO student's maps still tell instances apart? The within-class nearest-prototype probe of `mocha demo`
(`mocha.data.world.probe.nearest_prototype_accuracy`) on the ground-truth boxes of a split, with the box mean of
each 4-D map of the ultralytics DetectionModel as the representation: the input pixels, every layer but the Detect
head, and the student's region features (the P3/P4/P5 maps feeding the head, as the demo pools them). The YOLO
counterpart of scripts/probe_nanodet_layers.py; a STUDENT is a `.safetensors` checkpoint or a bundle folder.

    python scripts/probe_yolo_layers.py runs/demo/stages/world-3b14bf5a6f7bd750/world/mochaworld.yaml \
        src/mocha/assets/students/student-small-s0-256px-150ep.safetensors runs/demo/bundle
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mocha.data.world.probe import nearest_prototype_accuracy
from mocha.demo.probe import _region_features, probe_split
from mocha.models.detector import Student
from mocha.models.pooling import pool_regions


def load_student(path: str) -> Student:
    """A student checkpoint, or the student of a bundle folder (pooled as the bundle was trained)."""
    if Path(path).is_dir():
        from mocha.models.bundle import load_bundle

        student = load_bundle(path).student
    else:
        student = Student.load(path)
    if not isinstance(student, Student):
        raise SystemExit(f"{path}: not a YOLO student")
    return student.eval()


class EveryMap(torch.nn.Module):
    """The DetectionModel run layer by layer: the input, every 4-D layer output before the Detect head, and the
    maps feeding the head (last)."""

    def __init__(self, student: Student) -> None:
        super().__init__()
        self.student = student
        self.kept: list[int] = []  # indices of the layers whose outputs are 4-D maps (all of them in YOLOv8)

    def forward(self, x: Tensor) -> tuple[list[Tensor], None]:
        layers, y, h = list(self.student.model.model), [], x
        for m in layers[:-1]:
            if m.f != -1:
                h = y[m.f] if isinstance(m.f, int) else [h if j == -1 else y[j] for j in m.f]
            h = m(h)
            y.append(h)  # every output kept (a superset of model.save)
        self.kept = [i for i, t in enumerate(y) if isinstance(t, Tensor) and t.dim() == 4]
        return [x, *(y[i] for i in self.kept), *(y[j] for j in layers[-1].f)], None


def probe(student_path: str, data: str, split: str, imgsz: int, episodes: int) -> None:
    start = time.perf_counter()
    torch.manual_seed(0)
    student = load_student(student_path)
    every_map = EveryMap(student)
    layers = list(student.model.model)
    with torch.inference_mode():
        maps, _ = every_map(torch.zeros(1, 3, imgsz, imgsz))
    n_single = 1 + len(every_map.kept)  # the input and each kept layer; then the maps feeding the head
    strides = [imgsz // f.shape[-1] for f in maps[:n_single]]
    rows = [("-", "input pixels", 1, 3)] + [(str(i), type(layers[i]).__name__, s, f.shape[1]) for i, s, f in
                                            zip(every_map.kept, strides[1:], maps[1:n_single], strict=True)]

    def embed(feats: list[Tensor], bxs: list[Tensor]) -> Tensor:
        single = [pool_regions([f], bxs, [s]) for f, s in zip(feats[:n_single], strides, strict=True)]
        return torch.cat([*single, student.region_features(feats[n_single:], bxs)], 1)

    _, images, boxes, inst, coarse = probe_split(data, split)
    every = _region_features(every_map, embed, images, boxes, imgsz)
    edges = np.cumsum([0] + [c for *_, c in rows])
    head_f = "+".join(str(j) for j in layers[-1].f)
    region = ("region", f"P3/P4/P5 = {head_f} (the demo's f_A)", "/".join(map(str, student.strides)),
              every.shape[1] - int(edges[-1]))
    parts = [every[:, edges[k]:edges[k + 1]] for k in range(len(rows))] + [every[:, int(edges[-1]):]]
    chance = 100 * np.mean([1 / len(np.unique(inst[coarse == c])) for c in np.unique(coarse)])
    print(f"\n### {student_path} on {data} ({split}, {len(inst)} boxes, {len(np.unique(inst))} instances, "
          f"imgsz {imgsz}, chance {chance:.1f} %)\n")
    print("| layer | module | stride | channels | 1-shot | 5-shot |")
    print("|---|---|---|---|---|---|")
    for (layer, kind, stride, ch), x in zip([*rows, region], parts, strict=True):
        acc = [100 * nearest_prototype_accuracy(x, inst, coarse, k, episodes, 0) for k in (1, 5)]
        print(f"| {layer} | {kind} | {stride} | {ch} | {acc[0]:.1f} | {acc[1]:.1f} |")
    print(f"\n({time.perf_counter() - start:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="dataset YAML (e.g. a mochaworld.yaml)")
    ap.add_argument("students", nargs="+", help="student .safetensors or bundle folder")
    ap.add_argument("--split", default="personal")
    ap.add_argument("--imgsz", type=int, default=256, help="letterbox size (the demo students are 256 px)")
    ap.add_argument("--episodes", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for path in args.students:
        probe(path, args.data, args.split, args.imgsz, args.episodes)


if __name__ == "__main__":
    main()
