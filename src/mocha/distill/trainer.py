"""The stage-2 `Trainer`: runs SPEC's schedule on prepared splits, in one process or on every torchrun rank.

Epoch kinds (1-based): every `det_every`-th epoch is a *detection epoch* — the whole student trains
(BN in train mode) with λ_det·L_det + λ_dist·L_dist + λ_emb·L_emb, ultralytics' v8DetectionLoss as L_det, or,
for a student without that loss (`det_loss=self`), the distillation of its own frozen outputs (self_distill.py).
All other epochs train the translator only (student and BN frozen) with λ_dist·L_dist + λ_emb·L_emb.

Speed: in translator-only epochs the student is frozen and there is no augmentation, so its pooled
region features f_A are a fixed function of the image. They are computed once per student version
(again after each detection epoch) and the translator trains on the cached rows with batches of
`batch` images' regions. That is exactly the same computation as running the frozen student every
step, without the ~95% of the cost spent in the student.

Distributed: each rank computes its share of the global loss (L_dist weighted by its share of the global
regions, L_emb summed over its groups / all groups, L_det by its share of images), and the student's and
translator's gradients are summed with one all-reduce per step (the loss terms ride in the same buffer), so
every replica takes the same step in every epoch kind. L_emb is relational over a *group* of images
(`emb_group`, default: the per-process batch, as in SPEC's "batch 16 per process"); a single process
with `emb_group = batch / N` computes exactly what N processes do. Detection epochs differ slightly
across world sizes (BatchNorm statistics and the loss's per-batch normalisation are per process).

Checkpoints: `latest/` (bundle + optimizer state) after every epoch, `best/` on the lowest validation
loss λ_dist·L_dist + λ_emb·L_emb over a fixed subset of the validation split's regions.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mocha.core.device import Dist
from mocha.core.progress import progress
from mocha.data.loader import yolo_targets
from mocha.distill import rundir, schedule
from mocha.distill.checkpoint import load_checkpoint, save_checkpoint
from mocha.distill.config import RUNTIME_FIELDS, DistillConfig
from mocha.distill.data import SplitData, epoch_plan, groups_of
from mocha.distill.losses import dist_loss, emb_loss
from mocha.distill.ridge import fit_ridge, load_ridge
from mocha.distill.self_distill import OutputDistillation, detections, drift_between, resolve_det_loss
from mocha.errors import ConfigError, MochaError
from mocha.models.detector import Student
from mocha.models.pooling import region_tokens
from mocha.models.translator import Translator

log = logging.getLogger(__name__)


class NonFiniteLoss(MochaError):
    """A loss or gradient became NaN/inf; the message names the epoch and step."""


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
        student.pool_bins = cfg.pool_bins  # f_A's layout: the translator is built for it, the bundle records it
        self.translator = Translator(student.token_dim, d_t, heads=cfg.heads or student.token_dim // 32,
                                     tokens=region_tokens(cfg.pool_bins)).to(self.device)
        # L_det: the student's own loss on labelled boxes, or its frozen outputs (the student as it is now)
        det_loss = resolve_det_loss(cfg.det_loss, student) if cfg.det_every else None
        self.det_loss_off = det_loss == "none"
        self.self_distill = OutputDistillation(student).to(self.device) if det_loss == "self" else None
        self._val_original: list[Tensor] | None = None  # the frozen model's validation detections (drift)
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
        self.state = {"epoch": 0, "iteration": 0, "best": math.inf, "best_epoch": 0, "skipped": 0}
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
                l_emb = l_emb + emb_loss(pred[row : row + n], target[row : row + n], self.cfg.temperature,
                                         bool(self.cfg.emb_relative))
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
        if self.dist.is_main:
            rundir.log_skip(self.run_dir, msg)
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
        feats, raw = self.student(images)
        if self.det_loss_off:
            det_sum = images.new_zeros(())
        elif self.self_distill is not None:
            det_sum = self.self_distill.loss(images, raw)
        else:
            targets = {k: v.to(self.device) for k, v in yolo_targets(batch).items()}
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
        show = cfg.progress and self.dist.is_main
        bar = progress(total=len(plan), desc=f"epoch {epoch}/{cfg.epochs} {'detect' if detection else 'transl'}",
                       unit="step", enable=show)
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
            bar.update(1)
            if show:  # .item() syncs the device: only for a visible bar
                bar.set_postfix(
                    det=f"{terms[0].item():.3f}",
                    dist=f"{terms[1].item():.3f}",
                    emb=f"{terms[2].item():.3f}",
                    lr=f"{lr:.2e}",
                    reg_s=f"{rate:.0f}",
                )
            self._scalars("train", terms, lr, self.state["iteration"])
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
        row = {"val_dist": d, "val_emb": e, "val_loss": self.cfg.lambda_dist * d + self.cfg.lambda_emb * e}
        if self.self_distill is not None:  # a student without labels: how far its detections moved, per epoch
            images = [data.image(i).to(self.device) for i in range(len(data.images))]
            if self._val_original is None:  # the frozen model's detections do not change: computed once
                self._val_original = detections(self.self_distill.frozen, images)
            drift = drift_between(self._val_original, detections(self.student, images))
            row.update({f"val_drift_{k}": drift[k] for k in ("recall", "precision", "mean_iou", "mean_abs_dconf")})
        return row

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
        self.dist.all_reduce_(hi, op="max")
        self.dist.all_reduce_(lo, op="max")
        return float((hi + lo).max())

    # ------------------------------------------------------------------ checkpoints
    def _bundle_config(self) -> dict[str, Any]:
        """Settings that determine the weights (runtime switches such as resume stay out of the digest)."""
        cfg = {k: v for k, v in self.cfg.to_dict().items() if k not in RUNTIME_FIELDS}
        return {**cfg, "world_size": self.dist.world, **self.notes}

    def save(self, which: str, with_state: bool) -> Path:
        """`<run>/<which>/`; `with_state` adds what resuming needs (optimizer state and counters)."""
        counters = {"state": self.state, "student_version": self.student_version}
        return save_checkpoint(self.run_dir / which, self.student, self.translator, self.pca, self._bundle_config(),
                               self.optimizer if with_state else None, counters)

    def resume_from(self, path: Path) -> None:
        """Restore student, translator, optimizer and counters from a `latest/` bundle."""
        counters = load_checkpoint(path, self.student, self.translator, self.optimizer, self.device)
        self.state = counters["state"]
        self.student_version = int(counters.get("student_version", 0))

    # ------------------------------------------------------------------ logging helpers
    def _scalars(self, prefix: str, terms: Tensor, lr: float, it: int) -> None:
        if self.writer is None:
            return
        for name, v in zip(("det", "dist", "emb"), terms.tolist(), strict=True):
            self.writer.add_scalar(f"{prefix}/loss_{name}", v, it)
        self.writer.add_scalar(f"{prefix}/lr_translator", lr, it)

    # ------------------------------------------------------------------ closed-form start
    def _regions(self, key: str, data: SplitData, share: bool) -> tuple[Tensor, Tensor]:
        """(box-mean features of the frozen student, targets) of every region of `data`, on the CPU."""
        idx = data.with_regions
        feats = self._features(key, data, idx, share=share)
        x = torch.cat([feats[i] for i in idx])[:, : self.translator.in_dim]
        return x.cpu(), torch.cat([data.targets[i] for i in idx]).cpu()

    def ridge_start(self) -> dict[str, Any]:
        """translator_init=ridge: the translator becomes the ridge fit (every rank fits the same tables); rank 0
        validates it as epoch 0, saves it as `best/` and `latest/`, and logs it."""
        x, y = self._regions("train", self.train_data, share=True)
        xv, yv = self._regions("val", self.val_data, share=False)
        fit = fit_ridge(x, y, xv, yv, tuple(self.cfg.ridge_alpha))
        load_ridge(self.translator, fit)
        self.state["ridge_alpha"] = fit.alpha
        row: dict[str, Any] = {"epoch": 0, "kind": "ridge", "iterations": 0, "ridge_alpha": fit.alpha,
                               "ridge_val_dist": {f"{a:g}": v for a, v in fit.val_dist.items()}}
        if self.dist.is_main:
            row.update(self.validate())
            self.state["best"], self.state["best_epoch"] = row["val_loss"], 0
            row.update(best=self.state["best"], best_epoch=0, skipped=0)
            self.save("latest", with_state=True)
            self.save("best", with_state=False)
            rundir.append_metrics(self.run_dir, row)
            log.info("ridge start: alpha %g, %s", fit.alpha, row)
        self.dist.barrier()
        return row

    # ------------------------------------------------------------------ main loop
    def fit(self) -> Path:
        """Train epochs state.epoch+1 .. cfg.epochs; returns the `best/` bundle path."""
        cfg, rank0 = self.cfg, self.dist.is_main
        if rank0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            rundir.trim_metrics(self.run_dir, self.state["epoch"])
            if cfg.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.state["iteration"] + 1)
        try:
            if cfg.translator_init == "ridge" and "ridge_alpha" not in self.state:  # not again on resume
                row0 = self.ridge_start()
                if self.callback is not None:
                    self.callback(0, row0)
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
                    rundir.append_metrics(self.run_dir, row)
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
