"""What every student architecture shares: detections and pooled region features from one forward.

A student (`Student` for YOLO, `NanoDetStudent`) implements `forward(images) -> (P3/P4/P5 maps, raw head
output)`, `postprocess(raw, size, conf, iou, max_det)` and sets `strides`; `detect` and `region_features` follow.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mocha.models.pooling import pool_regions


class RegionDetector(nn.Module):
    """Base of the students: `detect` (eval mode, no grad) and `region_features` (f_A) over its maps."""

    strides: tuple[int, ...]

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

    def region_features(self, feats: list[Tensor], boxes: list[Tensor]) -> Tensor:
        """Pooled f_A (N, region_dim) for xyxy pixel boxes per image."""
        return pool_regions(feats, boxes, self.strides)
