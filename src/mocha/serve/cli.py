"""`mocha serve` (options: `mocha.serve.verb.ServeConfig`)."""

from __future__ import annotations

import typer

from mocha.core.commands import command
from mocha.serve.verb import ServeConfig, serve


def register(app: typer.Typer) -> None:
    command(app, "serve", ServeConfig, serve)
