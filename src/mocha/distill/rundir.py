"""The stage-2 run folder `<project>/<name>/`: which folder, resume, config.json and the per-epoch logs.

Policy (`mocha.core.runs.run_dir`): a new name is used as is; an existing one gives the next free `<name>2`,
`<name>3`, ... unless `exist_ok` (start over in it: the previous run's files are removed) or `resume`
(continue it exactly, with the settings its config.json recorded). Under torchrun rank 0 decides the folder
and every rank receives its path, so all ranks write to the same run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from mocha.core.device import Dist
from mocha.core.runs import run_dir
from mocha.distill.config import RUNTIME_FIELDS, DistillConfig
from mocha.errors import ConfigError
from mocha.io import write_json, write_text

log = logging.getLogger(__name__)

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SKIPPED = "skipped.log"
# what a run writes; exist_ok removes these before starting over (nothing else in the folder is touched)
RUN_FILES = (CONFIG, METRICS, SKIPPED, "latest", "best", "tb")


def named_run(cfg: DistillConfig) -> Path:
    """`<project>/<name>` exactly (the folder `resume` continues)."""
    return Path(cfg.project) / cfg.name


def check_resumable(cfg: DistillConfig) -> Path:
    """The run `resume=true` continues (ConfigError when it has no `latest/` checkpoint)."""
    run = named_run(cfg)
    if not (run / "latest" / "bundle.json").exists():
        raise ConfigError(f"resume=true: {run}/latest is not a bundle; nothing to resume")
    return run


def resolved_config(cfg: DistillConfig) -> DistillConfig:
    """On resume, the run's saved settings with this call's runtime options (and its project/name)."""
    if not cfg.resume:
        return cfg
    path = check_resumable(cfg) / CONFIG
    if not path.exists():
        return cfg
    saved_json = json.loads(path.read_text())
    _warn_overridden(cfg, saved_json)
    keep = {k: getattr(cfg, k) for k in RUNTIME_FIELDS} | {"project": cfg.project, "name": cfg.name}
    return DistillConfig.from_json({**saved_json, **keep})


def _warn_overridden(cfg: DistillConfig, saved: dict[str, Any]) -> None:
    """Options set in this call that the resumed run's own settings replace."""
    defaults = {f.name: f.default for f in dataclasses.fields(DistillConfig)}
    given = {k: v for k, v in cfg.to_dict().items()
             if k not in RUNTIME_FIELDS and k not in cfg.from_recipe and v != _json(defaults.get(k))}
    diffs = sorted(k for k, v in given.items() if k in saved and saved[k] != v and k not in ("project", "name"))
    if diffs:
        log.warning("resume: using the run's saved settings for %s", ", ".join(diffs))


def _json(v: Any) -> Any:
    return str(v) if isinstance(v, Path) else v


def prepare_run(cfg: DistillConfig, dist: Dist) -> Path:
    """The run folder of `cfg` (created by rank 0; the same path on every rank)."""
    if cfg.resume:
        return check_resumable(cfg)
    path = None
    if dist.is_main:
        run = run_dir(cfg.project, cfg.name, exist_ok=cfg.exist_ok)
        if run.exists():  # exist_ok: start over
            for stale in RUN_FILES:
                p = run / stale
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        run.mkdir(parents=True, exist_ok=True)
        path = str(run)
    return Path(dist.broadcast_object(path))


def write_config(run: Path, cfg: DistillConfig, world: int, notes: dict[str, Any]) -> None:
    """config.json: every option (recipe values resolved) plus the world size and data notes."""
    write_json(run / CONFIG, {**cfg.to_dict(), "world_size": world, **notes})


def append_metrics(run: Path, row: dict[str, Any]) -> None:
    with open(run / METRICS, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def read_metrics(run: Path) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl, one per finished epoch."""
    path = Path(run) / METRICS
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def trim_metrics(run: Path, last_epoch: int) -> None:
    """Drop rows after `last_epoch` (an interrupted run may have logged an epoch its checkpoint lacks)."""
    if (run / METRICS).exists():
        keep = [r for r in read_metrics(run) if r["epoch"] <= last_epoch]
        write_text(run / METRICS, "".join(json.dumps(r) + "\n" for r in keep))


def log_skip(run: Path, msg: str) -> None:
    with open(run / SKIPPED, "a") as fh:
        fh.write(msg + "\n")
