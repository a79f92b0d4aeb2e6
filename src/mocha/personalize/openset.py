"""Open-set rates on a dataset: enrol part of its instances, then count how often an enrolled instance is not
recognised (false reject) and how often someone else of the same kind is taken for an enrolled one (false accept).

Per episode (seeded), a fraction of the split's instances is enrolled from its support images; the rest are
impostors. On every query image each ground-truth box is paired with the detection of highest IoU (≥ `match_iou`,
one detection per box). A genuine trial (an enrolled instance's box) is accepted when that detection is named as
that instance, at similarity ≥ the threshold; an impostor trial (a non-enrolled instance's box) is a false accept
when it is named as any enrolled instance. As when detecting, each instance names at most one box per image.
Boxes the detector missed are counted apart (`missed`), not as rejects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mocha.personalize.boxes import iou_one
from mocha.personalize.matching import DEFAULT_COARSE_PENALTY, identify, one_box_per_instance
from mocha.personalize.tuning import DetectionCache, episode_learner


def open_set_trials(engine: Any, data: str | Path, shots: int = 1, episodes: int = 20, seed: int = 0,
                    enrol_fraction: float = 0.5, conf: float = 0.1, iou: float = 0.6, max_det: int = 300,
                    coarse_penalty: float = DEFAULT_COARSE_PENALTY, match_iou: float = 0.5, one_box: bool = True,
                    progress: bool = True) -> dict[str, Any]:
    """Genuine and impostor trials (similarity of the named instance, whether it was the right one). `one_box`:
    each instance names at most one box per image, as `Personalizer.detect` does (False: every box on its own)."""
    from mocha.core.progress import progress as bar
    from mocha.data import load_dataset, load_episodes, read_split

    spec = load_dataset(data)
    split, eps = load_episodes(spec, shots, n=episodes, seed=seed)
    cache = DetectionCache(engine, read_split(spec, split), conf, iou, max_det)
    genuine: list[tuple[float, bool]] = []  # (similarity, named as the right instance)
    impostor: list[float] = []  # similarity of the enrolled instance an impostor was named as (-inf: none)
    missed = 0
    for e, ep in enumerate(bar(eps, desc="open set", unit="episode", enable=progress)):
        ids = sorted(ep.support)
        rng = np.random.default_rng(seed + e)
        k = min(len(ids) - 1, max(1, round(enrol_fraction * len(ids))))  # at least one impostor per episode
        enrolled = {ids[j] for j in rng.choice(len(ids), size=k, replace=False)}
        learner, protos = episode_learner(cache, spec, {i: ep.support[i] for i in sorted(enrolled)}, engine.dim)
        names = np.asarray(learner.instances())
        for i in ep.query:
            c = cache.get(i)
            idx, sim = identify(learner, protos, c["embs"], c["dets"][:, 5], float(coarse_penalty))
            if one_box:
                idx = one_box_per_instance(idx, sim)  # the deployed rule (`Personalizer.results`)
            used: set[int] = set()
            for box, inst in zip(c["gt"], c["inst"], strict=True):
                ious = iou_one(box, c["boxes"]) if len(c["boxes"]) else np.zeros(0)
                if used:
                    ious[list(used)] = 0.0
                if not len(ious) or ious.max() < match_iou:
                    missed += 1
                    continue
                d = int(ious.argmax())
                used.add(d)
                named = int(names[idx[d]]) if idx[d] >= 0 else -1
                s = float(sim[d]) if named >= 0 else -np.inf
                if int(inst) in enrolled:
                    genuine.append((s, named == int(inst)))
                else:
                    impostor.append(s)
    return {"genuine": genuine, "impostor": impostor, "missed": missed, "split": split, "episodes": len(eps),
            "shots": shots, "enrol_fraction": enrol_fraction, "coarse_penalty": float(coarse_penalty),
            "one_box": bool(one_box)}


def rates_at(trials: dict[str, Any], threshold: float) -> dict[str, float]:
    """False-reject and false-accept rates at `min_similarity = threshold`."""
    g = trials["genuine"]
    accepted = sum(1 for s, right in g if right and s >= threshold)
    fa = sum(1 for s in trials["impostor"] if s >= threshold)
    n_g, n_i = len(g), len(trials["impostor"])
    return {"min_similarity": float(threshold), "frr": 1 - accepted / n_g if n_g else float("nan"),
            "far": fa / n_i if n_i else float("nan"), "genuine": n_g, "impostor": n_i}


def rate_table(trials: dict[str, Any], thresholds: np.ndarray | None = None) -> list[dict[str, float]]:
    """`rates_at` over a grid of thresholds (default −0.2 … 0.95 by 0.05)."""
    grid = np.round(np.arange(-0.2, 1.0, 0.05), 3) if thresholds is None else thresholds
    return [rates_at(trials, float(t)) for t in grid]


def equal_error_threshold(trials: dict[str, Any]) -> dict[str, float]:
    """The grid threshold where FAR and FRR are closest (the usual single operating point of a verifier)."""
    return min(rate_table(trials), key=lambda r: (abs(r["far"] - r["frr"]), r["far"] + r["frr"]))
