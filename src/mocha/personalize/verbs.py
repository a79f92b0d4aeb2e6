"""`mocha enroll` and `mocha gallery list|remove|tune` as config dataclasses + functions.

`enroll(EnrollConfig(gallery=..., name=..., source=[...]))` is `mocha enroll gallery=... name=... source=...`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mocha.core.config import Config, option
from mocha.errors import ConfigError
from mocha.personalize.matching import DEFAULT_SUPPORT_SCALE, coarse_penalty_option
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
    support_scale: float = option(DEFAULT_SUPPORT_SCALE, help="a box longer than this fraction of the input side "
                                  "(a close-up) is embedded zoomed out to it; 0 = as given", ge=0, le=1)
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
    with Personalizer.load(cfg.bundle, cfg.gallery, device=cfg.device or None, enroll_conf=cfg.conf,
                           support_scale=cfg.support_scale) as p:
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


@dataclass(kw_only=True)
class OpenSetConfig(Config):
    """False-accept and false-reject rates on a dataset's episodes: each episode enrols part of the instances
    from their supports; the others are impostors (another person, another box). Prints the rates over
    thresholds, the equal-error threshold and the rates at min_similarity (default: the bundle's)."""

    data: Path = option(help="dataset YAML with an instance-labelled split", exists=True)
    bundle: Path = option(Path("coco"), help="bundle folder, or a shipped bundle by name (coco)",
                          exists=SHIPPED_BUNDLES)
    shots: int = option(1, help="support images per enrolled instance", ge=1)
    episodes: int = option(20, help="episodes", ge=1)
    seed: int = option(0, help="episode seed (also which instances are enrolled)")
    enrol_fraction: float = option(0.5, help="fraction of the instances enrolled per episode", gt=0, lt=1)
    conf: float = option(0.1, help="detector confidence for query boxes (SPEC protocol)", ge=0, le=1)
    min_similarity: float | None = option(None, help="the operating point to report", ge=-1, le=1,
                                          default_text="the bundle's, else 0.0")
    coarse_penalty: float | None = coarse_penalty_option()
    one_box: bool = option(True, help="each instance names at most one box per image, as detect does (false: "
                                      "every box on its own)")
    out: Path | None = option(None, help="also write the table and trials' summary to this JSON")
    device: str = option("", help="'' = CUDA if present else cpu")
    progress: bool = option(True, help="progress bar (a line every few seconds when not on a terminal)")


def open_set(cfg: OpenSetConfig) -> dict[str, Any]:
    """`mocha gallery openset` as a function; returns the rates (table, equal-error point, at the threshold)."""
    from mocha.io import write_json
    from mocha.personalize.openset import equal_error_threshold, open_set_trials, rate_table, rates_at
    from mocha.personalize.personalizer import Personalizer

    # the Personalizer's own precedence (option > the bundle's default > the library's) on an in-memory gallery
    with Personalizer.load(cfg.bundle, device=cfg.device or None, min_similarity=cfg.min_similarity,
                           coarse_penalty=cfg.coarse_penalty) as p:
        engine, penalty, threshold = p.engine, p.coarse_penalty, p.min_similarity
    trials = open_set_trials(engine, cfg.data, shots=cfg.shots, episodes=cfg.episodes, seed=cfg.seed,
                             enrol_fraction=cfg.enrol_fraction, conf=cfg.conf, coarse_penalty=float(penalty),
                             one_box=cfg.one_box, progress=cfg.progress)
    out = {"data": str(cfg.data), "bundle": str(cfg.bundle), "split": trials["split"], "shots": cfg.shots,
           "episodes": trials["episodes"], "enrol_fraction": cfg.enrol_fraction, "coarse_penalty": float(penalty),
           "one_box": cfg.one_box, "missed": trials["missed"], "table": rate_table(trials),
           "equal_error": equal_error_threshold(trials), "at_default": rates_at(trials, float(threshold))}
    for row in out["table"]:
        print(f"min_similarity {row['min_similarity']:+.2f}  FAR {row['far']:.3f}  FRR {row['frr']:.3f}")
    eer, at = out["equal_error"], out["at_default"]
    print(f"{at['genuine']} genuine and {at['impostor']} impostor trials ({out['missed']} boxes missed by the "
          f"detector); equal error at min_similarity {eer['min_similarity']:+.2f} (FAR {eer['far']:.3f}, FRR "
          f"{eer['frr']:.3f}); at {threshold:+.2f}: FAR {at['far']:.3f}, FRR {at['frr']:.3f}")
    if cfg.out is not None:
        write_json(cfg.out, out)
    return out
