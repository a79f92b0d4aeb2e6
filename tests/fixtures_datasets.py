"""Builders of small real datasets for tests: our schema and replicas of the paper layouts (generated)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

COARSE = ["mug", "ball", "can"]


def write_image(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def write_label(path: Path, rows: list[tuple[int, float, float, float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{c} {cx:.4f} {cy:.4f} {w:.4f} {h:.4f}\n" for c, cx, cy, w, h in rows))


def make_mocha_dataset(root: Path, n_images: int = 6, instances_per_coarse: int = 2) -> Path:
    """Our schema: base_train/base_val (coarse ids) and personal (instance ids) with 4 images per instance."""
    root.mkdir(parents=True, exist_ok=True)
    n_inst = len(COARSE) * instances_per_coarse
    instances = {i: {"name": f"{COARSE[i % 3]}-{i}", "coarse": i % 3} for i in range(n_inst)}
    for split in ("base/train", "base/val"):
        for k in range(n_images):
            write_image(root / split / "images" / f"img{k:03d}.png", seed=k + (100 if "val" in split else 0))
            write_label(
                root / split / "labels" / f"img{k:03d}.txt",
                [(k % 3, 0.5, 0.5, 0.4, 0.5), ((k + 1) % 3, 0.2, 0.2, 0.2, 0.2)],
            )
    k = 0
    for inst in range(n_inst):
        for _ in range(4):
            write_image(root / "personal" / "images" / f"p{k:03d}.png", seed=1000 + k)
            other = (inst + 3) % n_inst
            write_label(
                root / "personal" / "labels" / f"p{k:03d}.txt",
                [(inst, 0.3, 0.5, 0.3, 0.4), (other, 0.75, 0.5, 0.3, 0.4)],
            )
            k += 1
    spec = {
        "format": "mocha-dataset/1",
        "names": COARSE,
        "instances": instances,
        "splits": {
            "base_train": {"images": "base/train/images", "label_ids": "coarse"},
            "base_val": {"images": "base/val/images", "label_ids": "coarse"},
            "personal": {"images": "personal/images", "label_ids": "instance"},
        },
        "episodes": {"personal": {"1": {"seed": 0, "count": 5}}},
    }
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _paper_yaml(root: Path, n_inst: int, extra: dict | None = None) -> Path:
    coarse = ["bottle", "toy"]
    data = {
        "coarse_names": {str(i): n for i, n in enumerate(coarse)},
        "fine_names": [f"obj{i}" for i in range(n_inst)],
        "idmap": {str(i): coarse[i % 2] if i % 3 else str(i % 2) for i in range(n_inst)},  # names and ids mixed
        **(extra or {}),
    }
    path = root / "dataset.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _instance_images(folder: Path, n_inst: int, per_inst: int, seed0: int, prefix: str) -> dict[int, list[str]]:
    files: dict[int, list[str]] = {}
    for i in range(n_inst):
        for j in range(per_inst):
            name = f"{prefix}{i:02d}_{j:02d}.jpg"
            write_image(folder / "images" / name, seed=seed0 + i * 50 + j)
            write_label(folder / "labels" / name.replace(".jpg", ".txt"), [(i, 0.5, 0.5, 0.5, 0.6)])
            files.setdefault(i, []).append(name)
    return files


def _episode_file(path: Path, files: dict[int, list[str]], shots: int, n: int) -> None:
    rng = np.random.default_rng(0)
    eps = []
    for _ in range(n):
        train = [str(f) for i in sorted(files) for f in rng.choice(files[i], shots, replace=False)]
        val = [f for i in sorted(files) for f in files[i] if f not in train]
        eps.append({"train": train, "val": val})
    path.write_text(json.dumps(eps))


def make_paper_dataset(root: Path, layout: str, n_inst: int = 4, per_inst: int = 3) -> Path:
    """Replica of a processed paper benchmark layout: perseg | core50 | icubworld | pod."""
    root.mkdir(parents=True, exist_ok=True)
    if layout == "perseg":
        files = _instance_images(root, n_inst, per_inst, 0, "img")
        _episode_file(root / "episodes_1shot.json", files, 1, 3)
        return _paper_yaml(root, n_inst)
    if layout in ("core50", "icubworld"):
        files = _instance_images(root / "train", n_inst, per_inst, 0, "img")
        _episode_file(root / "episodes_1shot.json", files, 1, 3)
        return _paper_yaml(root, n_inst, {"layout": layout})
    if layout == "pod":
        files = _instance_images(root / "train", n_inst, per_inst, 0, "tr")
        _instance_images(root / "val1", n_inst, 2, 500, "va")
        _instance_images(root / "val2", n_inst, 1, 900, "vb")
        (root / "train_classes.json").write_text(json.dumps({f"obj{i}": files[i] for i in files}))
        return _paper_yaml(root, n_inst, {"shots": [1, 2]})
    raise ValueError(layout)
