"""Stage 1: train the student on the coarse labels of one of our datasets (wraps ultralytics' trainer).

The run folder `runs/pretrain/<name>/` holds ultralytics' own outputs (weights/, results.csv, plots) plus
`student.safetensors` (our checkpoint) and `pretrain.json` (command, config, metrics, hash).
Splits labelled with instance ids are converted to coarse labels in the run folder first.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import yaml

from mocha.core.config import Config, option
from mocha.core.runs import run_dir as make_run_dir
from mocha.errors import ConfigError
from mocha.io import file_sha256, write_json, write_text


@dataclass(kw_only=True)
class PretrainConfig(Config):
    """Stage 1: train the YOLO student on the coarse labels of a dataset (ultralytics trainer).

    Writes <project>/<name>/student.safetensors (our checkpoint) and pretrain.json (config, metrics, sha256).
    """

    data: Path = option(help="dataset YAML (ours or a paper dataset)", exists=True)
    train_split: str = option("base_train", help="split to train on")
    val_split: str = option("base_val", help="split to validate on")
    model: str = option("yolov8n", help="architecture from scratch (mocha.models.detector.list_students(): yolov8n, "
                        "yolov8s, yolo11n; or an ultralytics model YAML), an ultralytics .pt, or a mocha .safetensors")
    epochs: int = option(30, help="training epochs", ge=1)
    imgsz: int = option(256, help="square input size", ge=32, multiple_of=32)
    batch: int = option(16, help="batch size", ge=1)
    workers: int = option(2, help="dataloader workers", ge=0)
    device: str = option("", help="'' = CUDA if present else cpu; '0,1' = ultralytics DDP on two GPUs")
    seed: int = option(0, help="random seed")
    threads: int = option(0, help="torch threads when training on the CPU (0 = one per core)", ge=0)
    patience: int = option(100, help="stop after this many epochs without improvement", ge=1)
    name: str = option("default", help="run name: <project>/<name>/")
    project: Path = option(Path("runs/pretrain"), help="parent folder of runs")
    exist_ok: bool = option(False, help="reuse <project>/<name>/ instead of <name>2, <name>3, ...")
    # any further ultralytics train() argument (Python only)
    extra: dict[str, Any] = option({}, help="further ultralytics train() arguments", cli=False)

    def validate(self) -> None:
        super().validate()
        if Path(self.model).suffix in (".pt", ".safetensors") and not Path(self.model).exists():
            raise ConfigError(f"model={self.model}: no such file (give weights you have, or an architecture name)")


def _coarse_split_dir(spec: Any, split: str, work: Path) -> Path:
    """Images dir ultralytics can read with coarse labels; converts an instance-labelled split."""
    from mocha.data.records import read_split

    sp = spec.splits[split]
    if sp.label_ids == "coarse":
        return Path(sp.images)
    out = work / split
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for rec in read_split(spec, split):
        link = out / "images" / Path(rec.image).name
        if not link.exists():
            os.symlink(Path(rec.image).resolve(), link)
        lines = [f"{int(c)} " + " ".join(f"{v:.6f}" for v in box) for c, box in zip(rec.coarse, rec.boxes, strict=True)]
        (out / "labels" / (Path(rec.image).stem + ".txt")).write_text("\n".join(lines) + ("\n" if lines else ""))
    return out / "images"


def ultralytics_data_yaml(spec: Any, cfg: PretrainConfig, run_dir: Path) -> Path:
    """Write the ultralytics data YAML (coarse names, train/val image dirs) into the run folder."""
    for split in (cfg.train_split, cfg.val_split):
        if split not in spec.splits:
            raise ConfigError(f"{spec.path}: no split {split!r} (has {', '.join(spec.splits)})")
    work = run_dir / "data"
    data = {
        "path": str(run_dir.resolve()),
        "train": str(_coarse_split_dir(spec, cfg.train_split, work).resolve()),
        "val": str(_coarse_split_dir(spec, cfg.val_split, work).resolve()),
        "names": dict(enumerate(spec.names)),
    }
    path = run_dir / "data.yaml"
    write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def _initial_weights(model: str, names: list[str], run_dir: Path) -> tuple[str, str | None]:
    """(model cfg for YOLO(), pretrained weights path or None)."""
    from mocha.models.detector import STUDENTS

    if model in STUDENTS:
        return f"{model}.yaml", None
    p = Path(model)
    if p.suffix in (".yaml", ".yml"):
        return model, None
    if not p.exists():
        from mocha.models.detector import Student

        Student.load(p)  # raises the "how to provide weights" error
    if p.suffix == ".pt":
        return str(p), None
    import torch

    from mocha.models.detector import Student

    student = Student.load(p)
    if student.names != list(names):
        raise ConfigError(f"{p}: student classes {student.names} differ from the dataset's {names}")
    pt = run_dir / "init.pt"
    torch.save({"model": student.model, "train_args": {}}, pt)
    return str(pt), None


def pretrain(cfg: PretrainConfig) -> Path:
    """Run stage 1; return the path of the trained `student.safetensors`."""
    from ultralytics import YOLO

    from mocha.data.dataset import load_dataset
    from mocha.models.detector import Student

    spec = load_dataset(cfg.data)
    run_dir = make_run_dir(cfg.project, cfg.name, exist_ok=cfg.exist_ok, mkdir=True)
    data_yaml = ultralytics_data_yaml(spec, cfg, run_dir)
    model_src, _ = _initial_weights(cfg.model, spec.names, run_dir)
    t0 = time.perf_counter()
    yolo = YOLO(model_src, task="detect")
    import torch

    device = cfg.device or ("0" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        # ultralytics trains on cpu_count() - 1 threads (one idle core of two) with its loader inline
        threads = cfg.threads or os.cpu_count() or 1
        yolo.add_callback("on_train_epoch_start", lambda trainer: torch.set_num_threads(threads))
    yolo.train(
        data=str(data_yaml),
        epochs=cfg.epochs,
        imgsz=cfg.imgsz,
        batch=cfg.batch,
        workers=cfg.workers,
        device=device,
        seed=cfg.seed,
        deterministic=True,
        project=str(Path(cfg.project).resolve()),
        name=f"{run_dir.name}/ultralytics",
        exist_ok=True,
        patience=cfg.patience,
        amp=device != "cpu",
        verbose=False,
        **cfg.extra,
    )
    seconds = time.perf_counter() - t0
    weights = run_dir / "ultralytics" / "weights"
    best = weights / "best.pt" if (weights / "best.pt").exists() else weights / "last.pt"
    student = Student.load(best)
    if student.names != spec.names:
        student = Student(student.model, spec.names, student.cfg)
    out = student.save(run_dir / "student.safetensors")
    results = getattr(getattr(yolo, "metrics", None), "results_dict", None) or {}
    metrics = {k: float(v) for k, v in results.items()}
    write_json(
        run_dir / "pretrain.json",
        {
            "config": {**cfg.to_dict(), "extra": cfg.extra},
            "metrics": metrics,
            "seconds": round(seconds, 1),
            "student": str(out),
            "sha256": file_sha256(out),
        },
    )
    return out


def run_pretrain(cfg: PretrainConfig) -> Path:
    """`mocha pretrain`: train and print the student's path."""
    out = pretrain(cfg)
    typer.echo(f"student: {out}")
    return out


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """Metrics recorded by a finished pretrain run."""
    return json.loads((Path(run_dir) / "pretrain.json").read_text())
