"""Builders of small real datasets for tests (importable by any test).

- `make_yolo_dataset(root, ...)`: our schema (docs/formats.md) with coarse-labelled base splits and an
  instance-labelled personal split; every box is drawn as a filled, instance-coloured rectangle so
  loaders can be checked against pixels.
- `make_paper_dataset(root, layout)`: generated replicas of the processed PerSeg / CORe50 / iCubWorld / POD
  layouts (fine-id labels, `coarse_names` / `fine_names` / `idmap` YAML, episode or class→images JSON).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

COARSE = ["mug", "bottle", "ball"]
Row = tuple[int, float, float, float, float]


def colour(k: int) -> tuple[int, int, int]:
    """A distinct saturated colour per id (boxes are drawn in it)."""
    rng = np.random.default_rng(10_000 + k)
    return tuple(int(v) for v in rng.integers(40, 216, 3))  # type: ignore[return-value]


def write_image(path: Path, seed: int, size: tuple[int, int] = (64, 48), rows: list[Row] = ()) -> Path:
    """Noise background of `size` (w, h) with each labelled box filled in its id's colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for c, cx, cy, bw, bh in rows:
        x1, y1 = round((cx - bw / 2) * w), round((cy - bh / 2) * h)
        x2, y2 = round((cx + bw / 2) * w), round((cy + bh / 2) * h)
        img[y1:y2, x1:x2] = colour(c)
    kw = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(img).save(path, **kw)
    return path


def write_label(path: Path, rows: list[Row]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in rows))
    return path


def write_pair(images: Path, labels: Path, name: str, rows: list[Row], seed: int, size=(64, 48)) -> Path:
    """Image `images/name` plus its label file `labels/<stem>.txt`."""
    write_label(labels / (Path(name).stem + ".txt"), rows)
    return write_image(images / name, seed, size, rows)


def make_yolo_dataset(
    root: Path,
    n_base: int = 6,
    instances_per_coarse: int = 2,
    images_per_instance: int = 4,
    size: tuple[int, int] = (64, 48),
    episodes: dict | None = None,
    ext: str = ".png",
) -> Path:
    """Our schema: base_train/base_val (coarse ids), personal (instance ids). Returns the YAML path.

    Instance i has coarse i % 3 and name '<coarse>-<i>'. Personal image k shows its primary instance on the
    left and another instance (i + 3) on the right. `episodes` defaults to a seeded 1-shot draw of 5.
    """
    root.mkdir(parents=True, exist_ok=True)
    n_inst = len(COARSE) * instances_per_coarse
    for split, seed0 in (("base/train", 0), ("base/val", 500)):
        for k in range(n_base):
            rows = [(k % 3, 0.5, 0.5, 0.4, 0.5), ((k + 1) % 3, 0.15, 0.2, 0.2, 0.2)]
            write_pair(root / split / "images", root / split / "labels", f"b{k:03d}{ext}", rows, seed0 + k, size)
    k = 0
    for inst in range(n_inst):
        for _ in range(images_per_instance):
            rows = [(inst, 0.25, 0.5, 0.3, 0.4), ((inst + 3) % n_inst, 0.75, 0.5, 0.3, 0.4)]
            write_pair(root / "personal/images", root / "personal/labels", f"p{k:03d}{ext}", rows, 1000 + k, size)
            k += 1
    doc = {
        "format": "mocha-dataset/1",
        "root": ".",
        "names": COARSE,
        "instances": {i: {"name": f"{COARSE[i % 3]}-{i}", "coarse": i % 3} for i in range(n_inst)},
        "splits": {
            "base_train": {"images": "base/train/images", "label_ids": "coarse"},
            "base_val": {"images": "base/val/images", "label_ids": "coarse"},
            "personal": {"images": "personal/images", "label_ids": "instance"},
        },
        "episodes": {"personal": episodes if episodes is not None else {"1": {"seed": 0, "count": 5}}},
    }
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def make_many_images(root: Path, n: int = 1000, size: tuple[int, int] = (16, 16)) -> Path:
    """A coarse-only dataset with `n` tiny PNG images (for speed checks). Returns the YAML path."""
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (n, size[1], size[0], 3), dtype=np.uint8)
    for k in range(n):
        Image.fromarray(pixels[k]).save(images / f"{k:05d}.png", compress_level=0)
        (labels / f"{k:05d}.txt").write_text(f"{k % 3} 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.2 0.2\n")
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump({"names": COARSE, "splits": {"all": {"images": "images"}}}))
    return path


