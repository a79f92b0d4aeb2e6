"""torch Dataset over ImageRecords: letterboxed RGB tensors with boxes in several frames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mocha.data.images import check_imgsz, letterbox, load_image, norm_cxcywh_to_xyxy
from mocha.data.records import ImageRecord


class DetectionDataset(torch.utils.data.Dataset):
    """Item: image (3,S,S) float in [0,1]; boxes xyxy in letterboxed pixels; normalized boxes; ids; mapping."""

    def __init__(self, records: Sequence[ImageRecord], imgsz: int = 640) -> None:
        self.imgsz = check_imgsz(imgsz)
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Original RGB image and the item (for callers that also need the raw pixels, e.g. crops)."""
        rec = self.records[index]
        img = load_image(rec.image)
        lb_img, lb = letterbox(img, self.imgsz)
        h, w = img.shape[:2]
        orig_xyxy = norm_cxcywh_to_xyxy(rec.boxes, w, h)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(lb_img.transpose(2, 0, 1))).float().div_(255.0),
            "boxes": torch.from_numpy(lb.to_letterbox(orig_xyxy)),
            "boxes_orig": torch.from_numpy(orig_xyxy),
            "boxes_norm": torch.from_numpy(rec.boxes.copy()),
            "coarse": torch.from_numpy(rec.coarse.copy()),
            "instance": torch.from_numpy(rec.instance.copy()),
            "letterbox": lb,
            "path": str(rec.image),
            "index": index,
        }
        return img, item

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.load(index)[1]


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images; keep per-image lists for everything of variable length."""
    out: dict[str, Any] = {"images": torch.stack([s["image"] for s in samples])}
    for key in ("boxes", "boxes_orig", "boxes_norm", "coarse", "instance", "letterbox", "path", "index"):
        out[key] = [s[key] for s in samples]
    return out


def yolo_targets(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """ultralytics loss targets: batch_idx, cls (n,1), bboxes (n,4) normalized xywh in the letterboxed frame."""
    size = batch["images"].shape[-1]
    idx, cls, boxes = [], [], []
    for i, (b, c) in enumerate(zip(batch["boxes"], batch["coarse"], strict=True)):
        idx.append(torch.full((len(b),), float(i)))
        cls.append(c.float().reshape(-1, 1))
        xywh = torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
        boxes.append(xywh / size)
    return {"batch_idx": torch.cat(idx), "cls": torch.cat(cls), "bboxes": torch.cat(boxes)}
