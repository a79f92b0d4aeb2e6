"""`mocha data check | episodes`: validate a dataset, freeze episodes into a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

from mocha.errors import ConfigError

VERIFY = ("full", "header")


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

    if verify not in VERIFY:
        raise ConfigError(f"--verify: expected one of {', '.join(VERIFY)}, got {verify!r}")
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


def register(app: typer.Typer) -> None:
    """Add the `data` sub-app."""
    data_app = typer.Typer(help="Datasets: validate YOLO-format data, freeze few-shot episodes.", no_args_is_help=True)

    @data_app.command("check")
    def check(
        data_arg: Path = typer.Argument(None, metavar="DATA", help="Dataset YAML (ours or a paper one) or its folder."),
        data: Path = typer.Option(None, "--data", help="Same as DATA (for data=... style)."),
        split: list[str] = typer.Option(None, "--split", help="Only these splits (repeatable); default all."),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="Report every bad item and continue (exit 1)."),
        verify: str = typer.Option("full", help="Image check: full (decode every pixel) | header (fast)."),
    ) -> None:
        """Validate a dataset and print a per-split summary.

        Exit 0 when clean; 2 with one message naming the bad file/line; with --skip-bad, every problem is
        listed (one line each) and the exit code is 1 when anything was skipped.
        """
        path = data_arg or data
        if path is None:
            raise ConfigError("mocha data check: give the dataset YAML (DATA or --data)")
        rows = check_dataset(path, split or None, skip_bad=skip_bad, verify=verify)
        for r in rows:
            for item in r.skipped:
                typer.echo(f"skipped [{r.split}] {item}")
        typer.echo(format_summary(rows))
        if any(r.skipped for r in rows):
            # not typer.Exit: click returns its code under standalone_mode=False and mocha.cli.main drops it
            raise SystemExit(1)

    @data_app.command("episodes")
    def episodes(
        data_arg: Path = typer.Argument(None, metavar="DATA", help="Dataset YAML or its folder."),
        data: Path = typer.Option(None, "--data", help="Same as DATA."),
        shots: int = typer.Option(1, help="Support images per instance."),
        n: int = typer.Option(100, help="Number of episodes."),
        seed: int = typer.Option(0, help="Seed of the draw (episode e uses seed + e)."),
        split: str = typer.Option(None, help="Instance-labelled split (default: the dataset's episode split)."),
        out: Path = typer.Option(..., help="Episode JSON to write (our format, docs/formats.md)."),
    ) -> None:
        """Freeze the episodes `load_episodes` gives (YAML source or seeded draw) into an episode JSON."""
        from mocha.data.dataset import load_dataset, load_episodes
        from mocha.data.episodes import write_episode_file
        from mocha.data.records import read_split

        path = data_arg or data
        if path is None:
            raise ConfigError("mocha data episodes: give the dataset YAML (DATA or --data)")
        spec = load_dataset(path)
        name, eps = load_episodes(spec, shots, n=n, seed=seed, split=split)
        recs = read_split(spec, name)
        write_episode_file(out, name, shots, eps, recs, spec.splits[name].images)
        typer.echo(f"{out}: {len(eps)} {shots}-shot episodes of split {name!r}")

    app.add_typer(data_app, name="data")
