"""Stage 2 entry points: `distill(config)` (dataset + store + PCA → run folder) and `train(...)` on prepared splits.

The pieces: `config.DistillConfig` (options; `recipes` fills the schedule), `data` (splits with teacher targets,
batch plans), `trainer.Trainer` (the schedule), `rundir` (run folder, resume, config.json), `checkpoint`
(bundles with optimizer state), `mocha.core.device.Dist` (one process or torchrun).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mocha.core.device import Dist
from mocha.distill import rundir
from mocha.distill.config import DistillConfig
from mocha.distill.data import SplitData
from mocha.distill.trainer import Trainer
from mocha.errors import ConfigError
from mocha.models.detector import Student


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
        run = rundir.prepare_run(cfg, dist)
        if run.name != cfg.name:  # the next free name: record the folder the run really is in
            cfg = cfg.replace(name=run.name)
        trainer = Trainer(cfg, student, train_data, val_data or train_data, run, pca, dist, callback, notes=notes)
        if cfg.resume:
            trainer.resume_from(run / "latest")
        elif dist.is_main:
            rundir.write_config(run, cfg, dist.world, notes or {})
        for p in list(trainer.student.parameters()) + list(trainer.translator.parameters()):
            dist.broadcast_(p.data)  # replicas start identical even if a rank's init differed
        return trainer.fit()
    finally:
        dist.close()


def attach_branch(student: Student, stages: int, name: str, light: bool = False) -> None:
    """`branch=`: give the student an embedding branch of `stages` CSP stages (unless it already carries one);
    `branch_light=`: the cheaper branch (mocha.models.nanodet)."""
    if not hasattr(student, "add_embedding_branch"):
        raise ConfigError(f"branch={stages}: only nanodet-g has an embedding branch; {name} pools its own maps "
                          "(branch=0)")
    if not getattr(student, "detector_frozen", False):  # e.g. a branched bundle given as the student
        student.add_embedding_branch(stages, light=light)


def attach_stride4(student: Student, name: str, only: bool = False) -> None:
    """`stride4=true`: NanoDet-g also pools regions from its first CSP stage (unless it already does);
    `stride4_only=true`: from that map alone."""
    option = "stride4_only=true" if only else "stride4=true"
    if not hasattr(student, "add_stride4_level"):
        raise ConfigError(f"{option}: only nanodet-g has a stride-4 pooling level; {name} pools its own maps")
    if not getattr(student, "stride4", False):
        student.add_stride4_level(only=only)
    elif bool(student.stride4_only) != only:  # e.g. a bundle's student that pools other levels
        have = "the stride-4 map alone" if student.stride4_only else "the stride-4 map and the PAN"
        raise ConfigError(f"{option}: student={name} already pools {have}; give "
                          f"stride4_only={'true' if student.stride4_only else 'false'}")


def attach_pool_strides(student: Student, name: str, strides: list[int]) -> None:
    """`pool_strides=8`: a YOLO student pools regions from the head's maps of these strides only."""
    if not hasattr(student, "pool_levels"):
        raise ConfigError(f"pool_strides={','.join(map(str, strides))}: YOLO students only; {name} chooses its maps "
                          "with stride4 / stride4_only")
    student.pool_levels(strides)


def distill(config: DistillConfig, callback: Callable[[int, dict], None] | None = None) -> Path:
    """Stage 2 end to end: dataset + embedding store + PCA → run folder; returns `<run>/best`."""
    from mocha.data.dataset import load_dataset
    from mocha.distill.data import load_splits
    from mocha.distill.targets import open_pca

    cfg = rundir.resolved_config(config)
    if cfg.branch_light and not cfg.branch:  # checked here, before any work (the options alone parse)
        raise ConfigError("branch_light=true: needs an embedding branch to make light (branch=1 or more)")
    if cfg.stride4_only and cfg.branch:
        raise ConfigError(f"stride4_only=true: conflicts with branch={cfg.branch} (the branch only changes the PAN "
                          "maps, which would not be pooled)")
    cfg.check_inputs()
    spec = load_dataset(cfg.data)
    student = Student.load(cfg.student)
    if list(student.names) != list(spec.names):
        raise ConfigError(
            f"student={cfg.student}: student classes {student.names} differ from the dataset's {spec.names} "
            f"({cfg.data})"
        )
    if cfg.branch:
        attach_branch(student, cfg.branch, str(cfg.student), cfg.branch_light)
    if cfg.pool_strides:
        attach_pool_strides(student, str(cfg.student), cfg.pool_strides)
    if cfg.stride4 or cfg.stride4_only:
        attach_stride4(student, str(cfg.student), cfg.stride4_only)
    pca = open_pca(cfg.pca)
    train_data, val_data, notes = load_splits(cfg, spec, pca)
    return train(cfg, student, train_data, val_data, pca=pca, callback=callback, notes=notes)
