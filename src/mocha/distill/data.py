"""Stage-2 data: splits paired with their teacher targets, and the per-epoch batch plans.

Global batches are `batch × world` images; rank r takes the r-th `batch` images of each. The order is a
function of (seed, epoch) only, so a resumed run and a run on another world size see the same images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mocha.data.images import zoom_geometry
from mocha.data.loader import DetectionDataset
from mocha.distill.config import DistillConfig
from mocha.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    """Images of one split with their teacher targets u' (n_i, d_t) per image.

    Letterboxed images are kept in memory as uint8 while they fit `cache_mb` (loaded once, reused by
    every feature pass and detection epoch); beyond that they are read from disk on demand.
    """

    dataset: DetectionDataset
    targets: list[Tensor]
    boxes: list[Tensor]  # xyxy letterboxed pixels per image (same order as targets)
    images: list[Tensor | None]

    @property
    def counts(self) -> list[int]:
        return [len(b) for b in self.boxes]

    @property
    def with_regions(self) -> list[int]:
        return [i for i, n in enumerate(self.counts) if n > 0]

    def subset(self, k: int) -> SplitData:
        """The first k images (shares tensors)."""
        ds = DetectionDataset(self.dataset.records[:k], self.dataset.imgsz)
        return SplitData(ds, self.targets[:k], self.boxes[:k], self.images[:k])

    def image(self, i: int) -> Tensor:
        img = self.images[i]
        return img.float().div_(255.0) if img is not None else self.dataset[i]["image"]

    def batch(self, indices: list[int]) -> dict[str, Any]:
        """images (B,3,S,S) and the per-image lists `yolo_targets` needs."""
        return {
            "images": torch.stack([self.image(i) for i in indices]),
            "boxes": [self.boxes[i] for i in indices],
            "coarse": [torch.from_numpy(self.dataset.records[i].coarse.copy()) for i in indices],
        }


def make_split(dataset: DetectionDataset, targets: list[Tensor], cache_mb: float = 2048) -> SplitData:
    """Pair a dataset with its per-image targets (checking box counts agree); loads each image once."""
    if len(targets) != len(dataset):
        raise ConfigError(f"{len(targets)} target lists for {len(dataset)} images")
    per_image_mb = 3 * dataset.imgsz**2 / 2**20
    keep = per_image_mb * len(dataset) <= cache_mb
    boxes, images = [], []
    for i, rec in enumerate(dataset.records):
        if len(targets[i]) != len(rec.boxes):
            raise ConfigError(f"{rec.image}: {len(rec.boxes)} boxes but {len(targets[i])} teacher targets")
        item = dataset[i]
        boxes.append(item["boxes"].float())
        images.append(item["image"].mul(255.0).round_().to(torch.uint8) if keep else None)
    return SplitData(dataset, [torch.as_tensor(t).float() for t in targets], boxes, images)


def zoomed_views(split: SplitData, factors: list[float]) -> SplitData:
    """`split` plus, per image with boxes and per factor f, the letterboxed image shrunk by f and centred on grey
    (boxes scaled with it), keeping the image's teacher targets.

    The teacher embeds a crop resized to its own input, so a region's target does not depend on where or how big
    it sits in the student's letterbox; the student's pooled features do. The views teach the translator that a
    close-up and a wide shot of one object are the same thing (enrol from a close-up, find it across a room).
    """
    import torch.nn.functional as F

    if not factors:
        return split
    if any(img is None for img in split.images):
        raise ConfigError("zoom_out: the split's images do not fit in memory (cache_mb); train without zoom_out")
    records, targets, boxes, images = list(split.dataset.records), list(split.targets), list(split.boxes), \
        list(split.images)
    size = split.dataset.imgsz
    for f in factors:
        side, off, scale = zoom_geometry(size, f)
        for i in split.with_regions:
            small = F.interpolate(split.images[i][None].float(), size=(side, side), mode="area")[0]
            canvas = torch.full((3, size, size), 114.0)
            canvas[:, off : off + side, off : off + side] = small
            records.append(split.dataset.records[i])
            targets.append(split.targets[i])
            boxes.append(split.boxes[i] * scale + off)
            images.append(canvas.round_().to(torch.uint8))
    return SplitData(DetectionDataset(records, size), targets, boxes, images)


def mirrored_views(split: SplitData) -> SplitData:
    """`split` plus each image with boxes mirrored left-right (boxes mirrored with it), keeping its teacher targets.

    The built-in teacher embeds a mirrored crop within cosine 0.985 (min 0.970) of the crop itself, against 0.897
    between two views of one instance (143 personal regions of the small world, docs/ablations.md), so a mirrored
    region's target is its own and the store needs no second extraction.
    """
    if any(img is None for img in split.images):
        raise ConfigError("hflip: the split's images do not fit in memory (cache_mb); give hflip=false")
    size = split.dataset.imgsz
    keep = split.with_regions
    records = list(split.dataset.records) + [split.dataset.records[i] for i in keep]
    boxes = list(split.boxes) + [torch.stack([size - split.boxes[i][:, 2], split.boxes[i][:, 1],
                                              size - split.boxes[i][:, 0], split.boxes[i][:, 3]], 1) for i in keep]
    images = list(split.images) + [split.images[i].flip(-1) for i in keep]
    targets = list(split.targets) + [split.targets[i] for i in keep]
    return SplitData(DetectionDataset(records, size), targets, boxes, images)


def load_splits(cfg: DistillConfig, spec: Any, pca: Any) -> tuple[SplitData, SplitData, dict[str, Any]]:
    """(train, val, notes) for `cfg`: targets from the store through the PCA.

    `val` is the first `val_images` images of `val_split` when the store covers them, else (with a warning)
    the first images of the train split; `notes` records which, for config.json and the bundle.
    """
    from mocha.data.records import read_split
    from mocha.distill import targets  # module attribute at call time (tests replace the store seam)

    train_records = read_split(spec, cfg.train_split)
    train_targets = targets.load_split_targets(cfg, spec, cfg.train_split, train_records, pca)
    notes: dict[str, Any] = {"pca_digest": str(pca.digest), "train_images": len(train_records)}
    val_records = read_split(spec, cfg.val_split)[: cfg.val_images] if cfg.val_split in spec.splits else []
    val_targets = (
        targets.load_split_targets(cfg, spec, cfg.val_split, val_records, pca, required=False) if val_records else None
    )
    train = zoomed_views(make_split(DetectionDataset(train_records, cfg.imgsz), train_targets),
                         list(cfg.zoom_out or []))
    if cfg.zoom_out:
        notes["zoom_out"] = list(cfg.zoom_out)
    if cfg.hflip:
        train = mirrored_views(train)
    if val_targets is not None:
        notes["val_source"] = f"{cfg.val_split}[:{len(val_records)}]"
        return train, make_split(DetectionDataset(val_records, cfg.imgsz), val_targets), notes
    k = min(cfg.val_images, len(train_records))
    log.warning("validation split %r not covered by the store: best/ is chosen on the first %d train images",
                cfg.val_split, k)
    notes["val_source"] = f"{cfg.train_split}[:{k}] ({cfg.val_split} not in the store)"
    return train, train.subset(k), notes


def epoch_plan(indices: list[int], epoch: int, seed: int, batch: int, world: int) -> list[list[list[int]]]:
    """Global batches for one epoch: a list of steps, each a list of per-rank image-index lists.

    The order is a seeded permutation of `indices` that depends only on (seed, epoch); a final partial
    batch is split evenly across ranks and dropped only when it cannot give every rank an image.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = [indices[i] for i in torch.randperm(len(indices), generator=g).tolist()]
    steps = []
    gb = batch * world
    for s in range(0, len(order), gb):
        chunk = order[s : s + gb]
        if len(chunk) == gb:
            steps.append([chunk[r * batch : (r + 1) * batch] for r in range(world)])
        elif len(chunk) >= world:
            k, m = divmod(len(chunk), world)
            cuts = [r * k + min(r, m) for r in range(world + 1)]
            steps.append([chunk[cuts[r] : cuts[r + 1]] for r in range(world)])
    return steps


def groups_of(images: list[int], size: int) -> list[list[int]]:
    """Consecutive L_emb groups of `size` images (0: one group of all)."""
    size = size if size > 0 else max(len(images), 1)
    return [images[i : i + size] for i in range(0, len(images), size)]
