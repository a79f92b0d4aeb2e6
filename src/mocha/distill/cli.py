"""`mocha distill` (options: `mocha.distill.config.DistillConfig`; runs `mocha.distill.train.distill`)."""

from __future__ import annotations

from pathlib import Path

import typer

from mocha.core.commands import command
from mocha.distill.config import DistillConfig


def run_distill(cfg: DistillConfig) -> Path:
    """`distill(cfg)`, printing the best bundle's path (rank 0 only under torchrun)."""
    from mocha.core.device import global_rank
    from mocha.distill.train import distill  # torch-heavy: imported when the verb runs

    best = distill(cfg)
    if global_rank() == 0:
        typer.echo(f"bundle: {best}")
    return best


def register(app: typer.Typer) -> None:
    command(app, "distill", DistillConfig, run_distill)
