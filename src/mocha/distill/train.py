"""Stage 2: distillation training (SPEC schedule), in one process or under `torchrun --nproc_per_node=N`.

Epoch kinds (1-based): every `det_every`-th epoch is a *detection epoch* — the whole student trains
(BN in train mode) with λ_det·L_det + λ_dist·L_dist + λ_emb·L_emb, ultralytics' v8DetectionLoss as L_det.
All other epochs train the translator only (student and BN frozen) with λ_dist·L_dist + λ_emb·L_emb.

Speed: in translator-only epochs the student is frozen and there is no augmentation, so its pooled
region features f_A are a fixed function of the image. They are computed once per student version
(again after each detection epoch) and the translator trains on the cached rows with batches of
`batch` images' regions. That is exactly the same computation as running the frozen student every
step, without the ~95% of the cost spent in the student.

Distributed: the global batch is `batch × world`; rank r takes the r-th `batch` images of it. Each rank
computes its share of the global loss (L_dist weighted by its share of the global regions, L_emb summed
over its groups / all groups, L_det by its share of images), and the student's and translator's
gradients are summed with one all-reduce per step (the loss terms ride in the same buffer), so every
replica takes the same step in every epoch kind. L_emb is relational over a *group* of images
(`emb_group`, default: the per-process batch, as in SPEC's "batch 16 per process"); a single process
with `emb_group = batch / N` computes exactly what N processes do. Detection epochs differ slightly
across world sizes (BatchNorm statistics and the loss's per-batch normalisation are per process).

Checkpoints: `latest/` (bundle + optimizer state) after every epoch, `best/` on the lowest validation
loss λ_dist·L_dist + λ_emb·L_emb over a fixed subset of the validation split's regions (the first
`val_images` images, sorted by path). Resuming restarts at the next epoch and reproduces an
uninterrupted run exactly (permutations are a function of (seed, epoch); Adam state is restored).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist
from torch import Tensor

from mocha.data.loader import DetectionDataset, yolo_targets
from mocha.distill import schedule
from mocha.distill.losses import dist_loss, emb_loss
from mocha.errors import ConfigError, MochaError
from mocha.io import write_json
from mocha.models.bundle import load_bundle, save_bundle
from mocha.models.detector import Student
from mocha.models.translator import Translator

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    """Every option of stage 2 (SPEC defaults). Paths may be str or Path."""

    data: Path | None = None
    store: Path | None = None
    pca: Path | None = None
    student: Path | None = None
    epochs: int = 50
    name: str = "distill"
    project: Path = Path("runs/distill")
    imgsz: int = 256
    batch: int = 16  # images per process
    train_split: str = "base_train"
    val_split: str = "base_val"
    val_images: int = 200  # fixed validation subset: the first N images of the split
    det_every: int = 4
    lr_translator: float = 1e-3
    wd_translator: float = 1e-4
    lr_student: float = 1e-4
    wd_student: float = 1e-5
    wd_head: float = 0.0
    betas: tuple[float, float] = (0.937, 0.999)
    warmup_iters: int = 1000
    warmup_max_frac: float = 0.1  # short runs: warm-up at most this fraction of all iterations
    warmup_start: float = 1e-6
    lambda_det: float = 1.0
    lambda_dist: float = 1.0
    lambda_emb: float = 1.0
    temperature: float = 1.0
    heads: int = 14
    emb_group: int = 0  # images per L_emb group; 0 = the per-process batch
    seed: int = 42
    resume: bool = False
    exist_ok: bool = False
    extract_missing: bool = False
    teacher: str | None = None  # teacher for --extract-missing (default: the store's)
    skip_nonfinite: bool = False
    device: str | None = None
    progress: bool = True
    tensorboard: bool = True
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DistillConfig:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("data", "store", "pca", "student", "project"):
            if kw.get(k) is not None:
                kw[k] = Path(kw[k])
        if "betas" in kw:
            kw["betas"] = tuple(kw["betas"])
        return cls(**kw)


# fields that may differ when resuming (they do not change the result)
RUNTIME_FIELDS = {"resume", "exist_ok", "device", "progress", "tensorboard", "extract_missing", "teacher"}


class NonFiniteLoss(MochaError):
    """A loss or gradient became NaN/inf; the message names the epoch and step."""


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


# ----------------------------------------------------------------------------- distributed context
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owned: bool = False  # we initialised the process group (and must destroy it)

    @classmethod
    def setup(cls, device: str | None) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
        dev = torch.device(f"cuda:{local}" if cuda else (device or "cpu"))
        if cuda:
            torch.cuda.set_device(dev)
        owned = False
        if world > 1 and not tdist.is_initialized():
            tdist.init_process_group(backend="nccl" if cuda else "gloo")
            owned = True
        if tdist.is_initialized():
            rank, world = tdist.get_rank(), tdist.get_world_size()
        return cls(rank, world, dev, owned)

    def all_reduce_(self, t: Tensor) -> Tensor:
        if self.world > 1:
            tdist.all_reduce(t)
        return t

    def barrier(self) -> None:
        if self.world > 1:
            tdist.barrier()

    def broadcast_(self, t: Tensor) -> None:
        if self.world > 1:
            tdist.broadcast(t, 0)

    def close(self) -> None:
        if self.owned and tdist.is_initialized():
            tdist.destroy_process_group()


# ----------------------------------------------------------------------------- batch plans
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
    size = size if size > 0 else max(len(images), 1)
    return [images[i : i + size] for i in range(0, len(images), size)]


# ----------------------------------------------------------------------------- the trainer
class Trainer:
    """Runs the schedule on prepared splits; writes the run folder (rank 0)."""

    def __init__(
        self,
        cfg: DistillConfig,
        student: Student,
        train: SplitData,
        val: SplitData | None,
        run_dir: Path,
        pca: Any | None = None,
        dist: Dist | None = None,
        callback: Callable[[int, dict], None] | None = None,
        translator: Translator | None = None,
        notes: dict | None = None,
    ) -> None:
        self.cfg, self.train_data, self.val_data, self.run_dir, self.pca = cfg, train, val, Path(run_dir), pca
        self.dist = dist or Dist.setup(cfg.device)
        self.callback = callback
        self.notes = notes or {}
        self.device = self.dist.device
        d_t = int(train.targets[0].shape[1]) if train.targets else 0
        if not train.with_regions:
            raise ConfigError(f"split {cfg.train_split!r} has no boxes: nothing to distill")
        torch.manual_seed(cfg.seed)  # identical translator init on every rank
        self.student = student.to(self.device)
        self.translator = (translator or Translator(student.region_dim, d_t, heads=cfg.heads)).to(self.device)
        if self.translator.out_dim != d_t:
            raise ConfigError(f"translator output {self.translator.out_dim} != target dim {d_t}")
        groups = schedule.param_groups(
            self.student,
            self.translator,
            cfg.lr_translator,
            cfg.wd_translator,
            cfg.lr_student,
            cfg.wd_student,
            cfg.wd_head,
        )
        self.optimizer = schedule.make_optimizer(groups, tuple(cfg.betas))
        self.group_size = cfg.emb_group or cfg.batch
        self.plans = {e: self._plan(e) for e in range(1, cfg.epochs + 1)}
        self.total_iters = sum(len(p) for p in self.plans.values())
        self.warmup = schedule.warmup_iters(self.total_iters, cfg.warmup_iters, cfg.warmup_max_frac)
        self.state = {"epoch": 0, "iteration": 0, "best": math.inf, "best_epoch": 0, "skipped": 0, "history": []}
        self._cache: dict[str, tuple[int, list[Tensor]]] = {}
        self.student_version = 0
        self.writer = None

    # ------------------------------------------------------------------ plans and features
    def _plan(self, epoch: int) -> list[list[list[int]]]:
        det = schedule.is_detection_epoch(epoch, self.cfg.det_every)
        idx = list(range(len(self.train_data.dataset))) if det else self.train_data.with_regions
        return epoch_plan(idx, epoch, self.cfg.seed, self.cfg.batch, self.dist.world)

    @torch.no_grad()
    def _features(self, key: str, data: SplitData, indices: list[int], share: bool) -> list[Tensor]:
        """f_A per image of the frozen student (eval mode), cached per student version.

        With `share`, ranks each compute a contiguous slice and one all-reduce assembles the table.
        """
        hit = self._cache.get(key)
        if hit and hit[0] == self.student_version:
            return hit[1]
        self.student.eval()
        counts = data.counts
        offsets = [0]
        for c in counts:
            offsets.append(offsets[-1] + c)
        table = torch.zeros(offsets[-1], self.student.region_dim, device=self.device)
        mine = indices
        if share and self.dist.world > 1:
            k, m = divmod(len(indices), self.dist.world)
            r = self.dist.rank
            mine = indices[r * k + min(r, m) : (r + 1) * k + min(r + 1, m)]
        for s in range(0, len(mine), self.cfg.batch):
            chunk = [i for i in mine[s : s + self.cfg.batch] if counts[i]]
            if not chunk:
                continue
            images = torch.stack([data.image(i) for i in chunk]).to(self.device)
            feats, _ = self.student(images)
            rows = self.student.region_features(feats, [data.boxes[i].to(self.device) for i in chunk])
            pos = torch.cat([torch.arange(offsets[i], offsets[i + 1]) for i in chunk]).to(self.device)
            table[pos] = rows.float()
        if share:
            self.dist.all_reduce_(table)
        out = [table[offsets[i] : offsets[i + 1]] for i in range(len(counts))]
        self._cache[key] = (self.student_version, out)
        return out

    # ------------------------------------------------------------------ losses
    def _losses(
        self, pred: Tensor, target: Tensor, counts: list[int], step: list[list[int]], local: list[int], data: SplitData
    ) -> tuple[Tensor, Tensor]:
        """This rank's share of the global L_dist and L_emb of the step."""
        all_counts = data.counts
        regions_global = sum(all_counts[i] for rank_imgs in step for i in rank_imgs)
        groups_global = sum(
            1 for rank_imgs in step for g in groups_of(rank_imgs, self.group_size) if sum(all_counts[i] for i in g) >= 2
        )
        zero = pred.sum() * 0.0
        l_dist = dist_loss(pred, target) * (len(pred) / regions_global) if len(pred) else zero
        l_emb = zero
        row = 0
        for g in groups_of(local, self.group_size):
            n = sum(all_counts[i] for i in g)
            if n >= 2:
                l_emb = l_emb + emb_loss(pred[row : row + n], target[row : row + n], self.cfg.temperature)
            row += n
        if groups_global:
            l_emb = l_emb / groups_global
        return l_dist, l_emb

    def _trainable(self, detection: bool) -> list[torch.nn.Parameter]:
        params = list(self.translator.parameters())
        if detection:
            params += [p for p in self.student.parameters() if p.requires_grad]
        return params

    def _reduce_and_check(self, detection: bool, terms: Tensor, epoch: int, step: int) -> tuple[Tensor, bool]:
        """One all-reduce for gradients and loss terms; False when the step must be skipped (non-finite)."""
        params = self._trainable(detection)
        if self.dist.world > 1:
            for p in params:  # a rank whose share had no regions still joins the same buffer layout
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads] + [terms.detach().reshape(-1)])
        self.dist.all_reduce_(flat)
        terms = flat[-terms.numel() :]
        finite = bool(torch.isfinite(flat).all())
        if finite:
            off = 0
            for g in grads:
                g.copy_(flat[off : off + g.numel()].view_as(g))
                off += g.numel()
            return terms, True
        it = self.state["iteration"]
        what = "loss" if not torch.isfinite(terms).all() else "gradient"
        msg = (
            f"non-finite {what} at epoch {epoch} step {step + 1} (iteration {it + 1}): "
            f"L_det={terms[0].item():.4g} L_dist={terms[1].item():.4g} L_emb={terms[2].item():.4g}"
        )
        if not self.cfg.skip_nonfinite:
            raise NonFiniteLoss(msg + "; lower the learning rates, check the targets, or pass --skip-nonfinite")
        self.state["skipped"] += 1
        log.warning("%s: batch skipped (%d skipped so far)", msg, self.state["skipped"])
        self._log_skip(msg)
        return terms, False

    # ------------------------------------------------------------------ epochs
    def _translator_step(self, step: list[list[int]], feats: list[Tensor]) -> tuple[Tensor, int]:
        local = step[self.dist.rank]
        data = self.train_data
        f = torch.cat([feats[i] for i in local])
        y = torch.cat([data.targets[i] for i in local]).to(self.device)
        pred = self.translator(f)
        l_dist, l_emb = self._losses(pred, y, [data.counts[i] for i in local], step, local, data)
        loss = self.cfg.lambda_dist * l_dist + self.cfg.lambda_emb * l_emb
        loss.backward()
        return torch.stack([l_dist.new_zeros(()), l_dist.detach(), l_emb.detach()]), len(pred)

    def _detection_step(self, step: list[list[int]]) -> tuple[Tensor, int]:
        local = step[self.dist.rank]
        data = self.train_data
        batch = data.batch(local)
        images = batch["images"].to(self.device)
        boxes = [data.boxes[i].to(self.device) for i in local]
        targets = {k: v.to(self.device) for k, v in yolo_targets(batch).items()}
        feats, raw = self.student(images)
        det_sum, _ = self.student.detection_loss(raw, targets)
        images_global = sum(len(r) for r in step)
        l_det = det_sum / images_global  # ultralytics returns (box+cls+dfl) × local batch size
        pred = self.translator(self.student.region_features(feats, boxes).float())
        y = torch.cat([data.targets[i] for i in local]).to(self.device)
        l_dist, l_emb = self._losses(pred, y, [data.counts[i] for i in local], step, local, data)
        loss = self.cfg.lambda_det * l_det + self.cfg.lambda_dist * l_dist + self.cfg.lambda_emb * l_emb
        loss.backward()
        return torch.stack([l_det.detach(), l_dist.detach(), l_emb.detach()]), len(pred)

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        detection = schedule.is_detection_epoch(epoch, cfg.det_every)
        plan = self.plans[epoch]
        feats = None
        t_cache = time.perf_counter()
        if detection:
            self.student.train()
        else:
            feats = self._features("train", self.train_data, self.train_data.with_regions, share=True)
            self.student.eval()
        t_cache = time.perf_counter() - t_cache
        self.translator.train()
        sums = torch.zeros(3, dtype=torch.float64)
        regions, t0 = 0, time.perf_counter()
        bar = self._bar(len(plan), f"epoch {epoch}/{cfg.epochs} {'detect' if detection else 'transl'}")
        lr = 0.0
        for s, step in enumerate(plan):
            factor = schedule.lr_factor(self.state["iteration"], self.total_iters, self.warmup, cfg.warmup_start)
            schedule.set_lr(self.optimizer, factor)
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.zero_grad(set_to_none=True)
            if detection:
                terms, n = self._detection_step(step)
            else:
                terms, n = self._translator_step(step, feats)
            terms, ok = self._reduce_and_check(detection, terms, epoch, s)
            if ok:
                self.optimizer.step()
                sums += terms.double().cpu()
            self.optimizer.zero_grad(set_to_none=True)
            self.state["iteration"] += 1
            regions += n * self.dist.world
            rate = regions / max(time.perf_counter() - t0, 1e-9)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    det=f"{terms[0].item():.3f}",
                    dist=f"{terms[1].item():.3f}",
                    emb=f"{terms[2].item():.3f}",
                    lr=f"{lr:.2e}",
                    reg_s=f"{rate:.0f}",
                )
            self._scalars("train", terms, lr, self.state["iteration"])
        if bar is not None:
            bar.close()
        if detection:
            self._sync_buffers()
            self.student_version += 1
            self.student.eval()
        n_steps = max(len(plan), 1)
        mean = (sums / n_steps).tolist()
        return {
            "epoch": epoch,
            "kind": "detection" if detection else "translator",
            "iterations": len(plan),
            "loss_det": mean[0],
            "loss_dist": mean[1],
            "loss_emb": mean[2],
            "lr_translator": lr,
            "regions_per_s": regions / max(time.perf_counter() - t0, 1e-9),
            "seconds": time.perf_counter() - t0,
            "feature_cache_s": t_cache,
        }

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """λ_dist·L_dist + λ_emb·L_emb over the fixed validation subset (eval mode, fixed order)."""
        data = self.val_data
        idx = data.with_regions
        feats = self._features("val", data, idx, share=False)
        self.translator.eval()
        tot_d = tot_e = 0.0
        n_batches = 0
        for s in range(0, len(idx), self.cfg.batch):
            local = idx[s : s + self.cfg.batch]
            pred = self.translator(torch.cat([feats[i] for i in local]))
            y = torch.cat([data.targets[i] for i in local]).to(self.device)
            l_dist, l_emb = self._losses(pred, y, [data.counts[i] for i in local], [local], local, data)
            tot_d += l_dist.item()
            tot_e += l_emb.item()
            n_batches += 1
        n_batches = max(n_batches, 1)
        d, e = tot_d / n_batches, tot_e / n_batches
        return {"val_dist": d, "val_emb": e, "val_loss": self.cfg.lambda_dist * d + self.cfg.lambda_emb * e}

    # ------------------------------------------------------------------ replicas
    def _sync_buffers(self) -> None:
        """Average BatchNorm running statistics over ranks after a detection epoch (they saw different images)."""
        if self.dist.world == 1:
            return
        for b in self.student.buffers():
            if b.is_floating_point():
                self.dist.all_reduce_(b.data)
                b.data.div_(self.dist.world)

    @torch.no_grad()
    def replica_diff(self) -> float:
        """Largest difference between ranks of any per-tensor checksum (0.0 when replicas are identical)."""
        if self.dist.world == 1:
            return 0.0
        tensors = list(self.student.state_dict().values()) + list(self.translator.state_dict().values())
        sums = torch.stack([t.double().sum() + t.double().abs().sum() * 1e-3 for t in tensors])
        hi, lo = sums.clone(), -sums.clone()
        tdist.all_reduce(hi, op=tdist.ReduceOp.MAX)
        tdist.all_reduce(lo, op=tdist.ReduceOp.MAX)
        return float((hi + lo).max())

    # ------------------------------------------------------------------ checkpoints
    def _bundle_config(self) -> dict[str, Any]:
        """Settings that determine the weights (runtime switches such as --resume stay out of the digest)."""
        cfg = {k: v for k, v in self.cfg.to_json().items() if k not in RUNTIME_FIELDS}
        return {**cfg, "world_size": self.dist.world, **self.notes}

    def optimizer_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        sd = self.optimizer.state_dict()
        tensors: dict[str, Tensor] = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                tensors[f"opt.{idx}.{k}"] = torch.as_tensor(v)
        groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in sd["param_groups"]]
        return tensors, {"param_groups": groups, "state": self.state, "student_version": self.student_version}

    def load_optimizer_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        state: dict[int, dict[str, Tensor]] = {}
        for key, v in tensors.items():
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v.to(self.device) if name != "step" else v
        groups = meta["param_groups"]
        for g in groups:
            g["betas"] = tuple(g["betas"])
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        self.state = meta["state"]
        self.student_version = int(meta.get("student_version", 0))

    def save(self, which: str, with_state: bool) -> Path:
        extra_t, extra_j = self.optimizer_state() if with_state else (None, None)
        return save_bundle(
            self.run_dir / which,
            self.student,
            self.translator,
            self.pca,
            self._bundle_config(),
            extra_tensors=extra_t,
            extra_json=extra_j,
        )

    def resume_from(self, path: Path) -> None:
        """Restore student, translator, optimizer and counters from a `latest/` bundle."""
        from safetensors.torch import load_file

        bundle = load_bundle(path)
        if bundle.student.architecture() != self.student.architecture():
            raise ConfigError(f"{path}: the checkpoint's student architecture differs from --student")
        self.student.load_state_dict(bundle.student.state_dict())
        self.translator.load_state_dict(bundle.translator.state_dict())
        state_json = path / "train_state.json"
        if not state_json.exists():
            raise ConfigError(f"{path}: no train_state.json; only `latest/` bundles can be resumed")
        tensors_path = path / "train_state.safetensors"
        tensors = load_file(str(tensors_path)) if tensors_path.exists() else {}
        self.load_optimizer_state(tensors, json.loads(state_json.read_text()))

    # ------------------------------------------------------------------ logging helpers
    def _bar(self, total: int, desc: str) -> Any:
        if self.dist.rank != 0 or not self.cfg.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, leave=True, dynamic_ncols=True)

    def _scalars(self, prefix: str, terms: Tensor, lr: float, it: int) -> None:
        if self.writer is None:
            return
        for name, v in zip(("det", "dist", "emb"), terms.tolist(), strict=True):
            self.writer.add_scalar(f"{prefix}/loss_{name}", v, it)
        self.writer.add_scalar(f"{prefix}/lr_translator", lr, it)

    def _log_skip(self, msg: str) -> None:
        if self.dist.rank == 0:
            with open(self.run_dir / "skipped.log", "a") as fh:
                fh.write(msg + "\n")

    def _append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")

    def _trim_metrics(self, last_epoch: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if path.exists():
            rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            keep = "".join(json.dumps(r) + "\n" for r in rows if r["epoch"] <= last_epoch)
            from mocha.io import write_text

            write_text(path, keep)

    # ------------------------------------------------------------------ main loop
    def fit(self) -> Path:
        """Train epochs state.epoch+1 .. cfg.epochs; returns the `best/` bundle path."""
        cfg, rank0 = self.cfg, self.dist.rank == 0
        if rank0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._trim_metrics(self.state["epoch"])
            if cfg.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.state["iteration"] + 1)
        try:
            for epoch in range(self.state["epoch"] + 1, cfg.epochs + 1):
                row = self.run_epoch(epoch)
                row["replica_diff"] = self.replica_diff()
                self.state["epoch"] = epoch
                if rank0:
                    row.update(self.validate())
                    improved = row["val_loss"] < self.state["best"]
                    if improved:
                        self.state["best"], self.state["best_epoch"] = row["val_loss"], epoch
                    row.update(best=self.state["best"], best_epoch=self.state["best_epoch"])
                    row["skipped"] = self.state["skipped"]
                    self.save("latest", with_state=True)
                    if improved:
                        self.save("best", with_state=False)
                    self._append_metrics(row)
                    if self.writer is not None:
                        for k in ("val_loss", "val_dist", "val_emb", "regions_per_s"):
                            self.writer.add_scalar(f"epoch/{k}", row[k], epoch)
                        self.writer.flush()
                    log.info("epoch %d: %s", epoch, row)
                self.dist.barrier()
                if self.callback is not None:
                    self.callback(epoch, row)
        finally:
            if self.writer is not None:
                self.writer.close()
        return self.run_dir / "best"


