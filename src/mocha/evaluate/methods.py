"""Methods compared by the evaluator: how a box of an image becomes a feature vector.

- `student`: pooled f_A (448-d) of a detector without distillation;
- `mocha`: a distilled bundle's translated region embedding;
- `teacher`: the teacher's embedding of crops of the (detected) boxes — the heavy pipeline MOCHA replaces;
- `teacher-gt`: the teacher on ground-truth boxes (query boxes = GT boxes, GT coarse class, confidence 1).

A method embeds several box sets of one image with one forward (`features`), so support (GT) and query
(detected) features of an image cost one pass. `timed_support` / `timed_query` run the passes as a user
would (query: detect + embed, in one forward when the method's own detector proposes the boxes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mocha.errors import ConfigError
from mocha.evaluate.config import METHODS, MethodSpec


def crop_boxes(image: np.ndarray, boxes: np.ndarray, size: int = 224) -> list[np.ndarray]:
    """Crops of xyxy original-pixel boxes resized to size² (a degenerate detected box becomes a 1-pixel crop)."""
    from mocha.teacher.crops import crop_regions

    return crop_regions(image, boxes, size=size, strict=False)


class Method:
    """Base: `features(image, raw, letterbox, box_sets, labels)` → one (n_i, d) tensor per box set."""

    gt_queries = False
    detector: Any = None  # a Student whose detections this method can embed in the same forward

    def __init__(self, label: str) -> None:
        self.label = label

    def features(self, image: Tensor, raw: np.ndarray, lb: Any, box_sets: list[Tensor], labels: list[list[str]],
                 maps: list[Tensor] | None = None) -> list[Tensor]:
        """`maps`: this method's own detector's feature maps of `image` when the caller already ran it."""
        raise NotImplementedError

    def detect_and_embed(self, image: Tensor, conf: float, iou: float, max_det: int) -> tuple[Tensor, Tensor]:
        """One forward: detections (n,6) and their features (own detector only)."""
        raise NotImplementedError


class StudentMethod(Method):
    """Pooled P3/P4/P5 features (f_A) of a plain (undistilled) student."""

    def __init__(self, label: str, student: Any) -> None:
        super().__init__(label)
        self.detector = student

    @torch.no_grad()
    def features(self, image, raw, lb, box_sets, labels, maps=None):
        if maps is None:
            self.detector.eval()
            maps, _ = self.detector(image)
        return self._pool(maps, box_sets)

    def _pool(self, feats: list[Tensor], box_sets: list[Tensor]) -> list[Tensor]:
        boxes = torch.cat([b.reshape(-1, 4).float() for b in box_sets]).to(feats[0].device)
        out = self.detector.region_features(feats, [boxes]) if len(boxes) else feats[0].new_zeros(0, self.dim)
        return list(out.float().cpu().split([len(b) for b in box_sets]))

    @property
    def dim(self) -> int:
        return int(self.detector.region_dim)

    @torch.no_grad()
    def detect_and_embed(self, image, conf, iou, max_det):
        dets, feats = self.detector.detect(image, conf=conf, iou=iou, max_det=max_det)
        return dets[0], self._pool(feats, [dets[0][:, :4]])[0]


class BundleMethod(StudentMethod):
    """MOCHA: translator(f_A) of a distilled bundle."""

    def __init__(self, label: str, bundle: Any) -> None:
        super().__init__(label, bundle.student)
        self.bundle = bundle

    def _pool(self, feats, box_sets):
        boxes = torch.cat([b.reshape(-1, 4).float() for b in box_sets]).to(feats[0].device)
        if len(boxes) == 0:
            return [torch.zeros(0, self.dim) for _ in box_sets]
        out = self.bundle.embed_regions(feats, [boxes])
        return list(out.float().cpu().split([len(b) for b in box_sets]))

    @property
    def dim(self) -> int:
        return int(self.bundle.dim)


class TeacherMethod(Method):
    """The teacher on 224² crops of the boxes (original pixels), prompted with the box's coarse name."""

    def __init__(self, label: str, teacher: Any, gt: bool = False) -> None:
        super().__init__(label)
        self.teacher = teacher
        self.gt_queries = gt

    @torch.no_grad()
    def features(self, image, raw, lb, box_sets, labels, maps=None):
        sizes = [len(b) for b in box_sets]
        boxes = torch.cat([b.reshape(-1, 4).float().cpu() for b in box_sets]).numpy()
        names = [n for ls in labels for n in ls]
        if len(boxes) == 0:
            return [torch.zeros(0, int(self.teacher.dim)) for _ in box_sets]
        crops = crop_boxes(raw, lb.to_original(boxes))
        out = torch.as_tensor(self.teacher.embed(crops, names)).float().cpu()
        return list(out.split(sizes))


def student_method(spec: MethodSpec, box_source: Any, device: torch.device) -> Method:
    """`student`: its own weights, or the box-source detector's."""
    if spec.detector is None:
        if box_source is None:
            raise ConfigError("method 'student' needs detector=PATH (student weights)")
        return StudentMethod(spec.label, box_source)
    from mocha.models.detector import Student

    return StudentMethod(spec.label, Student.load(spec.detector).to(device).eval())


def bundle_method(spec: MethodSpec, box_source: Any, device: torch.device) -> Method:
    """`mocha`: a distilled bundle."""
    if spec.bundle is None:
        raise ConfigError(f"method {spec.label!r} needs a bundle (bundle=PATH)")
    from mocha.models.bundle import load_bundle

    return BundleMethod(spec.label, load_bundle(spec.bundle, device=device))


def teacher_method(spec: MethodSpec, box_source: Any, device: torch.device) -> Method:
    """`teacher` / `teacher-gt`: a teacher by registry name, or a Teacher object."""
    teacher = spec.teacher if spec.teacher is not None else "builtin"
    if isinstance(teacher, str | Path):
        from mocha.teacher.registry import create_teacher

        teacher = create_teacher(str(teacher), device=str(device))
    return TeacherMethod(spec.label, teacher, gt=spec.kind == "teacher-gt")


def build_method(spec: MethodSpec, box_source: Any, device: torch.device) -> Method:
    """Load what a MethodSpec names through the method registry (errors name the missing file/teacher)."""
    import importlib

    module, _, attr = METHODS.get(spec.kind).partition(":")
    return getattr(importlib.import_module(module), attr)(spec, box_source, device)
