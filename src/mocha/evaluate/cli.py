"""`mocha evaluate`: the episodic few-shot benchmark (options: `mocha.evaluate.config.EvalConfig`)."""

from __future__ import annotations

from typing import Any

import typer

from mocha.core.commands import command
from mocha.evaluate.config import EvalConfig


def run_evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """`mocha evaluate`: run, print the table and the run folder; returns the report."""
    from mocha.evaluate.episodic import evaluate
    from mocha.evaluate.report import markdown

    report = evaluate(cfg)
    typer.echo(markdown(report))
    typer.echo(f"run folder: {report['run_dir']}")
    return report


def register(app: typer.Typer) -> None:
    command(app, "evaluate", EvalConfig, run_evaluate)
