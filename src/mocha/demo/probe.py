"""The neural-collapse probe: can each representation tell same-category personal instances apart?

Within-category nearest-prototype accuracy on ground-truth boxes of the personal split (k support boxes per
instance, every other box a query, cosine to the prototypes of its own coarse class) for: a colour
histogram of the crop, the teacher (its stored embeddings), the stage-1 student's pooled f_A and MOCHA's
translated embeddings. A detector trained on coarse labels tends to collapse instances of a category
(student ≈ chance); distillation should bring it towards the teacher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mocha.data.dataset import load_dataset
from mocha.data.images import letterbox, load_image, norm_cxcywh_to_xyxy
from mocha.data.records import read_split
from mocha.data.world.probe import histogram_features, nearest_prototype_accuracy
from mocha.teacher.crops import crop_regions


@torch.inference_mode()
def _region_features(model: Any, embed: Any, images: list[np.ndarray], boxes: list[np.ndarray], imgsz: int,
                     batch: int = 16) -> np.ndarray:
    """embed(feats, boxes) for letterboxed images in batches; boxes in original pixels."""
    out = []
    for i in range(0, len(images), batch):
        lbs, bxs = [], []
        for img, b in zip(images[i:i + batch], boxes[i:i + batch], strict=True):
            lb_img, lb = letterbox(img, imgsz)
            lbs.append(torch.from_numpy(lb_img).permute(2, 0, 1).float() / 255.0)
            bxs.append(torch.from_numpy(lb.to_letterbox(b)))
        feats, _ = model(torch.stack(lbs))
        out.append(embed(feats, bxs).float().numpy())
    return np.concatenate(out)


def probe_split(data: str | Path, split: str = "personal") -> tuple[list[Any], list[np.ndarray], list[np.ndarray],
                                                                    np.ndarray, np.ndarray]:
    """(records with boxes, their images, boxes in original pixels, instance ids, coarse ids) of a split."""
    spec = load_dataset(data)
    records = [r for r in read_split(spec, split) if len(r.boxes)]
    images = [load_image(r.image) for r in records]
    boxes = [norm_cxcywh_to_xyxy(r.boxes, im.shape[1], im.shape[0]) for r, im in zip(records, images, strict=True)]
    return records, images, boxes, np.concatenate([r.instance for r in records]), np.concatenate(
        [r.coarse for r in records])


def collapse_probe(
    data: str | Path,
    split: str = "personal",
    shots: list[int] | tuple[int, ...] = (1, 5),
    episodes: int = 100,
    store: str | Path | None = None,
    student: str | Path | None = None,
    bundle: str | Path | None = None,
    imgsz: int = 256,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """{shots: {"colour_histogram", "teacher", "student", "mocha", "chance"}} in percent (absent inputs skipped)."""
    spec = load_dataset(data)
    records, images, boxes, inst, coarse = probe_split(data, split)
    feats: dict[str, np.ndarray] = {}
    crops = [c for im, b, r in zip(images, boxes, records, strict=True)
             for c in crop_regions(im, b, where=str(r.image))]
    feats["colour_histogram"] = histogram_features(crops)
    if store is not None:
        from mocha.teacher.store import EmbeddingStore

        s = EmbeddingStore.open(store)
        keys = [k for ks in s.region_keys(records, spec.names) for k in ks]
        feats["teacher"] = s.get(keys).float().numpy()
    if student is not None:
        from mocha.models.detector import Student

        st = Student.load(student).eval()
        feats["student"] = _region_features(st, st.region_features, images, boxes, imgsz)
    if bundle is not None:
        from mocha.models.bundle import load_bundle

        b = load_bundle(bundle)
        b.student.eval()
        b.translator.eval()
        feats["mocha"] = _region_features(b.student, b.embed_regions, images, boxes, imgsz)
    ids = np.unique(inst)
    per_cat = [len(np.unique(inst[coarse == c])) for c in np.unique(coarse[np.isin(inst, ids)])]
    out = {}
    for k in shots:
        row = {name: 100 * nearest_prototype_accuracy(f, inst, coarse, k, episodes, seed) for name, f in feats.items()}
        row["chance"] = 100 * float(np.mean([1 / n for n in per_cat]))
        out[str(k)] = row
    return out
