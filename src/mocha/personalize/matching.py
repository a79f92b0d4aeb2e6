"""Open-set identification: a box's nearest prototype within its coarse class, its cosine similarity, and the
calibrated probability that the name is right. Shared by `Personalizer` and the threshold tuning."""

from __future__ import annotations

from typing import Any

import numpy as np

# Measured on mochaworld "small" with the demo's bundle (docs/personalize.md): strict mAP is flat (12.74-12.75 %)
# for thresholds -0.2 … 0.0 and falls above; 0.0 ("no more similar than an unrelated region") is the top of that
# plateau. The calibration is the logistic fit of the same run.
DEFAULT_MIN_SIMILARITY = 0.0
DEFAULT_CALIBRATION = {"slope": 5.23, "center": 0.707}


def unit_prototypes(learner: Any, dim: int) -> np.ndarray:
    """The learner's prototypes (in `learner.instances()` order), L2-normalised, (k, dim) float32."""
    if not len(learner):
        return np.zeros((0, dim), np.float32)
    p = learner.prototypes().numpy().astype(np.float32)
    return p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)


def identify(learner: Any, protos: np.ndarray, embeddings: np.ndarray,
             coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest instance index (into learner.instances(); -1 none) and cosine similarity (NaN none) per box."""
    n = len(embeddings)
    if n == 0 or not len(learner):
        return np.full(n, -1), np.full(n, np.nan, np.float32)
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
