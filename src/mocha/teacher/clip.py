"""CLIP image teacher: the L2-normalized CLIP image embedding z_i of each crop (SPEC "Teacher embeddings")."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from mocha.core.device import choose_device
from mocha.teacher.base import Teacher, check_batch
from mocha.teacher.hf import (
    check_positive,
    dtype_name,
    load_pretrained,
    model_label,
    model_revision,
    pick_dtype,
    reject_unknown,
    resolve_model,
)


def _image_size(processor: Any) -> Any:
    """The processor's final input size (crop size when it centre-crops, else its resize size)."""
    size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = size or getattr(processor, "size", None)
    if size is None or isinstance(size, (int, float)):
        return size
    return {k: int(v) for k, v in dict(size).items() if v is not None}  # SizeDict / dict


class ClipTeacher(Teacher):
    """`embed` → (n, projection_dim) unit-norm CLIP image embeddings; the labels are not used."""

    name = "clip"

    def __init__(self, model: Any, processor: Any, model_id: str, revision: str, dtype: torch.dtype,
                 device: torch.device, batch_size: int = 32) -> None:
        self.model, self.processor = model.eval(), processor
        self.model_id, self.revision, self.dtype, self.device = model_id, revision, dtype, device
        self.dim = int(model.config.projection_dim)
        self.batch_size = check_positive(batch_size, "--batch-size")

    @classmethod
    def load(cls, model: str = "openai/clip-vit-base-patch32", device: str | torch.device | None = None,
             dtype: str | torch.dtype | None = None, batch_size: int = 32, **unknown: Any) -> ClipTeacher:
        """Load a CLIP checkpoint from a local folder or the local Hugging Face cache (never downloads)."""
        reject_unknown(unknown, "clip")
        from transformers import CLIPImageProcessor, CLIPModel

        folder = resolve_model(model, "--clip-model")
        dev = choose_device(device)
        dt = pick_dtype(dtype, dev)
        net = load_pretrained(CLIPModel, folder, "--clip-model", dtype=dt).to(dev)
        processor = load_pretrained(CLIPImageProcessor, folder, "--clip-model")
        return cls(net, processor, model_label(model, folder), model_revision(folder), dt, dev, batch_size)

    def settings(self) -> dict[str, Any]:
        return {"model": self.model_id, "revision": self.revision, "dtype": dtype_name(self.dtype),
                "image_size": _image_size(self.processor), "normalize": "l2"}

    @torch.inference_mode()
    def embed(self, crops: list[np.ndarray], labels: list[str]) -> Tensor:
        check_batch(crops, labels)
        out = [torch.zeros(0, self.dim)]
        for start in range(0, len(crops), self.batch_size):
            batch = crops[start:start + self.batch_size]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            feats = self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
            if not isinstance(feats, Tensor):  # some versions return a model output holding the pooled embedding
                feats = feats.pooler_output
            out.append(torch.nn.functional.normalize(feats.float(), dim=1).cpu())
        return torch.cat(out)

    def to(self, device: str | torch.device) -> ClipTeacher:
        self.device = choose_device(device)
        self.model.to(self.device)
        return self
