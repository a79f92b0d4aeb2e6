"""The world probe: within-category nearest-prototype instance accuracy on ground-truth boxes.

This is the neural-collapse evidence. For each episode, every instance gets a prototype from its
support boxes; each query box of a known instance is assigned the nearest prototype (cosine) among the
instances of its own coarse category. Chance is 1 / (instances in the category). The same episodes are
used for every feature kind, so the numbers are directly comparable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mocha.data.episodes import Episode

FeatureFn = Callable[[list[int]], np.ndarray]  # record indices -> one row per GT box, in record/box order


@dataclass
class GTBoxes:
    """Every ground-truth box of a split, flattened: its record, instance and coarse ids."""

    record: np.ndarray
    instance: np.ndarray
    coarse: np.ndarray

    @classmethod
    def from_records(cls, records: Sequence) -> GTBoxes:
        rec = np.concatenate([np.full(len(r.instance), i) for i, r in enumerate(records)]) if records else np.zeros(0)
        inst = np.concatenate([r.instance for r in records]) if records else np.zeros(0)
        coarse = np.concatenate([r.coarse for r in records]) if records else np.zeros(0)
        return cls(rec.astype(np.int64), inst.astype(np.int64), coarse.astype(np.int64))


def colour_histogram(crop: np.ndarray, bins: int = 8) -> np.ndarray:
    """Joint RGB histogram of a crop (bins³, L1-normalized): the 'colour alone' baseline."""
    q = (crop.reshape(-1, 3).astype(np.int64) * bins) // 256
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    h = np.bincount(idx, minlength=bins**3).astype(np.float32)
    return h / max(h.sum(), 1.0)


def within_category_accuracy(feats: np.ndarray, boxes: GTBoxes, episodes: Sequence[Episode]) -> float:
    """Mean over episodes of the within-category nearest-prototype accuracy (percent)."""
    x = torch.nn.functional.normalize(torch.as_tensor(feats, dtype=torch.float32), dim=1)
    inst = torch.as_tensor(boxes.instance)
    coarse = torch.as_tensor(boxes.coarse)
    rec = torch.as_tensor(boxes.record)
    scores = []
    for ep in episodes:
        ids = sorted(ep.support)
        support_recs = {i: set(v) for i, v in ep.support.items()}
        protos, proto_coarse = [], []
        for i in ids:
            m = (inst == i) & torch.isin(rec, torch.tensor(sorted(support_recs[i])))
            protos.append(x[m].mean(0))
            proto_coarse.append(int(coarse[m][0]))
        p = torch.nn.functional.normalize(torch.stack(protos), dim=1)
        pc = torch.tensor(proto_coarse)
        qm = torch.isin(rec, torch.tensor(sorted(ep.query))) & torch.isin(inst, torch.tensor(ids))
        if not qm.any():
            continue
        sim = x[qm] @ p.T
        sim[coarse[qm].unsqueeze(1) != pc.unsqueeze(0)] = -float("inf")  # only instances of the box's category
        pred = torch.tensor(ids)[sim.argmax(1)]
        scores.append((pred == inst[qm]).float().mean().item())
    return 100.0 * float(np.mean(scores)) if scores else float("nan")


def chance_level(boxes: GTBoxes, episodes: Sequence[Episode]) -> float:
    """Expected accuracy of a random within-category guess (percent)."""
    ids = sorted(episodes[0].support) if episodes else []
    per_coarse: dict[int, int] = {}
    coarse_of = {int(i): int(c) for i, c in zip(boxes.instance, boxes.coarse, strict=True)}
    for i in ids:
        per_coarse[coarse_of[i]] = per_coarse.get(coarse_of[i], 0) + 1
    m = np.isin(boxes.instance, ids)
    return 100.0 * float(np.mean([1.0 / per_coarse[int(c)] for c in boxes.coarse[m]])) if m.any() else float("nan")