# ----------------------------------------------------------------------------- entry point
def run_dir_for(cfg: DistillConfig) -> Path:
    return Path(cfg.project) / cfg.name


def prepare_run_dir(cfg: DistillConfig, rank: int) -> Path:
    """Create/validate runs/distill/<name>/; on --resume read its config.json (the run's own settings)."""
    run = run_dir_for(cfg)
    cfg_path = run / "config.json"
    if cfg.resume:
        if not (run / "latest" / "bundle.json").exists():
            raise ConfigError(f"--resume: {run}/latest is not a bundle; nothing to resume")
        saved = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        diffs = [k for k, v in cfg.to_json().items() if k not in RUNTIME_FIELDS and k in saved and saved[k] != v]
        if diffs:
            log.warning("--resume: using the run's saved settings for %s", ", ".join(sorted(diffs)))
    elif cfg_path.exists() and not cfg.exist_ok:
        raise ConfigError(f"{run} already holds a run; pass --resume to continue it or --name for a new one")
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        if not cfg.resume:
            for stale in ("metrics.jsonl", "skipped.log"):
                (run / stale).unlink(missing_ok=True)
    return run


def resolved_config(cfg: DistillConfig) -> DistillConfig:
    """On --resume, the saved run settings with this call's runtime fields."""
    if not cfg.resume:
        return cfg
    cfg_path = run_dir_for(cfg) / "config.json"
    if not cfg_path.exists():
        return cfg
    saved = DistillConfig.from_json(json.loads(cfg_path.read_text()))
    for k in RUNTIME_FIELDS:
        setattr(saved, k, getattr(cfg, k))
    saved.project, saved.name = cfg.project, cfg.name
    return saved


