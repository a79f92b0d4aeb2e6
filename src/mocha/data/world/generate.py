"""`generate_world`: write the mochaworld dataset (our YAML schema) deterministically from a seed."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from mocha.data.world import render, shapes, textures
from mocha.errors import ConfigError
from mocha.io import atomic_dir

YAML_NAME = "mochaworld.yaml"
SPLITS = ("all", "personal")


@dataclass(frozen=True)
class WorldSize:
    imgsz: int
    categories: int
    base_per_cat: int
    base_train: int
    base_val: int
    personal_per_cat: int
    images_per_personal: int
    episodes: int = 100


SIZES = {
    "tiny": WorldSize(112, 4, 2, 12, 4, 2, 6, 10),
    "small": WorldSize(256, 8, 20, 700, 100, 3, 12),
    "medium": WorldSize(320, 8, 40, 2000, 300, 5, 20),
}


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _save(img: np.ndarray, path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    path.write_bytes(buf.getvalue())


def _scene(insts: list[render.Instance], bg_rng: np.random.Generator, cfg: WorldSize,
           photo_names: tuple[str, ...] = textures.PHOTO_NAMES
           ) -> tuple[np.ndarray, list[tuple[render.Instance, tuple[float, float, float, float]]]]:
    size = cfg.imgsz
    bg = render.background(bg_rng, size, photo_names)
    hi = {1: 0.6, 2: 0.5, 3: 0.45}.get(len(insts), 0.4)
    views = [render.view(i, bg_rng, int(size * float(bg_rng.uniform(0.25, hi)))) for i in insts]
    img, boxes = render.compose(bg, views, bg_rng, occluder=bool(bg_rng.random() < 0.3))
    return img, [(i, b) for i, b in zip(insts, boxes, strict=True) if b is not None]


def _write_split(out: Path, rel: str, scenes: list[tuple[str, np.ndarray, list[tuple[int, tuple]]]]) -> None:
    (out / rel / "images").mkdir(parents=True)
    (out / rel / "labels").mkdir(parents=True)
    for name, img, labels in scenes:
        _save(img, out / rel / "images" / name)
        lines = [f"{c} {b[0]:.6f} {b[1]:.6f} {b[2]:.6f} {b[3]:.6f}" for c, b in labels]
        (out / rel / "labels" / (Path(name).stem + ".txt")).write_text("\n".join(lines) + "\n")


def _episodes(contains: dict[int, list[str]], files: list[str], shots: int, n: int, seed: int) -> dict:
    eps = []
    for e in range(n):
        rng = _rng(seed, 7, shots, e)
        used: set[str] = set()
        support: dict[str, list[str]] = {}
        for iid in sorted(contains):
            # Draw from the instance's own (primary) images first so look-alikes never starve each other.
            own = [f for f in contains[iid] if f not in used and f.startswith(f"p{iid:04d}_")]
            rest = [f for f in contains[iid] if f not in used and f not in own]
            pick = rng.choice(own, size=min(shots, len(own)), replace=False).tolist()
            if len(pick) < shots and rest:
                pick += rng.choice(rest, size=min(shots - len(pick), len(rest)), replace=False).tolist()
            pick = sorted(pick)
            support[str(iid)] = pick
            used.update(pick)
        eps.append({"support": support, "query": [f for f in files if f not in used]})
    return {"split": "personal", "shots": shots, "episodes": eps}


def make_instances(cfg: WorldSize, seed: int, base: bool = True,
                   photo_names: tuple[str, ...] = textures.PHOTO_NAMES) -> list[render.Instance]:
    """The world's instances in id order (base, then personal); each id has its own rng, so `base=False`
    gives the same personal instances without rendering the base ones (the video world and a personal-only
    world reuse them)."""
    cats = list(shapes.CATEGORIES[: cfg.categories])
    insts: list[render.Instance] = []
    for c, cat in enumerate(cats):
        for j in range(cfg.base_per_cat):
            iid = c * cfg.base_per_cat + j
            if base:
                insts.append(render.make_instance(iid, f"{cat}-{j:02d}", c, "base", _rng(seed, 1, iid),
                                                  photo_names=photo_names))
    for c, cat in enumerate(cats):
        # Personal instances of a category share one palette, so colour alone cannot tell them apart.
        pal = 2 * int(_rng(seed, 5, c).integers(3))
        for j in range(cfg.personal_per_cat):
            iid = cfg.categories * cfg.base_per_cat + c * cfg.personal_per_cat + j
            insts.append(render.make_instance(iid, f"my-{cat}-{j}", c, "personal", _rng(seed, 1, iid), pal,
                                              photo_names))
    return insts


def _build(out: Path, cfg: WorldSize, seed: int, progress: bool, photo_names: tuple[str, ...] = textures.PHOTO_NAMES,
           base_splits: bool = True) -> None:
    from mocha.core.progress import progress as progress_bar

    cats = list(shapes.CATEGORIES[: cfg.categories])
    insts = make_instances(cfg, seed, base=base_splits, photo_names=photo_names)
    base = [i for i in insts if i.split == "base"]
    personal = [i for i in insts if i.split == "personal"]
    total = (cfg.base_train + cfg.base_val) * base_splits + len(personal) * cfg.images_per_personal
    bar = progress_bar(total=total, desc="mochaworld", enable=progress, unit="img")

    for split, n, key in (("train", cfg.base_train, 2), ("val", cfg.base_val, 3)) if base_splits else ():
        scenes, sidecar = [], {}
        for k in range(n):
            rng = _rng(seed, key, k)
            picks = [base[int(i)] for i in rng.choice(len(base), size=int(rng.integers(1, 5)), replace=False)]
            img, objs = _scene(picks, rng, cfg, photo_names)
            name = f"{split}_{k:05d}.jpg"
            scenes.append((name, img, [(i.coarse, b) for i, b in objs]))
            sidecar[name] = [i.id for i, _ in objs]
            bar.update()
        _write_split(out, f"base/{split}", scenes)
        (out / "base" / split / "instances.json").write_text(json.dumps(sidecar, indent=0) + "\n")

    scenes, contains = [], {i.id: [] for i in personal}
    by_cat = {c: [i for i in personal if i.coarse == c] for c in range(len(cats))}
    for p, inst in enumerate(personal):
        for k in range(cfg.images_per_personal):
            rng = _rng(seed, 4, p, k)
            others = [i for i in personal if i.id != inst.id]
            picks = [inst]
            for _ in range(int(rng.integers(0, 4))):  # look-alikes of the same category are favoured
                mates = [i for i in by_cat[inst.coarse] if i not in picks]
                pool = mates if (mates and rng.random() < 0.6) else [i for i in others if i not in picks]
                picks.append(pool[int(rng.integers(len(pool)))])
            order = rng.permutation(len(picks))
            img, objs = _scene([picks[int(o)] for o in order], rng, cfg, photo_names)
            if inst.id not in [i.id for i, _ in objs]:  # the primary instance must be visible: render it alone
                img, objs = _scene([inst], rng, cfg, photo_names)
            name = f"p{inst.id:04d}_{k:03d}.jpg"
            scenes.append((name, img, [(i.id, b) for i, b in objs]))
            for i, _ in objs:
                contains[i.id].append(name)
            bar.update()
    bar.close()
    _write_split(out, "personal", scenes)
    files = [s[0] for s in scenes]
    for shots in (1, 5):
        eps = _episodes(contains, files, shots, cfg.episodes, seed)
        (out / "personal" / f"episodes_{shots}shot.json").write_text(json.dumps(eps) + "\n")
    doc = {
        "format": "mocha-dataset/1",
        "root": ".",
        "names": cats,
        "instances": {i.id: {"name": i.name, "coarse": i.coarse, "split": i.split} for i in insts},
        "splits": {
            "base_train": {"images": "base/train/images", "label_ids": "coarse"},
            "base_val": {"images": "base/val/images", "label_ids": "coarse"},
            "personal": {"images": "personal/images", "label_ids": "instance"},
        },
        "episodes": {"personal": {"1": "personal/episodes_1shot.json", "5": "personal/episodes_5shot.json"}},
        "world": {"generator": "mochaworld/1", "seed": seed, "imgsz": cfg.imgsz},
    }
    if not base_splits:
        del doc["splits"]["base_train"], doc["splits"]["base_val"]
    if photo_names != textures.PHOTO_NAMES:  # absent = the default set, so the default world's YAML stays as it was
        doc["world"]["photos"] = list(photo_names)
    (out / YAML_NAME).write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


def generate_world(out: str | Path, size: str = "small", seed: int = 0, overwrite: bool = False,
                   progress: bool = True, photos: str | tuple[str, ...] = "default", splits: str = "all") -> Path:
    """Generate the world into `out` (atomically); return the path of its YAML.

    `photos`: the texture/background photo set (`textures.photo_set`: `default`, `heldout` or a comma list);
    `splits`: `all`, or `personal` for only the personal split and its episodes (what evaluation needs).
    """
    if size not in SIZES:
        raise ConfigError(f"--size: unknown world size {size!r}; choose one of {', '.join(SIZES)}")
    if splits not in SPLITS:
        raise ConfigError(f"--splits: unknown value {splits!r}; choose one of {', '.join(SPLITS)}")
    photo_names = textures.photo_set(photos)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out: {out} is not empty; pass --overwrite to replace it")
    try:
        with atomic_dir(out) as tmp:
            _build(tmp, SIZES[size], int(seed), progress, photo_names, base_splits=splits == "all")
    except PermissionError as exc:
        raise ConfigError(f"--out: cannot write {out}: {exc.strerror}") from None
    return out / YAML_NAME


def ensure_world(cache_dir: str | Path, size: str = "small", seed: int = 0) -> Path:
    """Return the YAML of the world cached under `cache_dir/mochaworld-<size>-s<seed>`, generating it if missing."""
    out = Path(cache_dir) / f"mochaworld-{size}-s{seed}"
    if (out / YAML_NAME).is_file():
        return out / YAML_NAME
    return generate_world(out, size=size, seed=seed, overwrite=True)
