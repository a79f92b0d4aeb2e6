"""`mocha demo` (options: `mocha.demo.config.DemoConfig`; runs `mocha.demo.run.run_demo`)."""

from __future__ import annotations

from typing import Any

import typer

from mocha.core.commands import command
from mocha.demo.config import DemoConfig


def _run_demo(cfg: DemoConfig) -> dict[str, Any]:
    from mocha.demo.run import run_demo  # the stages import torch-heavy modules when they run

    return run_demo(cfg)


def register(app: typer.Typer) -> None:
    command(app, "demo", DemoConfig, _run_demo)
