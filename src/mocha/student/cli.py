"""`mocha pretrain` (stage 1; options: `mocha.student.pretrain.PretrainConfig`)."""

from __future__ import annotations

import typer

from mocha.core.commands import command
from mocha.student.pretrain import PretrainConfig, run_pretrain


def register(app: typer.Typer) -> None:
    command(app, "pretrain", PretrainConfig, run_pretrain)
