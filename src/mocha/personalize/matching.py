"""Open-set identification: a box's nearest prototype, its cosine similarity, and the calibrated probability
that the name is right. Shared by `Personalizer` and the threshold tuning.

The detector's coarse class is a prior, not a filter (`coarse_penalty`): an instance of another coarse class
than the box competes with its similarity lowered by the penalty, so a box whose class the detector got wrong
(a mug taken for a can, a sneaker outside the detector's vocabulary) can still be named. `coarse_penalty=inf`
is the SPEC's conditional learner: only the box's own class is searched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Measured on mochaworld "small" with the demo's bundle (docs/personalize.md): strict mAP is flat (12.74-12.75 %)
# for thresholds -0.2 … 0.0 and falls above; 0.0 ("no more similar than an unrelated region") is the top of that
# plateau. The calibration is the logistic fit of the same run.
DEFAULT_MIN_SIMILARITY = 0.0
DEFAULT_CALIBRATION = {"slope": 5.23, "center": 0.707}
# Cosine similarity taken off instances of another coarse class than the box. Chosen by `mocha gallery tune`
# (1-shot strict mAP50-95, 20 episodes of the demo world's personal split, the demo bundle; docs/personalize.md):
# inf (the SPEC's filter) 15.5, 0.5 17.6, 0.3 19.3, 0.2 19.4, 0.1 18.4, 0.05 17.5, 0 16.3.
DEFAULT_COARSE_PENALTY = 0.2
# Enrolment: a support box longer than this fraction of the input side is embedded zoomed out to it (close-ups;
# docs/personalize.md, *Close-ups*). Chosen on mochaworld close-up crops (scripts/closeup_enrolment.py, top-1:
# as given 29.1 %, 0.5 40.1 %, 0.3 43.4 %); opencv-doc box.png ranks last of 8 in box_in_scene.png as given,
# first at 0.5–0.2.
DEFAULT_SUPPORT_SCALE = 0.3


def coarse_penalty_option() -> Any:
    """The `coarse_penalty` option of every verb that runs a Personalizer (detect, track, serve)."""
    from mocha.core.config import option

    return option(None, help="similarity taken off instances of another coarse class than the box's (inf: search "
                             "only the box's class, the SPEC's conditional learner)", ge=0,
                  default_text=f"the gallery's, else {DEFAULT_COARSE_PENALTY}")


def unit_prototypes(learner: Any, dim: int) -> np.ndarray:
    """The learner's prototypes (in `learner.instances()` order), L2-normalised, (k, dim) float32."""
    if not len(learner):
        return np.zeros((0, dim), np.float32)
    p = learner.prototypes().numpy().astype(np.float32)
    return p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)


def coarse_prior(coarse: int, votes: dict[int, float] | None, n_classes: int) -> np.ndarray:
    """An instance's weight on every coarse class, (n_classes,) in [0, 1]: 1 on its own class; with the
    detector's enrolment votes (class → summed confidence × IoU of the detections on its boxes), each voted class
    in proportion to the instance's own. An object outside the detector's vocabulary gets near-equal votes for
    several classes (opencv-doc box.png: book 0.26, oven 0.26, microwave 0.23, keyboard 0.23), so a box of any of
    them is hardly penalised; a class the user gave (no votes) is the only one."""
    w = np.zeros(n_classes, np.float32)
    top = float((votes or {}).get(int(coarse), 0.0))
    if top > 0:
        for c, v in (votes or {}).items():
            if 0 <= int(c) < n_classes:
                w[int(c)] = min(1.0, max(0.0, float(v) / top))
    w[int(coarse)] = 1.0
    return w


def prior_similarities(embeddings: np.ndarray, protos: np.ndarray, box_coarse: np.ndarray,
                       inst_coarse: np.ndarray, penalty: float, inst_prior: np.ndarray | None = None) -> np.ndarray:
    """(n, K) cosine similarity of each box to each unit prototype, minus `penalty` where the instance's coarse
    class is not the box's; with penalty=inf those entries are -1 (never named). `inst_prior` (K, n_classes),
    rows of `coarse_prior`: the penalty is scaled by 1 - the instance's weight on the box's class (penalty=inf
    still searches the instance's own class only)."""
    e = np.asarray(embeddings, np.float32).reshape(len(embeddings), -1) if len(embeddings) else \
        np.zeros((0, protos.shape[1]), np.float32)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sim = e @ protos.T
    box_coarse = np.asarray(box_coarse, np.int64)
    other = box_coarse[:, None] != np.asarray(inst_coarse, np.int64)[None, :]
    if np.isinf(penalty):
        sim[other] = -1.0
    elif inst_prior is None:
        sim[other] -= np.float32(penalty)
    else:
        sim -= np.float32(penalty) * (1.0 - np.asarray(inst_prior, np.float32)[:, box_coarse].T)
    return sim.astype(np.float32)


def one_box_per_instance(named: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """`named` with every instance kept only on its most similar box of the image (the others -1): a personal
    object is in one place at a time, and the detector's overlapping boxes of other classes, or the whole scene
    around it, must not carry its name too. Independent of the threshold applied after it."""
    named = np.asarray(named, np.int64).copy()
    s = np.nan_to_num(np.asarray(sim, np.float64), nan=-np.inf)
    for k in np.unique(named[named >= 0]):
        rows = np.flatnonzero(named == k)
        named[np.delete(rows, int(np.argmax(s[rows])))] = -1
    return named


def identify(learner: Any, protos: np.ndarray, embeddings: np.ndarray,
             coarse: np.ndarray, penalty: float = float("inf")) -> tuple[np.ndarray, np.ndarray]:
    """Nearest instance index (into learner.instances(); -1 none) and similarity (NaN none) per box.

    penalty=inf: the conditional learner's choice within the box's coarse class, its cosine similarity.
    Finite: the best instance of any class by `prior_similarities`, and that (penalised) similarity."""
    n = len(embeddings)
    if n == 0 or not len(learner):
        return np.full(n, -1), np.full(n, np.nan, np.float32)
    if not np.isinf(penalty):
        inst_coarse = np.array([learner.coarse_of(i) for i in learner.instances()], np.int64)
        sim = prior_similarities(embeddings, protos, coarse, inst_coarse, penalty)
        idx = sim.argmax(axis=1)
        return idx.astype(np.int64), sim[np.arange(n), idx].astype(np.float32)
    import torch

    idx, _ = learner.predict_index(torch.as_tensor(embeddings, dtype=torch.float32),
                                   torch.as_tensor(np.asarray(coarse)).long())
    idx = idx.numpy()
    e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    sim = np.full(n, np.nan, np.float32)
    has = idx >= 0
    sim[has] = np.einsum("nd,nd->n", e[has], protos[idx[has]])
    return idx, sim


def calibrated(similarity: np.ndarray, calibration: dict[str, float]) -> np.ndarray:
    """Probability that a named box is right, logistic in the similarity; NaN similarity → 0."""
    s = np.nan_to_num(np.asarray(similarity, np.float64), nan=-np.inf)
    z = float(calibration["slope"]) * (s - float(calibration["center"]))
    return (1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))).astype(np.float32)
