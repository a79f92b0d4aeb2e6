"""`mocha enroll` and `mocha gallery list|remove|tune` as config dataclasses + functions.

`enroll(EnrollConfig(gallery=..., name=..., source=[...]))` is `mocha enroll gallery=... name=... source=...`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mocha.core.config import Config, option
from mocha.errors import ConfigError
from mocha.resources import SHIPPED_BUNDLES


@dataclass(kw_only=True)
class EnrollConfig(Config):
    """Enroll a personal instance from a few images; nothing is retrained.

    Example: mocha enroll gallery=me.gallery name="my mug" source=a.jpg,b.jpg box="10,20,200,220;-"
    (a new gallery uses the shipped `coco` bundle unless bundle=<folder> is given)
    """

    gallery: Path = option(help="gallery file (SQLite); created when missing, tied to the bundle")
    name: str = option(help="instance name, e.g. 'my mug'")
    source: list[str] = option(help="comma-separated image paths (several shots of the instance)")
    box: str | None = option(None, help="x1,y1,x2,y2 in original pixels, one per source separated by ';' "
                             "('-' = the detector's best box)", default_text="the detector's best box")
    coarse: str | None = option(None, help="coarse class name or id", default_text="from the detector")
    bundle: Path | None = option(None, help="bundle folder or a shipped bundle by name (coco) for a new gallery",
                                 exists=SHIPPED_BUNDLES, default_text="the gallery's; coco for a new one")
    append: bool = option(False, help="add shots to an already enrolled instance")
    conf: float = option(0.05, help="detector confidence for choosing/classifying boxes", ge=0, le=1)
    device: str = option("", help="'' = CUDA if present else cpu")

    def validate(self) -> None:
        super().validate()
        if not self.source:
            raise ConfigError("source: no image paths given")



def enroll(cfg: EnrollConfig) -> Any:
    """`mocha enroll` as a function; prints what was enrolled and returns the EnrollReport."""
    from mocha.personalize.boxes import parse_boxes
    from mocha.personalize.personalizer import Personalizer

    boxes = parse_boxes(cfg.box, len(cfg.source))
    with Personalizer.load(cfg.bundle, cfg.gallery, device=cfg.device or None, enroll_conf=cfg.conf) as p:
        report = p.enroll(cfg.name, cfg.source, boxes=boxes, coarse=cfg.coarse, append=cfg.append)
        print("\n".join(report.lines()))
        print(f"{cfg.gallery}: {len(p.gallery)} instance(s)")
    return report


@dataclass(kw_only=True)
class GalleryListConfig(Config):
    """List enrolled instances and the bundle the gallery is tied to."""

    gallery: Path = option(help="gallery file", exists=True)


def gallery_list(cfg: GalleryListConfig) -> list[dict[str, Any]]:
    """Print the instance table; returns its rows (`InstanceRecord.summary()`)."""
    from rich.console import Console
    from rich.table import Table

    from mocha.personalize.gallery import Gallery

    with Gallery(cfg.gallery) as g:
        rows = [r.summary() for r in g.instances()]
        title = f"{cfg.gallery} — bundle {g.bundle_digest} ({g.bundle_path or '?'})"
    table = Table(title=title)
    cols = ("id", "name", "coarse", "shots", "created", "updated")
    for col in cols:
        table.add_column(col)
    for r in rows:
        table.add_row(*[str(r[c]) for c in cols])
    Console().print(table)
    return rows


@dataclass(kw_only=True)
class GalleryRemoveConfig(Config):
    """Remove an enrolled instance (error if unknown); nothing is retrained."""

    gallery: Path = option(help="gallery file", exists=True)
    name: str = option(help="instance to remove")


def gallery_remove(cfg: GalleryRemoveConfig) -> int:
    """Remove the instance; returns how many are left."""
    from mocha.personalize.gallery import Gallery

    with Gallery(cfg.gallery) as g:
        g.remove(cfg.name)
        left = len(g)
    print(f"removed {cfg.name!r}; {left} instance(s) left")
    return left


@dataclass(kw_only=True)
class GalleryTuneConfig(Config):
    """Choose coarse_penalty and min_similarity (max strict mAP) and fit the score calibration on a dataset's
    episodes; store them in the gallery (detect, track and serve then use them)."""

    gallery: Path = option(help="gallery file (its bundle is used)", exists=True)
    data: Path = option(help="dataset YAML with episodes, e.g. mochaworld small", exists=True)
    shots: int = option(1, help="support images per instance", ge=1)
    episodes: int = option(20, help="episodes to tune on", ge=1)
    seed: int = option(0, help="episode seed")
    conf: float = option(0.1, help="detector confidence for query boxes (SPEC protocol)", ge=0, le=1)
    device: str = option("", help="'' = CUDA if present else cpu")
    progress: bool = option(True, help="progress bar (a line every few seconds when not on a terminal)")


def gallery_tune(cfg: GalleryTuneConfig) -> dict[str, Any]:
    """Tune, store `coarse_penalty`, `min_similarity`, `calibration` and `tuned_on` in the gallery; returns the
    tuning result."""
    from mocha.personalize.engine import load_engine
    from mocha.personalize.gallery import Gallery
    from mocha.personalize.tuning import tune_on_dataset

    with Gallery(cfg.gallery) as g:
        if not g.bundle_path:
            raise ConfigError(f"gallery={cfg.gallery}: gallery records no bundle path")
        engine = load_engine(g.bundle_path, device=cfg.device or None)
        g.check_bundle(engine.digest, g.bundle_path)
        out = tune_on_dataset(engine, cfg.data, shots=cfg.shots, episodes=cfg.episodes, seed=cfg.seed, conf=cfg.conf,
                              progress=cfg.progress)
        g.set_setting("coarse_penalty", out["coarse_penalty"])
        g.set_setting("min_similarity", out["min_similarity"])
        g.set_setting("calibration", out["calibration"])
        g.set_setting("tuned_on", {k: out[k] for k in ("data", "split", "shots", "episodes", "seed", "conf")})
    for row in out["penalties"]:
        print(f"coarse_penalty {row['coarse_penalty']:<4}  best min_similarity {row['min_similarity']:+.2f}  "
              f"strict mAP {row['strict_map']:.4f}")
    for row in out["table"]:
        print(f"min_similarity {row['min_similarity']:+.2f}  strict mAP {row['strict_map']:.4f}")
    print(f"chosen coarse_penalty {out['coarse_penalty']}, min_similarity {out['min_similarity']:+.2f} (strict mAP "
          f"{out['strict_map']:.4f}), calibration {out['calibration']} → stored in {cfg.gallery}")
    return out
