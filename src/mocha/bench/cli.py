"""`mocha bench <name>` (options: `mocha.bench.core.BenchConfig`)."""

from __future__ import annotations

import typer

from mocha.bench.core import BenchConfig, bench
from mocha.core.commands import command


def register(app: typer.Typer) -> None:
    command(app, "bench", BenchConfig, bench)
