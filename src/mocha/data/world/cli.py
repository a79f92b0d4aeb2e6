"""`mocha world generate | preview | probe`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `world` sub-app."""
    world = typer.Typer(help="mochaworld: the generated benchmark world (our embedded default dataset).",
                        no_args_is_help=True)

    @world.command("generate")
    def generate(
        out: Path = typer.Option(..., help="Output folder (must be empty or absent unless --overwrite)."),
        size: str = typer.Option("small", help="tiny (unit tests) | small (default demo) | medium."),
        seed: int = typer.Option(0, help="Seed: same seed and size give byte-identical files."),
        overwrite: bool = typer.Option(False, help="Replace a non-empty output folder."),
    ) -> None:
        """Generate the world: base train/val (coarse labels) and personal split with 1/5-shot episodes."""
        from mocha.data.world.generate import generate_world

        typer.echo(str(generate_world(out, size=size, seed=seed, overwrite=overwrite)))

    @world.command("preview")
    def preview(
        data: Path = typer.Argument(..., help="World folder or its mochaworld.yaml."),
        out: Path = typer.Option(None, help="Folder for the contact sheets (default: <world>/preview)."),
        n: int = typer.Option(24, help="Images per sheet."),
    ) -> None:
        """Write a contact-sheet PNG per split (images with boxes and names)."""
        from mocha.data.world.preview import preview_world

        for p in preview_world(data, out, n=n):
            typer.echo(str(p))

    @world.command("probe")
    def probe(
        data: Path = typer.Argument(..., help="World folder or its mochaworld.yaml."),
        shots: int = typer.Option(1, help="Support crops per instance."),
        episodes: int = typer.Option(20, help="Random episodes to average."),
    ) -> None:
        """Within-category nearest-prototype accuracy on GT crops: colour histogram vs ImageNet MobileNetV2."""
        from mocha.data.world.probe import probe_world

        for k, v in probe_world(data, shots=shots, episodes=episodes).items():
            typer.echo(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")

    app.add_typer(world, name="world")
