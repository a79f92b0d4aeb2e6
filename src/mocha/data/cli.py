"""`mocha data check | episodes | media`: validate a dataset, freeze episodes into a file, build the real one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

from mocha.core.commands import command
from mocha.core.config import Config, option
from mocha.errors import ConfigError

VERIFY = ("full", "header")


@dataclass(kw_only=True)
class CheckConfig(Config):
    """Validate a dataset and print a per-split summary.

    Exit 0 when clean; 2 with one message naming the bad file/line; with skip_bad=true, every problem is
    listed (one line each) and the exit code is 1 when anything was skipped.
    """

    data: Path = option(help="dataset YAML (ours or a paper one) or its folder", exists=True, positional=True)
    split: list[str] = option([], help="only these splits, comma-separated (default: all)")
    skip_bad: bool = option(False, help="report every bad item and continue (exit 1)")
    verify: str = option("full", help="image check: full (decode every pixel) | header (fast)", choices=VERIFY)


@dataclass(kw_only=True)
class EpisodesConfig(Config):
    """Freeze the episodes `load_episodes` gives (YAML source or seeded draw) into an episode JSON."""

    data: Path = option(help="dataset YAML or its folder", exists=True, positional=True)
    out: Path = option(help="episode JSON to write (our format, docs/formats.md)")
    shots: int = option(1, help="support images per instance", ge=1)
    n: int = option(100, help="number of episodes", ge=1)
    seed: int = option(0, help="seed of the draw (episode e uses seed + e)")
    split: str | None = option(None, help="instance-labelled split (default: the dataset's episode split)")


@dataclass(kw_only=True)
class MediaConfig(Config):
    """Build a real dataset (our YAML) from packaged photos and clips, NanoDet-g's detections as labels.

    Sources: the opencv-doc examples that scripts/fetch_media.sh puts under media= (photos, vtest.avi,
    Megamind.avi) and sample photos of installed packages (docs/real_data.md). Splits: base_train / base_val
    (coarse COCO-80 labels at conf=) and personal (pedestrians of vtest.avi tracked by ByteTrack, one instance
    per clean track), with 1- and 5-shot episode draws; media.json records every source's sha256.
    """

    out: Path = option(help="dataset folder to create (built in a temp folder, then renamed)", positional=True)
    media: Path = option(Path(".mocha-cache/media"), help="folder scripts/fetch_media.sh filled")
    conf: float = option(0.35, help="detector confidence a box needs to become a label", gt=0, lt=1)
    iou: float = option(0.6, help="class-wise NMS IoU of the detector", gt=0, le=1)
    imgsz: int = option(416, help="detector input size (NanoDet-g's own: 416)", gt=0, multiple_of=32)
    frame_step: int = option(10, help="base splits take every k-th frame of a clip", ge=1)
    split_frame: int = option(300, help="vtest.avi: frames before it feed the base splits, from it on the personal "
                                        "split", ge=0)
    min_track: int = option(60, help="clean frames a track needs to become an instance", ge=2)
    per_track: int = option(8, help="frames picked per instance (>= 6: a 5-shot episode keeps one query)", ge=6)
    val_fraction: float = option(0.2, help="share of photo groups and of each clip's base frames in base_val",
                                 gt=0, lt=1)
    seed: int = option(0, help="seed of the photo train/val split")
    episodes: int = option(100, help="episodes per shot count (1 and 5) in the YAML's seeded draws", ge=1)
    packages: bool = option(True, help="also use the sample photos of installed Python packages")
    threads: int = option(1, help="torch CPU threads (0 = torch default; 1 is fastest on a busy CPU)", ge=0)
    exist_ok: bool = option(False, help="replace out= when it exists")

    def validate(self) -> None:
        super().validate()
        if self.min_track < self.per_track:
            raise ConfigError(f"min_track={self.min_track}: must be >= per_track={self.per_track}")


@dataclass
class SplitSummary:
    """What `mocha data check` reports for one split."""

    split: str
    label_ids: str
    images: int
    boxes: int
    background: int  # images with an empty label file
    instances: int  # distinct instance ids present (0 for coarse-labelled splits)
    coarse: int  # distinct coarse classes present
    skipped: list[str]
    episodes: str  # e.g. "1-shot: 100, 5-shot: 100", "" when none


def check_dataset(
    data: Path, splits: list[str] | None = None, skip_bad: bool = False, verify: str = "full"
) -> list[SplitSummary]:
    """Read and validate each split (and its episode sources); DataError on the first problem unless skip_bad."""
    from mocha.data.dataset import load_dataset, load_episodes
    from mocha.data.records import SkipReport, read_split

    spec = load_dataset(data)
    out = []
    for name in splits or list(spec.splits):
        sp = spec.split(name)
        report = SkipReport()
        recs = read_split(spec, name, skip_bad=skip_bad, report=report, verify_images=verify == "full")
        coarse = np.concatenate([r.coarse for r in recs])
        inst = np.concatenate([r.instance for r in recs])
        eps = []
        for shots in sorted(spec.episodes.get(name, {})):
            _, episodes = load_episodes(spec, shots, n=10**9, split=name, records=recs)
            eps.append(f"{shots}-shot: {len(episodes)}")
        out.append(
            SplitSummary(
                split=name,
                label_ids=sp.label_ids,
                images=len(recs),
                boxes=int(len(coarse)),
                background=sum(1 for r in recs if len(r.boxes) == 0),
                instances=len(np.unique(inst[inst >= 0])),
                coarse=len(np.unique(coarse)),
                skipped=list(report.items),
                episodes=", ".join(eps),
            )
        )
    return out


def format_summary(rows: list[SplitSummary]) -> str:
    """A plain fixed-width table (one line per split)."""
    head = ["split", "labels", "images", "boxes", "empty", "instances", "coarse", "skipped", "episodes"]
    body = [
        [r.split, r.label_ids, r.images, r.boxes, r.background, r.instances, r.coarse, len(r.skipped)]
        + [r.episodes or "-"]
        for r in rows
    ]
    cells = [head, *[[str(c) for c in row] for row in body]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def run_check(cfg: CheckConfig) -> list[SplitSummary]:
    """`mocha data check`: print the summary; exit 1 when anything was skipped."""
    rows = check_dataset(cfg.data, cfg.split or None, skip_bad=cfg.skip_bad, verify=cfg.verify)
    for r in rows:
        for item in r.skipped:
            typer.echo(f"skipped [{r.split}] {item}")
    typer.echo(format_summary(rows))
    if any(r.skipped for r in rows):
        # not typer.Exit: click returns its code under standalone_mode=False and mocha.cli.main drops it
        raise SystemExit(1)
    return rows


def freeze_episodes(cfg: EpisodesConfig) -> Path:
    """`mocha data episodes`: write the episode file; returns its path."""
    from mocha.data.dataset import load_dataset, load_episodes
    from mocha.data.episodes import write_episode_file
    from mocha.data.records import read_split

    spec = load_dataset(cfg.data)
    name, eps = load_episodes(spec, cfg.shots, n=cfg.n, seed=cfg.seed, split=cfg.split)
    recs = read_split(spec, name)
    write_episode_file(cfg.out, name, cfg.shots, eps, recs, spec.splits[name].images)
    typer.echo(f"{cfg.out}: {len(eps)} {cfg.shots}-shot episodes of split {name!r}")
    return cfg.out


def run_media(cfg: MediaConfig) -> Path:
    """`mocha data media`: build the dataset, print its counts; returns the YAML's path."""
    import time

    from mocha.data.media import build_media, summary

    start = time.monotonic()
    path = build_media(cfg)
    typer.echo(summary(path.parent))
    typer.echo(f"{path} written in {time.monotonic() - start:.0f} s")
    return path


def register(app: typer.Typer) -> None:
    """Add the `data` sub-app."""
    data_app = typer.Typer(help="Datasets: validate YOLO-format data, freeze few-shot episodes, build the real set.",
                           no_args_is_help=True)
    command(data_app, "check", CheckConfig, run_check, words=("data", "check"))
    command(data_app, "episodes", EpisodesConfig, freeze_episodes, words=("data", "episodes"))
    command(data_app, "media", MediaConfig, run_media, words=("data", "media"))
    app.add_typer(data_app, name="data")
