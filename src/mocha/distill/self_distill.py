"""Detection-preserving stage 2 for a student whose training loss we do not have (NanoDet-g, a COCO yolov8n.pt).

L_det is replaced by distilling the student's own outputs, frozen at the start of stage 2: per cell, the class
scores (binary cross-entropy against the frozen sigmoid scores) and the box distributions (KL divergence per side
against the frozen softmax over bins, weighted by how confident the frozen model is that the cell holds an object,
so the thousands of background cells do not swamp the few that carry boxes). Features move under L_dist / L_emb
while the detections stay where they were; `detection_drift` measures how far they moved.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mocha.errors import ConfigError


def resolve_det_loss(choice: str, student: Any) -> str:
    """`auto` → `none` for a student whose detector is frozen (an embedding branch), `labels` when it has a
    supervised detection loss (YOLO), else `self`."""
    frozen = getattr(student, "detector_frozen", False)
    if frozen and choice in ("labels", "self"):
        raise ConfigError(f"det_loss={choice}: the student's detector is frozen (branch=), so there is no detection "
                          "to train or keep; leave det_loss=auto")
    if choice == "auto":
        return "none" if frozen else "labels" if student.has_detection_loss else "self"
    if choice == "labels" and not student.has_detection_loss:
        raise ConfigError(f"det_loss=labels: {type(student).__name__} has no supervised detection loss here; "
                          "use det_loss=self (distil its own frozen outputs) or det_every=0 (translator only)")
    return choice


class OutputDistillation:
    """Frozen copy of the student at construction; `loss(images, raw)` compares the live outputs with it."""

    def __init__(self, student: Any) -> None:
        self.frozen = copy.deepcopy(student).eval()
        for p in self.frozen.parameters():
            p.requires_grad_(False)

    def to(self, device: torch.device | str) -> OutputDistillation:
        self.frozen.to(device)
        return self

    def loss(self, images: Tensor, raw: Any) -> Tensor:
        """Sum over the batch of the per-image loss (the convention of ultralytics' L_det the trainer divides)."""
        cls_s, box_s = self.frozen.dense_outputs(raw)  # the same architecture's reader, on the live output
        with torch.no_grad():
            _, raw_t = self.frozen(images)
            cls_t, box_t = self.frozen.dense_outputs(raw_t)
        return output_loss(cls_s, box_s, cls_t, box_t) * images.shape[0]


def output_loss(cls_s: Tensor, box_s: Tensor, cls_t: Tensor, box_t: Tensor) -> Tensor:
    """Mean per-image loss: BCE(class logits → frozen scores) over all cells and classes + score-weighted KL of the
    per-side box distributions. Zero exactly when the live outputs equal the frozen ones."""
    p_t = cls_t.sigmoid()
    bce = F.binary_cross_entropy_with_logits(cls_s, p_t, reduction="none").sum(-1)
    ent = F.binary_cross_entropy_with_logits(cls_t, p_t, reduction="none").sum(-1)  # makes the minimum exactly 0
    l_cls = (bce - ent).sum(1).mean() / max(cls_s.shape[-1], 1)
    sides = 4
    k = box_s.shape[-1] // sides  # bins per side
    log_q = box_s.reshape(*box_s.shape[:2], sides, k).log_softmax(-1)
    log_p = box_t.reshape(*box_t.shape[:2], sides, k).log_softmax(-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean(-1)  # (B, N)
    w = p_t.max(-1).values
    l_box = (kl * w).sum(1).div(w.sum(1).clamp_min(1e-6)).mean()
    return l_cls + l_box


@torch.no_grad()
def detections(model: Any, images: list[Tensor], conf: float = 0.35) -> list[Tensor]:
    """Per letterboxed image, the model's (n, 6) detections (xyxy, conf, cls) at confidence ≥ `conf`."""
    return [model.detect(img.unsqueeze(0), conf=conf)[0][0] for img in images]


def detection_drift(original: Any, tuned: Any, images: list[Tensor], conf: float = 0.35,
                    iou: float = 0.5) -> dict[str, float]:
    """How far a fine-tuned student's detections moved from the original's on the same letterboxed images.

    Each original detection (conf ≥ `conf`) is matched greedily to the best-IoU tuned detection; reported are the
    fraction of originals found again at IoU ≥ `iou` with the same class (`recall`), the fraction of tuned
    detections that match an original (`precision`), their mean IoU and mean |Δconf| over matches.
    """
    return drift_between(detections(original, images, conf), detections(tuned, images, conf), iou)


def drift_between(originals: list[Tensor], tuned: list[Tensor], iou: float = 0.5) -> dict[str, float]:
    """`detection_drift` on detections already computed (per image, the same order in both lists)."""
    from torchvision.ops import box_iou

    found = total_o = total_t = 0
    ious: list[float] = []
    dconf: list[float] = []
    for d_o, d_t in zip(originals, tuned, strict=True):
        total_o += len(d_o)
        total_t += len(d_t)
        if not len(d_o) or not len(d_t):
            continue
        m = box_iou(d_o[:, :4], d_t[:, :4])
        m[d_o[:, 5:6] != d_t[:, 5][None]] = 0.0
        used: set[int] = set()
        for i in range(len(d_o)):
            row = m[i].clone()
            if used:
                row[list(used)] = 0.0
            j = int(row.argmax())
            if float(row[j]) >= iou:
                used.add(j)
                found += 1
                ious.append(float(row[j]))
                dconf.append(abs(float(d_o[i, 4] - d_t[j, 4])))
    return {
        "images": len(originals),
        "original_detections": total_o,
        "tuned_detections": total_t,
        "recall": found / total_o if total_o else 1.0,
        "precision": found / total_t if total_t else 1.0,
        "mean_iou": sum(ious) / len(ious) if ious else 0.0,
        "mean_abs_dconf": sum(dconf) / len(dconf) if dconf else 0.0,
    }