def train(
    cfg: DistillConfig,
    student: Student,
    train_data: SplitData,
    val_data: SplitData | None,
    pca: Any | None = None,
    callback: Callable[[int, dict], None] | None = None,
    notes: dict | None = None,
) -> Path:
    """Run (or resume) the schedule on prepared splits; returns the `best/` bundle path."""
    dist = Dist.setup(cfg.device)
    try:
        run = prepare_run_dir(cfg, dist.rank)
        trainer = Trainer(cfg, student, train_data, val_data or train_data, run, pca, dist, callback, notes=notes)
        if cfg.resume:
            trainer.resume_from(run / "latest")
        elif dist.rank == 0:
            write_json(run / "config.json", {**cfg.to_json(), "world_size": dist.world, **(notes or {})})
        for p in list(trainer.student.parameters()) + list(trainer.translator.parameters()):
            dist.broadcast_(p.data)  # replicas start identical even if a rank's init differed
        return trainer.fit()
    finally:
        dist.close()


def distill(config: DistillConfig, callback: Callable[[int, dict], None] | None = None) -> Path:
    """Stage 2 end to end: dataset + embedding store + PCA → run folder; returns `<run>/best`."""
    from mocha.distill.targets import load_split_targets, open_pca

    cfg = resolved_config(config)
    for name in ("data", "store", "pca", "student"):
        if getattr(cfg, name) is None:
            raise ConfigError(f"distill needs --{name} (or --resume of a run that recorded it)")
    if cfg.imgsz % 32:
        raise ConfigError(f"--imgsz must be a multiple of 32, got {cfg.imgsz}")
    if cfg.batch < 1 or cfg.epochs < 1:
        raise ConfigError("--batch and --epochs must be positive")
    from mocha.data.dataset import load_dataset
    from mocha.data.records import read_split

    spec = load_dataset(cfg.data)
    student = Student.load(cfg.student)
    if list(student.names) != list(spec.names):
        raise ConfigError(
            f"{cfg.student}: student classes {student.names} differ from the dataset's {spec.names} ({cfg.data})"
        )
    pca = open_pca(cfg.pca)
    train_records = read_split(spec, cfg.train_split)
    train_targets = load_split_targets(cfg, spec, cfg.train_split, train_records, pca)
    notes: dict[str, Any] = {"pca_digest": str(schedule_attr(pca, "digest")), "train_images": len(train_records)}
    val_records = []
    if cfg.val_split in spec.splits:
        val_records = read_split(spec, cfg.val_split)[: cfg.val_images]
    val_targets = (
        load_split_targets(cfg, spec, cfg.val_split, val_records, pca, required=False) if val_records else None
    )
    train_data = make_split(DetectionDataset(train_records, cfg.imgsz), train_targets)
    if val_targets is not None:
        val_data = make_split(DetectionDataset(val_records, cfg.imgsz), val_targets)
        notes["val_source"] = f"{cfg.val_split}[:{len(val_records)}]"
    else:
        k = min(cfg.val_images, len(train_records))
        log.warning(
            "validation split %r not covered by the store: best/ is chosen on the first %d train images",
            cfg.val_split,
            k,
        )
        val_data = train_data.subset(k)
        notes["val_source"] = f"{cfg.train_split}[:{k}] ({cfg.val_split} not in the store)"
    return train(cfg, student, train_data, val_data, pca=pca, callback=callback, notes=notes)


def schedule_attr(obj: Any, name: str) -> Any:
    value = getattr(obj, name)
    return value() if callable(value) else value