# --- replicas of the processed paper benchmarks -------------------------------------------------------

PAPER_COARSE = ["bottle", "toy"]


def _paper_yaml(root: Path, n_inst: int, extra: dict | None = None) -> Path:
    """coarse_names as a {str id: name} dict, fine_names as a list, idmap mixing string ids and names."""
    data = {
        "coarse_names": {str(i): n for i, n in enumerate(PAPER_COARSE)},
        "fine_names": [f"obj{i}" for i in range(n_inst)],
        "idmap": {str(i): PAPER_COARSE[i % 2] if i % 3 else str(i % 2) for i in range(n_inst)},
        **(extra or {}),
    }
    path = root / "dataset.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _instance_images(images: Path, labels: Path, n_inst: int, per_inst: int, seed0: int, prefix: str):
    """per_inst images per instance, one box each; returns {instance: [file names]}."""
    files: dict[int, list[str]] = {}
    for i in range(n_inst):
        for j in range(per_inst):
            name = f"{prefix}{i:02d}_{j:02d}.jpg"
            write_pair(images, labels, name, [(i, 0.5, 0.5, 0.5, 0.6)], seed0 + i * 50 + j)
            files.setdefault(i, []).append(name)
    return files


def _episode_json(files: dict[int, list[str]], shots: int, n: int, as_dict: bool = False):
    rng = np.random.default_rng(shots)
    eps = []
    for _ in range(n):
        train = [str(f) for i in sorted(files) for f in rng.choice(files[i], shots, replace=False)]
        val = [f for i in sorted(files) for f in files[i] if f not in train]
        eps.append({"train": train, "val": val})
    return {str(e): ep for e, ep in enumerate(eps)} if as_dict else eps


def make_paper_dataset(root: Path, layout: str, n_inst: int = 4, per_inst: int = 3, hint: bool = True) -> Path:
    """Replica of a processed paper layout: perseg | core50 | icubworld | pod. Returns the YAML path.

    perseg: images and labels side by side in one folder, 1- and 2-shot episode lists;
    core50: train/images + train/labels, episode list; icubworld: same folders, episodes as a dict keyed by
    episode index; pod: train/ + val1/ + val2/ and a class→images JSON keyed by instance name.
    `hint=False` leaves out the `layout:` key (structure detection).
    """
    root.mkdir(parents=True, exist_ok=True)
    extra = {"layout": layout} if hint else {}
    if layout == "perseg":
        files = _instance_images(root, root, n_inst, per_inst, 0, "img")
        for shots in (1, 2):
            (root / f"episodes_{shots}shot.json").write_text(json.dumps(_episode_json(files, shots, 3)))
        return _paper_yaml(root, n_inst, extra)
    if layout in ("core50", "icubworld"):
        files = _instance_images(root / "train/images", root / "train/labels", n_inst, per_inst, 0, "img")
        eps = _episode_json(files, 1, 3, as_dict=layout == "icubworld")
        (root / "episodes_1shot.json").write_text(json.dumps(eps))
        return _paper_yaml(root, n_inst, extra)
    if layout == "pod":
        files = _instance_images(root / "train/images", root / "train/labels", n_inst, per_inst, 0, "tr")
        _instance_images(root / "val1/images", root / "val1/labels", n_inst, 2, 500, "va")
        _instance_images(root / "val2/images", root / "val2/labels", n_inst, 1, 900, "vb")
        (root / "train_classes.json").write_text(json.dumps({f"obj{i}": files[i] for i in files}))
        return _paper_yaml(root, n_inst, {**extra, "shots": [1, 2]})
    raise ValueError(f"unknown layout {layout!r}")
