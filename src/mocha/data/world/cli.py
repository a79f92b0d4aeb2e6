"""`mocha world generate | preview | probe | video` (options: the config dataclasses below)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from mocha.core.commands import command
from mocha.core.config import Config, option
from mocha.data.world.generate import SIZES, SPLITS
from mocha.data.world.textures import PHOTO_SETS
from mocha.data.world.video import SIZES as VIDEO_SIZES


@dataclass(kw_only=True)
class GenerateConfig(Config):
    """Generate the world: base train/val (coarse labels) and personal split with 1/5-shot episodes."""

    out: Path = option(help="output folder (must be empty or absent unless overwrite=true)")
    size: str = option("small", help="tiny (unit tests) | small (default demo) | medium", choices=list(SIZES))
    seed: int = option(0, help="same seed and size give byte-identical files")
    photos: str = option("default", help=f"texture/background photos: {' | '.join(PHOTO_SETS)} (docs/mochaworld.md: "
                         "default and heldout share no photo; wide = default + extra) or a comma list of photo names")
    splits: str = option("all", help="all | personal (only the personal split and its episodes: enough to "
                         "evaluate a trained student on it)", choices=list(SPLITS))
    overwrite: bool = option(False, help="replace a non-empty output folder")
    progress: bool = option(True, help="progress bar / lines")


@dataclass(kw_only=True)
class PreviewConfig(Config):
    """Write a contact-sheet PNG per split (images with boxes and names)."""

    data: Path = option(help="world folder or its mochaworld.yaml", exists=True, positional=True)
    out: Path | None = option(None, help="folder for the contact sheets (default: <world>/preview)")
    n: int = option(24, help="images per sheet", ge=1)


@dataclass(kw_only=True)
class ProbeConfig(Config):
    """Within-category nearest-prototype accuracy on GT crops: colour histogram vs ImageNet MobileNetV2."""

    data: Path = option(help="world folder or its mochaworld.yaml", exists=True, positional=True)
    shots: int = option(1, help="support crops per instance", ge=1)
    episodes: int = option(20, help="random episodes to average", ge=1)


@dataclass(kw_only=True)
class VideoConfig(Config):
    """Render video clips of the world's personal instances moving among look-alikes, with MOT ground truth."""

    out: Path = option(help="output folder (must be empty or absent unless overwrite=true)")
    size: str = option("small", help="tiny (unit tests) | small (benchmark)", choices=list(VIDEO_SIZES))
    seed: int = option(0, help="world seed: same seed and size give the same clips and instances")
    overwrite: bool = option(False, help="replace a non-empty output folder")
    progress: bool = option(True, help="progress bar / lines")


def generate(cfg: GenerateConfig) -> Path:
    from mocha.data.world.generate import generate_world

    out = generate_world(cfg.out, size=cfg.size, seed=cfg.seed, overwrite=cfg.overwrite, progress=cfg.progress,
                         photos=cfg.photos, splits=cfg.splits)
    typer.echo(str(out))
    return out


def preview(cfg: PreviewConfig) -> list[Path]:
    from mocha.data.world.preview import preview_world

    sheets = preview_world(cfg.data, cfg.out, n=cfg.n)
    for p in sheets:
        typer.echo(str(p))
    return sheets


def probe(cfg: ProbeConfig) -> dict[str, Any]:
    from mocha.data.world.probe import probe_world

    result = probe_world(cfg.data, shots=cfg.shots, episodes=cfg.episodes)
    for k, v in result.items():
        typer.echo(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    return result


def video(cfg: VideoConfig) -> Path:
    from mocha.data.world.video import generate_video

    out = generate_video(cfg.out, size=cfg.size, seed=cfg.seed, overwrite=cfg.overwrite, progress=cfg.progress)
    typer.echo(str(out))
    return out


def register(app: typer.Typer) -> None:
    """Add the `world` sub-app."""
    world = typer.Typer(help="mochaworld: the generated benchmark world (our embedded default dataset).",
                        no_args_is_help=True)
    command(world, "generate", GenerateConfig, generate, words=("world", "generate"))
    command(world, "preview", PreviewConfig, preview, words=("world", "preview"))
    command(world, "probe", ProbeConfig, probe, words=("world", "probe"))
    command(world, "video", VideoConfig, video, words=("world", "video"))
    app.add_typer(world, name="world")
