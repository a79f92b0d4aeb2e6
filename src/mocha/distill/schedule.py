"""The SPEC distillation schedule: epoch kinds, parameter groups, warm-up + cosine learning rate."""

from __future__ import annotations

import math

import torch
from torch import nn

from mocha.models.detector import Student


def is_detection_epoch(epoch: int, det_every: int) -> bool:
    """Epochs are 1-based; every `det_every`-th (4, 8, ...) trains the whole student. 0 disables them."""
    return det_every > 0 and epoch % det_every == 0


def warmup_iters(total: int, warmup: int, max_frac: float) -> int:
    """SPEC's 1000 warm-up iterations, capped to a fraction of a short run so it still reaches the peak lr."""
    return max(0, min(warmup, int(round(max_frac * total))))


def lr_factor(it: int, total: int, warmup: int, start: float = 1e-6) -> float:
    """Multiplier of the base lr at iteration `it` (0-based): linear warm-up from `start`×, times cosine to 0."""
    cos = 0.5 * (1.0 + math.cos(math.pi * min(it, total) / max(total, 1)))
    if it < warmup:
        return (start + (1.0 - start) * it / warmup) * cos
    return cos


def param_groups(
    student: Student,
    translator: nn.Module,
    lr_translator: float,
    wd_translator: float,
    lr_student: float,
    wd_student: float,
    wd_head: float,
) -> list[dict]:
    """Three groups: translator; student detection head (no weight decay by default); rest of the student."""
    head = student.head_parameters()
    head_ids = {id(p) for p in head}
    rest = [p for p in student.parameters() if id(p) not in head_ids]
    return [
        {
            "name": "translator",
            "params": list(translator.parameters()),
            "lr": lr_translator,
            "weight_decay": wd_translator,
        },
        {"name": "student_head", "params": head, "lr": lr_student, "weight_decay": wd_head},
        {"name": "student", "params": rest, "lr": lr_student, "weight_decay": wd_student},
    ]


def make_optimizer(groups: list[dict], betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam over the groups; each group remembers its base lr in `initial_lr` for the per-iteration schedule."""
    for g in groups:
        g["initial_lr"] = g["lr"]
    return torch.optim.Adam(groups, betas=betas)


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = g["initial_lr"] * factor
