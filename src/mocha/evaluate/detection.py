"""How well a student still detects: coarse-class mAP of its boxes on a split's ground truth.

Stage 2 moves the student's features, and its detection head sees those features: a strong pull on them can
cost detection quality, which an evaluation that takes every method's boxes from the stage-1 student does not
show. `coarse_detection_map` measures it directly (ultralytics' matching and `ap_per_class`, the same code as
the episodic metrics, with coarse classes for labels), so a distilled bundle can be compared with the student
it came from on the same images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mocha.core.metrics import ImagePreds, ImageTruth, paper_map


@torch.inference_mode()
def coarse_detection_map(detector: str | Path, data: str | Path, split: str = "personal", imgsz: int = 640,
                         conf: float = 0.001, iou: float = 0.6, batch: int = 16,
                         device: str | torch.device = "cpu") -> dict[str, float]:
    """{"map50_95", "map50"} (%) of `detector` (student weights or a bundle folder) against the coarse
    ground truth of `split`, over the coarse classes present there; detector classes are mapped to the
    dataset's by name (as the episodic evaluation does)."""
    from mocha.data.dataset import load_dataset
    from mocha.data.images import letterbox, load_image, norm_cxcywh_to_xyxy
    from mocha.data.records import read_split
    from mocha.evaluate.episodic import coarse_map, load_box_source

    spec = load_dataset(data)
    records = read_split(spec, split)
    model = load_box_source(detector, torch.device(device))
    cmap = coarse_map(list(model.names), spec, records)
    preds: list[ImagePreds] = []
    truths: list[ImageTruth] = []
    for i in range(0, len(records), batch):
        tensors = []
        for r in records[i : i + batch]:
            img = load_image(r.image)
            lb_img, lb = letterbox(img, imgsz)
            tensors.append(torch.from_numpy(lb_img).permute(2, 0, 1).float() / 255.0)
            gt = lb.to_letterbox(norm_cxcywh_to_xyxy(r.boxes, img.shape[1], img.shape[0])) if len(r.boxes) else \
                np.zeros((0, 4), np.float32)
            truths.append(ImageTruth(np.asarray(gt, np.float32), np.asarray(r.coarse, np.int64)))
        dets, _ = model.detect(torch.stack(tensors).to(device), conf=conf, iou=iou)
        for d in dets:
            d = d.cpu().numpy()
            label = cmap[d[:, 5].astype(np.int64)] if len(d) else np.zeros(0, np.int64)
            preds.append(ImagePreds(d[:, :4], d[:, 4], d[:, 4], label))
    map50_95, map50 = paper_map(preds, truths)
    return {"map50_95": 100 * map50_95, "map50": 100 * map50}
