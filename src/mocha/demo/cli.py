"""`mocha demo`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        size: str = typer.Option("small", help="world size: tiny | small | medium"),
        seed: int = typer.Option(0, help="world seed"),
        imgsz: int = typer.Option(256, help="input size"),
        pretrain_epochs: int = typer.Option(5, help="stage-1 epochs"),
        episodes: int = typer.Option(100, help="episodes per shot count"),
        shots: str = typer.Option("1,5", help="comma-separated shot counts"),
        out: Path = typer.Option(Path("runs/demo"), help="run folder"),
        fresh: bool = typer.Option(False, help="rerun every stage instead of reusing finished ones"),
    ) -> None:
        """The main job on the embedded default world; finished stages are reused (content-keyed)."""
        from mocha.demo.run import DemoConfig, run_demo

        run_demo(
            DemoConfig(size=size, seed=seed, imgsz=imgsz, pretrain_epochs=pretrain_epochs, episodes=episodes,
                       shots=[int(s) for s in shots.split(",")], out=out, fresh=fresh)
        )  # fmt: skip
        typer.echo(f"report: {out / 'report.md'}")
