"""The built-in teacher and its image side alone (`teacher=mobilenetv2`) on real photos."""

from __future__ import annotations

import numpy as np
import torch
from skimage import data

from mocha.teacher.registry import create_teacher


def test_mobilenet_is_the_builtin_image_half_and_ignores_the_label():
    crops = [np.ascontiguousarray(data.coffee()[50:300, 100:400]), np.ascontiguousarray(data.chelsea())]
    merged = create_teacher("builtin").embed(crops, ["cup", "cat"])
    image = create_teacher("mobilenetv2")
    alone = image.embed(crops, ["cup", "cat"])
    assert image.dim == 1280 and merged.shape[1] == 384 + 1280
    # [MiniLM(text) ; ẑ·‖text‖] with a unit-norm text half: the tail is the normalized image embedding itself
    assert torch.allclose(merged[:, 384:], alone, atol=1e-5)
    assert torch.allclose(alone.norm(dim=1), torch.ones(2))
    assert torch.equal(image.embed(crops, ["dog", "car"]), alone)  # no class text in it
    cos = torch.nn.functional.cosine_similarity(alone[0], alone[1], dim=0)
    assert cos < 0.95  # two different photos, two different embeddings
