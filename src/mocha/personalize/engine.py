"""Engines: the model behind a Personalizer (a PyTorch bundle, or its ONNX export in mocha.export).

Engine interface: `names`, `imgsz`, `digest`, `dim`, `bundle_path`, `backend`;
`detect(image_lb, conf, iou, max_det, speed=None) -> (dets (n,6) xyxy,conf,cls letterboxed px, embeddings (n,d))`
(fills `speed["inference"]` / `speed["embed"]` in ms when a dict is given), `embed(image_lb, boxes) -> (n,d)`,
`detect_plain(...) -> dets`. Images are letterboxed (S,S,3) uint8 RGB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mocha.core.config import Config, option
from mocha.data.images import check_imgsz
from mocha.errors import ConfigError
from mocha.resources import SHIPPED_BUNDLES

BACKENDS = ("torch", "onnx")


@dataclass(kw_only=True)
class EngineOptions(Config):
    """The model options every verb that runs a Personalizer shares (detect, track): which engine, on what."""

    backend: str = option("torch", help="torch | onnx", choices=BACKENDS)
    onnx: Path | None = option(None, help="ONNX export folder for backend=onnx (`mocha export`)", exists=True)
    bundle: Path | None = option(None, help="bundle folder, or a shipped bundle by name (coco)", exists=SHIPPED_BUNDLES,
                                 default_text="the one the gallery records; coco for a new gallery")
    device: str = option("", help="'' = CUDA if present else cpu")

    def validate(self) -> None:
        super().validate()
        if self.backend == "onnx" and self.onnx is None:
            raise ConfigError("backend=onnx needs onnx=<export folder> (`mocha export bundle=... format=onnx`)")

    @property
    def model(self) -> Path | None:
        """What `Personalizer.load` takes: the ONNX export or the bundle (None: the gallery's bundle)."""
        return self.onnx if self.backend == "onnx" else self.bundle


class TorchEngine:
    """A PyTorch bundle behind the engine interface (letterboxed uint8 images in, numpy out)."""

    backend = "torch"

    def __init__(self, bundle: Any, imgsz: int | None = None) -> None:
        self.bundle = bundle.eval()
        self.names: list[str] = list(bundle.student.names)
        self.imgsz = check_imgsz(int(imgsz or (bundle.config or {}).get("imgsz", 640)))
        self.digest: str = bundle.digest
        self.dim = int(bundle.dim)
        from mocha.models.bundle import personalize_defaults, shipped_name

        self.defaults = personalize_defaults(bundle.config)
        # a shipped bundle is recorded by name, so a gallery keeps working when mocha is installed elsewhere
        self.bundle_path = shipped_name(bundle.path) or (str(Path(bundle.path).resolve()) if bundle.path else None)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, imgsz: int | None = None) -> TorchEngine:
        import torch

        from mocha.models.bundle import load_bundle

        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(load_bundle(path, device=dev), imgsz)

    def _tensor(self, image_lb: np.ndarray) -> Any:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(image_lb)).permute(2, 0, 1)[None].float().div_(255.0)
        return x.to(self.bundle.device)

    def detect_plain(self, image_lb: np.ndarray, conf: float = 0.1, iou: float = 0.6, max_det: int = 300) -> np.ndarray:
        import torch

        with torch.no_grad():
            dets, _ = self.bundle.student.detect(self._tensor(image_lb), conf=conf, iou=iou, max_det=max_det)
        return dets[0].cpu().numpy()

    def detect(
        self, image_lb: np.ndarray, conf: float = 0.1, iou: float = 0.6, max_det: int = 300,
        speed: dict[str, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.no_grad():
            t0 = time.perf_counter()
            dets, feats = self.bundle.student.detect(self._tensor(image_lb), conf=conf, iou=iou, max_det=max_det)
            d = dets[0].cpu().numpy()  # .cpu() waits for the device, so the time is the real one
            t1 = time.perf_counter()
            e = self.bundle.embed_regions(feats, [dets[0][:, :4]]).cpu().numpy()
            t2 = time.perf_counter()
        if speed is not None:
            speed["inference"], speed["embed"] = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        return d, e

    def embed(self, image_lb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        import torch

        b = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4))
        return self.bundle.embed_boxes(self._tensor(image_lb), [b]).cpu().numpy()


def load_engine(path: str | Path, backend: str = "torch", device: str | None = None, threads: int | None = None,
                imgsz: int | None = None) -> Any:
    """A TorchEngine for a bundle folder, or an OnnxEngine for an export folder (`mocha export`)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    path = Path(path)
    if backend == "onnx":
        from mocha.export.onnx_runner import OnnxEngine

        if not (path / "export.json").exists() and (path / "bundle.json").exists():
            raise ConfigError(f"{path} is a bundle; backend='onnx' needs its ONNX export folder "
                              f"(`mocha export bundle={path} format=onnx`)")
        engine = OnnxEngine(path, threads=threads)
        if imgsz and int(imgsz) != engine.imgsz:
            raise ConfigError(f"{path}: exported for imgsz {engine.imgsz}, not {imgsz}; export again")
        return engine
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return TorchEngine.load(path, device=device, imgsz=imgsz)
