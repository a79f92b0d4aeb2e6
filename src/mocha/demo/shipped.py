"""The shipped stage-1 student of the default world (issue: stage 1 does not fit the demo's 15 minutes).

It was produced by our own `mocha pretrain` (command and metrics in `<name>.json` next to the weights, documented
in docs/shipped_student.md); both travel inside the package (`src/mocha/assets/students/`, found through
`mocha.resources`). The demo verifies its sha256 before use; `mocha demo --fresh`
retrains it from scratch instead. Nothing else is shipped pre-computed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from mocha.errors import ConfigError
from mocha.io import file_sha256
from mocha.resources import students_dir


@dataclass
class ShippedStudent:
    path: Path
    sha256: str
    command: str
    metrics: dict[str, Any]
    world_yaml_sha256: str = ""


def _meta_path(size: str, seed: int, imgsz: int, epochs: int, assets: Path | None) -> Path:
    assets = students_dir() if assets is None else Path(assets)
    return assets / f"student-{size}-s{seed}-{imgsz}px-{epochs}ep.json"


class Leg(NamedTuple):
    """One `mocha pretrain` run of a stage-1 chain: its epochs, on the world of this size and seed drawn from the
    `photos` set (`mocha.data.world.textures.PHOTO_SETS`)."""

    epochs: int
    photos: str = "default"


def stage1_legs(size: str, seed: int, imgsz: int, epochs: int, assets: Path | None = None) -> list[Leg]:
    """The `mocha pretrain` runs that make the `epochs`-epoch student, each continuing the one before: one leg
    from scratch, unless the shipped student of that length was trained on from a shorter one (its `.json`
    says `"continues": <epochs>`, and `"photos": <set>` when that last leg's world drew other photos than the
    default set), as `mocha demo --fresh` must then do too."""
    meta_path = _meta_path(size, seed, imgsz, epochs, assets)
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    before, photos = meta.get("continues"), meta.get("photos", "default")
    if not before:
        return [Leg(epochs, photos)]
    if not 0 < int(before) < epochs:
        raise ConfigError(f"{meta_path}: continues={before} must be below its own {epochs} epochs")
    return stage1_legs(size, seed, imgsz, int(before), assets) + [Leg(epochs - int(before), photos)]


def shipped_student(size: str, seed: int, imgsz: int, epochs: int, assets: Path | None = None) -> ShippedStudent | None:
    """The shipped student for this (world size, seed, imgsz, epochs), hash-verified; None when none is shipped.

    `assets` is the folder to look in (default: the package's shipped students).
    """
    meta_path = _meta_path(size, seed, imgsz, epochs, assets)
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    path = meta_path.with_suffix(".safetensors")
    if not path.is_file():
        raise ConfigError(f"{path}: the shipped student is missing (see {meta_path}); run `mocha demo --fresh` "
                          "to retrain it")
    digest = file_sha256(path)
    if digest != meta["sha256"]:
        raise ConfigError(f"{path}: sha256 {digest[:16]}… differs from the recorded {meta['sha256'][:16]}… "
                          f"({meta_path}); the file is corrupt or was changed — restore it or run `mocha demo --fresh`")
    return ShippedStudent(path, digest, meta["command"], meta.get("metrics", {}),
                          meta.get("world", {}).get("yaml_sha256", ""))
