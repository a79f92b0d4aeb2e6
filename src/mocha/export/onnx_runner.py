"""Run an ONNX export with onnxruntime behind the same engine interface as the PyTorch bundle.

Same engine interface as the PyTorch bundle (mocha.personalize.engine): `names`, `imgsz`, `digest`, `dim`,
`detect(image_lb, conf, iou, max_det, speed=None)`, `embed(image_lb, boxes)`, `detect_plain(...)`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mocha.export.onnx_export import read_export_meta


def session_options(threads: int | None = None) -> Any:
    """Explicit thread count and no spinning: torch and onnxruntime share the cores politely."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or _default_threads())
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


def _default_threads() -> int:
    try:
        import torch

        return max(1, torch.get_num_threads())
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return max(1, min(4, os.cpu_count() or 1))


class OnnxEngine:
    """Detector + embedder ONNX graphs with NMS in between (ultralytics, as for the PyTorch student)."""

    backend = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.meta = read_export_meta(self.path, verify=True)
        so = session_options(threads)
        providers = ["CPUExecutionProvider"]
        self.det = ort.InferenceSession(str(self.path / "detector.onnx"), so, providers=providers)
        self.emb = ort.InferenceSession(str(self.path / "embedder.onnx"), so, providers=providers)
        self.maps = [i.name for i in self.emb.get_inputs() if i.name != "boxes"]  # p3, p4, p5 (p2 first: stride4)
        self.names: list[str] = list(self.meta["names"])
        self.imgsz = int(self.meta["imgsz"])
        self.digest: str = self.meta["bundle_digest"]
        self.dim = int(self.meta["dim"])
        from mocha.models.bundle import personalize_defaults

        self.defaults = personalize_defaults({"personalize": self.meta.get("personalize")})
        self.bundle_path: str | None = self.meta.get("bundle_path")
        self.int8 = bool(self.meta.get("int8"))  # the detector graph is quantized (mocha.export.quantize)

    def _input(self, image_lb: np.ndarray) -> np.ndarray:
        if image_lb.shape != (self.imgsz, self.imgsz, 3):
            raise ValueError(f"ONNX export expects {self.imgsz}×{self.imgsz} letterboxed images, got {image_lb.shape}")
        return np.ascontiguousarray(image_lb.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0

    def forward(self, image_lb: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Raw decoded predictions (1, 4+nc, A) and the pooled feature maps."""
        pred, *maps = self.det.run(None, {"images": self._input(image_lb)})
        return pred, maps

    def _nms(self, pred: np.ndarray, conf: float, iou: float, max_det: int) -> np.ndarray:
        import torch
        from ultralytics.utils.nms import non_max_suppression

        return non_max_suppression(torch.from_numpy(pred), conf_thres=conf, iou_thres=iou, max_det=max_det)[0].numpy()

    def _embed(self, feats: list[np.ndarray], boxes: np.ndarray) -> np.ndarray:
        boxes = np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.emb.run(None, {**dict(zip(self.maps, feats, strict=True)), "boxes": boxes})[0]

    def detect_plain(self, image_lb: np.ndarray, conf: float = 0.1, iou: float = 0.6, max_det: int = 300) -> np.ndarray:
        pred, _ = self.forward(image_lb)
        return self._nms(pred, conf, iou, max_det)

    def detect(
        self, image_lb: np.ndarray, conf: float = 0.1, iou: float = 0.6, max_det: int = 300,
        speed: dict[str, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        pred, feats = self.forward(image_lb)
        dets = self._nms(pred, conf, iou, max_det)
        t1 = time.perf_counter()
        embs = self._embed(feats, dets[:, :4])
        if speed is not None:
            speed["inference"], speed["embed"] = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
        return dets, embs

    def embed(self, image_lb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        _, feats = self.forward(image_lb)
        return self._embed(feats, boxes)
