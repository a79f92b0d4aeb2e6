"""`mocha bench <name>`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        name: str = typer.Argument(..., help="translator | extract | episodes | prototypes | latency"),
        out: Path = typer.Option(Path("runs/bench"), help="folder for <name>.json"),
        quick: bool = typer.Option(False, help="fewer repetitions (for smoke tests)"),
    ) -> None:
        """Run a speed/memory benchmark; print a table and write runs/bench/<name>.json."""
        from mocha.bench.core import run_benchmark

        run_benchmark(name, out, quick=quick)
