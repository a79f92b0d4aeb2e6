"""Probe how identifiable a world's personal instances are: colour histogram vs ImageNet MobileNetV2 features,
within-category nearest-prototype accuracy on ground-truth crops (episodes of `shots` support crops each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from mocha.errors import DataError


def _crops(yml: Path, max_crops: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    doc = yaml.safe_load(yml.read_text())
    coarse_of = {int(k): int(v["coarse"]) for k, v in doc["instances"].items()}
    img_dir = yml.parent / doc.get("root", ".") / doc["splits"]["personal"]["images"]
    crops, inst = [], []
    for p in sorted(img_dir.glob("*.jpg")):
        im = Image.open(p).convert("RGB")
        W, H = im.size
        for line in (p.parent.parent / "labels" / (p.stem + ".txt")).read_text().split("\n"):
            if not line.strip():
                continue
            c, cx, cy, w, h = (float(v) for v in line.split())
            box = ((cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H)
            crops.append(np.asarray(im.crop(tuple(round(v) for v in box)).resize((224, 224), Image.BILINEAR)))
            inst.append(int(c))
    if not crops:
        raise DataError(f"{img_dir}: no labelled personal crops")
    idx = np.arange(len(crops))[:: max(1, len(crops) // max_crops)] if len(crops) > max_crops else np.arange(len(crops))
    inst_a = np.array(inst)[idx]
    return [crops[i] for i in idx], inst_a, np.array([coarse_of[i] for i in inst_a])


def histogram_features(crops: list[np.ndarray], bins: int = 8) -> np.ndarray:
    """Joint RGB histogram, square-rooted and L2-normalized (Hellinger-style)."""
    out = []
    for c in crops:
        q = (c.reshape(-1, 3).astype(np.int32) * bins) // 256
        h = np.bincount(q[:, 0] * bins * bins + q[:, 1] * bins + q[:, 2], minlength=bins**3).astype(np.float32)
        h = np.sqrt(h / h.sum())
        out.append(h / np.linalg.norm(h))
    return np.stack(out)


def mobilenet_features(crops: list[np.ndarray], batch: int = 16) -> np.ndarray:
    """ImageNet MobileNetV2 pooled features (1280-d) of 224x224 crops (the built-in teacher's image side)."""
    from mocha.teacher.builtin import MobileNetTeacher

    net = MobileNetTeacher(batch_size=batch)
    return net.embed(crops, ["object"] * len(crops)).numpy()


def nearest_prototype_accuracy(
    features: np.ndarray, inst: np.ndarray, coarse: np.ndarray, shots: int, episodes: int, seed: int = 0
) -> float:
    """Mean over episodes of within-category nearest-prototype (cosine) accuracy.

    Each episode draws `shots` support rows per instance (instances with more than `shots` rows); every other
    row is a query, classified among the prototypes (mean of L2-normalized supports) of its own coarse class.
    """
    f = np.asarray(features, np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    ids = [int(i) for i in np.unique(inst) if (inst == i).sum() > shots]
    if not ids:
        raise DataError(f"no instance has more than {shots} ground-truth crops")
    id_coarse = np.array([coarse[inst == i][0] for i in ids])
    accs = []
    for e in range(episodes):
        rng = np.random.default_rng([seed, e])
        support = [rng.choice(np.nonzero(inst == i)[0], size=shots, replace=False) for i in ids]
        protos = np.stack([f[s].mean(0) for s in support])
        protos /= np.maximum(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
        query = np.setdiff1d(np.nonzero(np.isin(inst, ids))[0], np.concatenate(support))
        sims = f[query] @ protos.T
        sims[coarse[query][:, None] != id_coarse[None, :]] = -np.inf  # only same-category candidates
        pred = np.array(ids)[np.argmax(sims, axis=1)]
        accs.append(float(np.mean(pred == inst[query])))
    return float(np.mean(accs))


def probe_world(world: str | Path, shots: int = 1, episodes: int = 20, max_crops: int = 600, seed: int = 0) -> dict:
    """Within-category nearest-prototype accuracy: {'histogram', 'mobilenetv2', 'chance', 'crops'}."""
    world = Path(world)
    yml = world if world.suffix in (".yaml", ".yml") else world / "mochaworld.yaml"
    if not yml.is_file():
        raise DataError(f"{yml}: no mochaworld YAML here")
    crops, inst, coarse = _crops(yml, max_crops)
    per_cat = [len(np.unique(inst[coarse == c])) for c in np.unique(coarse)]
    return {
        "crops": len(crops),
        "chance": float(np.mean([1 / n for n in per_cat])),
        "histogram": nearest_prototype_accuracy(histogram_features(crops), inst, coarse, shots, episodes, seed),
        "mobilenetv2": nearest_prototype_accuracy(mobilenet_features(crops), inst, coarse, shots, episodes, seed),
    }
