"""The YOLO student wrapper: feature maps, detection, region features, loss, checkpoints."""

from __future__ import annotations

import pytest
import torch

from mocha.errors import ConfigError
from mocha.models.detector import Student


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return Student.create("yolov8n.yaml", names=["mug", "ball", "can"])


def test_feature_maps_and_region_dim(student):
    assert student.strides == (8, 16, 32)
    assert student.feature_dims == (64, 128, 256)
    assert student.region_dim == 448
    x = torch.rand(2, 3, 128, 128)
    dets, feats = student.detect(x, conf=0.0, max_det=5)
    assert [tuple(f.shape) for f in feats] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4)]
    assert len(dets) == 2 and all(d.shape[1] == 6 and len(d) <= 5 for d in dets)
    f = student.region_features(feats, [d[:, :4] for d in dets])
    assert f.shape == (sum(len(d) for d in dets), 448)


def test_detection_loss_backpropagates(student):
    student.train()
    x = torch.rand(2, 3, 128, 128)
    feats, raw = student(x)
    batch = {
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[0.0], [2.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.3], [0.3, 0.4, 0.2, 0.2]]),
    }
    loss, items = student.detection_loss(raw, batch)
    assert torch.isfinite(loss) and items.numel() == 3
    loss.backward()
    assert student.model.model[0].conv.weight.grad is not None
    student.zero_grad()
    student.eval()


def test_checkpoint_round_trip(student, tmp_path):
    path = student.save(tmp_path / "s.safetensors")
    loaded = Student.load(path)
    assert loaded.names == student.names
    x = torch.rand(1, 3, 64, 64)
    student.eval()
    loaded.eval()
    for a, b in zip(student(x)[0], loaded(x)[0], strict=True):
        torch.testing.assert_close(a, b)


def test_ultralytics_pt_loads(student, tmp_path):
    pt = tmp_path / "yolo.pt"
    torch.save({"model": student.model, "train_args": {}}, pt)
    loaded = Student.load(pt)
    assert loaded.names == ["mug", "ball", "can"] and loaded.region_dim == 448


def test_missing_weights_say_how_to_provide(tmp_path):
    with pytest.raises(ConfigError, match="nothing is downloaded"):
        Student.load(tmp_path / "yolov8n.pt")


def test_mismatched_checkpoint_is_refused(student, tmp_path):
    from safetensors.torch import load_file, save_file

    path = student.save(tmp_path / "s.safetensors")
    state = load_file(str(path))
    state.pop("model.0.conv.weight")

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    save_file(state, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ConfigError, match="does not match"):
        Student.load(tmp_path / "bad.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable"):
        Student.load(tmp_path / "junk.safetensors")


def test_student_registry_builds_every_architecture():
    from mocha.core.registry import Registry
    from mocha.errors import ConfigError
    from mocha.models.detector import STUDENTS, create_student, list_students

    assert isinstance(STUDENTS, Registry) and list_students()[0] == "yolov8n"
    dims = {}
    for name in list_students():
        if name == "nanodet-g":  # ships fixed COCO-80 weights: tests/test_nanodet.py
            continue
        s = create_student(name, ["a", "b"])
        assert s.names == ["a", "b"] and s.strides == (8, 16, 32)
        dims[name] = s.region_dim
    assert dims["yolov8n"] == 448 and dims["yolov8s"] == 896  # the scale comes from the name, not a default
    with pytest.raises(ConfigError, match="unknown student 'yolov8x'.*did you mean"):
        create_student("yolov8x", ["a"])
