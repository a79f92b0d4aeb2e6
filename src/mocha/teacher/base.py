"""The teacher interface, the SPEC merge rule and the registry `create_teacher(name, **options)`.

A teacher maps region crops (224×224 RGB uint8 arrays, see `mocha.teacher.crops`) and their coarse
label names to one float32 vector per region. `settings()` is everything that changes its output
(model id and revision, prompt, decoding, preprocessing); the embedding store keys entries by
`teacher_key(teacher)` so that vectors of different teachers or settings are never mixed.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mocha.errors import ConfigError


class Teacher(ABC):
    """One vector per region: `embed(crops, labels) -> (n, dim) float32` on the CPU."""

    name: str = ""
    dim: int = 0
    batch_size: int = 16  # regions per forward in the extraction pipeline

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """JSON-safe description of everything that changes the output."""

    @abstractmethod
    def embed(self, crops: list[np.ndarray], labels: list[str]) -> Tensor:
        """(n, dim) float32 CPU tensor for n crops (HxWx3 uint8) and their coarse label names."""

    def to(self, device: str | torch.device) -> Teacher:
        """Move the model(s) to `device` (default: no-op for CPU-only teachers)."""
        return self


def teacher_key(teacher: Teacher) -> str:
    """Short stable digest of (name, dim, settings): the store refuses entries of another key."""
    doc = json.dumps({"name": teacher.name, "dim": int(teacher.dim), "settings": teacher.settings()}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def check_batch(crops: list[np.ndarray], labels: list[str]) -> None:
    """Crops and labels must pair up and be RGB uint8 images."""
    if len(crops) != len(labels):
        raise ConfigError(f"teacher.embed: {len(crops)} crops but {len(labels)} labels")
    for i, c in enumerate(crops):
        if c.ndim != 3 or c.shape[2] != 3 or c.dtype != np.uint8 or c.shape[0] == 0 or c.shape[1] == 0:
            raise ConfigError(f"teacher.embed: crop {i} must be a non-empty HxWx3 uint8 array, got {c.dtype} {c.shape}")


def merge_text_image(h: Tensor, z: Tensor) -> Tensor:
    """SPEC merge `u = [h ; z·‖h‖₂]` with z L2-normalized, so both halves have equal norm."""
    z = torch.nn.functional.normalize(z.float(), dim=1)
    return torch.cat([h.float(), z * h.float().norm(dim=1, keepdim=True)], dim=1)


class MergedTeacher(Teacher):
    """A text-side teacher h (e.g. LLaVA) merged with an image-side teacher z (e.g. CLIP) by the SPEC rule."""

    def __init__(self, name: str, text: Teacher, image: Teacher) -> None:
        self.name = name
        self.text, self.image = text, image
        self.dim = int(text.dim) + int(image.dim)
        self.batch_size = min(text.batch_size, image.batch_size)

    def settings(self) -> dict[str, Any]:
        return {"text": {"name": self.text.name, **self.text.settings()},
                "image": {"name": self.image.name, **self.image.settings()}, "merge": "[h ; z*|h|]"}

    def embed(self, crops: list[np.ndarray], labels: list[str]) -> Tensor:
        check_batch(crops, labels)
        if not crops:
            return torch.zeros(0, self.dim)
        return merge_text_image(self.text.embed(crops, labels), self.image.embed(crops, labels))

    def to(self, device: str | torch.device) -> Teacher:
        self.text.to(device)
        self.image.to(device)
        return self
