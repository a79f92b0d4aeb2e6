"""The coarse class as a prior: `prior_similarities` / `identify` with a finite `coarse_penalty` name a box whose
detected class is wrong; an infinite penalty is the SPEC's conditional learner (own class only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mocha.core.learners import ConditionalLearner
from mocha.personalize.matching import identify, prior_similarities, unit_prototypes


@pytest.fixture()
def gallery():
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(3, 16)).astype(np.float32)
    learner = ConditionalLearner("drop")
    for name, coarse, v in zip(("mug-a", "mug-b", "can-a"), (0, 0, 1), protos, strict=True):
        learner.add(name, coarse, torch.as_tensor(v[None]))
    return learner, unit_prototypes(learner, 16), protos


def test_prior_similarities_penalise_other_classes(gallery):
    learner, unit, protos = gallery
    emb = protos[[2]] + 0.01  # the can, detected as class 0 (mug)
    raw = prior_similarities(emb, unit, [0], [0, 0, 1], 0.0)
    np.testing.assert_allclose(raw[0, 2], 1.0, atol=1e-3)
    pen = prior_similarities(emb, unit, [0], [0, 0, 1], 0.2)
    np.testing.assert_allclose(pen[0, :2], raw[0, :2])
    np.testing.assert_allclose(pen[0, 2], raw[0, 2] - 0.2, atol=1e-6)
    assert prior_similarities(emb, unit, [0], [0, 0, 1], float("inf"))[0, 2] == -1.0


def test_identify_crosses_a_wrong_coarse_class_only_with_a_finite_penalty(gallery):
    learner, unit, protos = gallery
    emb = protos[[2]] + 0.01
    idx, sim = identify(learner, unit, emb, np.array([0]), float("inf"))
    assert learner.instances()[int(idx[0])] in ("mug-a", "mug-b")  # conditional: the can cannot be named
    idx, sim = identify(learner, unit, emb, np.array([0]), 0.2)
    assert learner.instances()[int(idx[0])] == "can-a" and sim[0] == pytest.approx(0.8, abs=1e-3)
    # a right-class box still wins over a look-alike of another class that is only slightly closer
    near = unit[[0]] * 0.9 + unit[[2]] * 0.1
    idx, _ = identify(learner, unit, near, np.array([0]), 0.2)
    assert learner.instances()[int(idx[0])] == "mug-a"
