"""Checkpoint bundle: round trip, digest, embedding calls, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from mocha.errors import ConfigError
from mocha.models.bundle import load_bundle, save_bundle
from mocha.models.detector import Student
from mocha.models.translator import Translator


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    return Student.create("yolov8n.yaml", names=["mug", "ball", "can"]).eval(), Translator(448, 32).eval()


def test_round_trip_digest_and_embeddings(parts, tmp_path):
    student, translator = parts
    path = save_bundle(tmp_path / "b", student, translator, None, {"epochs": 1, "imgsz": 128})
    assert sorted(p.name for p in path.iterdir()) == ["bundle.json", "student.safetensors", "translator.safetensors"]
    b = load_bundle(path)
    assert b.dim == 32 and b.config["imgsz"] == 128 and b.path == path
    assert b.digest == json.loads((path / "bundle.json").read_text())["digest"]
    x = torch.rand(2, 3, 128, 128)
    boxes = [torch.tensor([[10.0, 10, 60, 70], [0, 0, 128, 128]]), torch.tensor([[30.0, 40, 90, 100]])]
    with torch.no_grad():
        feats, _ = student(x)
        want = translator(student.region_features(feats, boxes))
    got = b.embed_boxes(x, boxes)
    assert got.shape == (3, 32) and torch.allclose(got, want, atol=1e-5)
    dets, embs = b.detect_and_embed(x, conf=0.0, max_det=4)
    assert [len(e) for e in embs] == [len(d) for d in dets] and all(e.shape[1] == 32 for e in embs)
    # the digest follows the weights
    with torch.no_grad():
        b.translator.proj.weight[0, 0] += 1.0
    assert b.digest != json.loads((path / "bundle.json").read_text())["digest"]


def test_bad_bundles(parts, tmp_path):
    student, translator = parts
    with pytest.raises(ConfigError, match="no bundle.json"):
        load_bundle(tmp_path)
    with pytest.raises(ConfigError, match="translator input 100"):
        save_bundle(tmp_path / "x", student, Translator(100, 8, heads=4), None, {})
    assert not (tmp_path / "x").exists()
    path = save_bundle(tmp_path / "b", student, translator, None, {})
    (path / "translator.safetensors").unlink()
    with pytest.raises(ConfigError, match="missing translator.safetensors"):
        load_bundle(path)
    # a student of another architecture than recorded
    path = save_bundle(tmp_path / "c", student, translator, None, {})
    Student.create("yolov8s.yaml", names=["mug", "ball", "can"]).save(path / "student.safetensors")
    with pytest.raises(ConfigError, match="architecture|translator expects"):
        load_bundle(path)
    # a translator whose output disagrees with the recorded PCA dim
    path = save_bundle(tmp_path / "d", student, translator, None, {})
    meta = json.loads((path / "bundle.json").read_text())
    meta["pca"] = {"digest": "abc", "dim": 64}
    (path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="PCA dim 64 != translator output dim 32"):
        load_bundle(path)
