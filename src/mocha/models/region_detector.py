"""What every student architecture shares: detections and pooled region features from one forward.

A student (`Student` for YOLO, `NanoDetStudent`) implements `forward(images) -> (P3/P4/P5 maps, raw head
output)`, `postprocess(raw, size, conf, iou, max_det)`, `head_parameters()`, `dense_outputs(raw)` and sets
`strides`; `detect` and `region_features` follow. `has_detection_loss` says whether it can train on labelled boxes
(`detection_loss`); stage 2 otherwise keeps its detection by distilling its own frozen `dense_outputs`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mocha.models.pooling import pool_regions, region_tokens


class RegionDetector(nn.Module):
    """Base of the students: `detect` (eval mode, no grad) and `region_features` (f_A) over its maps."""

    strides: tuple[int, ...]
    feature_dims: tuple[int, ...]  # channels of the maps region features pool, per level
    pool_bins: int = 1  # region features over a pool_bins × pool_bins grid as well (set from a bundle's config)
    has_detection_loss: bool = False
    shipped_as: tuple[str, str] | None = None  # (shipped name, weights digest) when loaded from a shipped file

    def head_parameters(self) -> list[nn.Parameter]:
        """The detection head's parameters (stage 2 gives them their own weight decay)."""
        raise NotImplementedError

    def weights_state(self) -> dict[str, Tensor]:
        """The tensors a bundle's digest covers (the model's own state dict)."""
        return self.state_dict()

    def export_predictions(self, raw: Any, size: tuple[int, int]) -> Tensor:
        """Eval-mode head output → (B, 4 + C, N) xywh boxes + class scores, ultralytics' layout, which the ONNX
        detector graph returns and `ultralytics.utils.nms.non_max_suppression` reads."""
        raise NotImplementedError

    def weights_digest(self) -> str:
        """sha256 over the names, dtypes, shapes and bytes of `weights_state()`."""
        from mocha.models.digest import tensors_digest

        return tensors_digest([self.weights_state()])

    def dense_outputs(self, raw: Any) -> tuple[Tensor, Tensor]:
        """Per-cell head outputs over all levels: class logits (B, N, C) and box-distribution logits (B, N, 4·K)."""
        raise NotImplementedError

    def postprocess(self, raw: Any, size: tuple[int, int], conf: float = 0.1, iou: float = 0.6,
                    max_det: int = 300) -> list[Tensor]:
        """Head output → per image (n,6) xyxy, conf, cls in letterboxed pixels (`size` = input H, W)."""
        raise NotImplementedError

    @torch.no_grad()
    def detect(
        self, images: Tensor, conf: float = 0.1, iou: float = 0.6, max_det: int = 300
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Detections per image and the feature maps they came from (eval mode, no grad)."""
        was_training = self.training
        self.eval()
        feats, raw = self(images)
        dets = self.postprocess(raw, tuple(images.shape[-2:]), conf=conf, iou=iou, max_det=max_det)
        self.train(was_training)
        return dets, feats

    @property
    def token_dim(self) -> int:
        """Width of one region token: the summed channels of the pooled maps (448 for YOLOv8n, 384 NanoDet-g)."""
        return int(sum(self.feature_dims))

    @property
    def region_dim(self) -> int:
        """Width of f_A: token_dim × tokens per region (1 token unless pool_bins > 1)."""
        return self.token_dim * region_tokens(self.pool_bins)

    def region_features(self, feats: list[Tensor], boxes: list[Tensor]) -> Tensor:
        """Pooled f_A (N, region_dim) for xyxy pixel boxes per image."""
        return pool_regions(feats, boxes, self.strides, self.pool_bins)
