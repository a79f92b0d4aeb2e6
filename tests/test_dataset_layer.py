"""Data layer on small real files: schema, validation of bad input, loader frames, episodes, paper layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mocha.data.episodes import load_episodes
from mocha.data.images import letterbox
from mocha.data.loader import DetectionDataset, collate, yolo_targets
from mocha.data.records import SkipReport, read_split
from mocha.data.schema import load_dataset
from mocha.errors import DataError
from tests.fixtures_datasets import make_mocha_dataset, make_paper_dataset, write_image, write_label


@pytest.fixture()
def ds(tmp_path):
    return make_mocha_dataset(tmp_path / "ds")


def test_schema_and_records(ds):
    spec = load_dataset(ds)
    assert spec.names == ["mug", "ball", "can"] and len(spec.instances) == 6
    recs = read_split(spec, "personal")
    assert len(recs) == 24
    r = recs[0]
    assert r.boxes.shape == (2, 4) and r.instance.tolist() == [0, 3]
    assert r.coarse.tolist() == [spec.coarse_of(0), spec.coarse_of(3)]
    base = read_split(spec, "base_train")
    assert (base[0].instance == -1).all() and base[0].size == (64, 48)


def _bad(ds, split_dir: str, name: str, text: str):
    write_image(ds.parent / split_dir / "images" / f"{name}.png", seed=7)
    write_label(ds.parent / split_dir / "labels" / f"{name}.txt", [])
    (ds.parent / split_dir / "labels" / f"{name}.txt").write_text(text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 0.5 0.5 0.2\n", r"bad0\.txt:1: expected 5 fields"),
        ("0 0.5 0.5 0.2 0.2\n1 a 0.5 0.2 0.2\n", r"bad0\.txt:2: non-numeric"),
        ("0 0.95 0.5 0.2 0.2\n", r"bad0\.txt:1: box .* outside the image"),
        ("0 0.5 0.5 0.0 0.2\n", r"bad0\.txt:1: box has zero"),
        ("7 0.5 0.5 0.2 0.2\n", r"bad0\.txt:1: class id 7 not in"),
    ],
)
def test_bad_label_lines_name_file_and_line(ds, text, message):
    _bad(ds, "base/train", "bad0", text)
    spec = load_dataset(ds)
    with pytest.raises(DataError, match=message):
        read_split(spec, "base_train")
    report = SkipReport()
    recs = read_split(spec, "base_train", skip_bad=True, report=report)
    assert len(recs) == 6 and len(report) == 1 and "bad0.txt" in report.items[0]


def test_unknown_instance_id(ds):
    _bad(ds, "personal", "bad1", "99 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"bad1\.txt:1: instance id 99 not in"):
        read_split(load_dataset(ds), "personal")


def test_image_without_label_and_label_without_image(ds):
    write_image(ds.parent / "base/train/images/lonely.png", seed=3)
    with pytest.raises(DataError, match=r"lonely\.png: image has no label file"):
        read_split(load_dataset(ds), "base_train")
    (ds.parent / "base/train/images/lonely.png").unlink()
    write_label(ds.parent / "base/train/labels/orphan.txt", [(0, 0.5, 0.5, 0.2, 0.2)])
    with pytest.raises(DataError, match=r"orphan\.txt: label file has no image"):
        read_split(load_dataset(ds), "base_train")
    report = SkipReport()
    assert len(read_split(load_dataset(ds), "base_train", skip_bad=True, report=report)) == 6
    assert "orphan.txt" in report.items[0]


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
def test_corrupt_images(ds, kind, tmp_path):
    img = ds.parent / "base/train/images/img000.png"
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2] if kind == "truncated" else b"\x89PNG not really an image")
    with pytest.raises(DataError, match=r"img000\.png: unreadable or corrupt image"):
        read_split(load_dataset(ds), "base_train")
    assert len(read_split(load_dataset(ds), "base_train", skip_bad=True)) == 5


def test_empty_dataset(tmp_path, ds):
    for p in (ds.parent / "base/val/images").iterdir():
        p.unlink()
    for p in (ds.parent / "base/val/labels").iterdir():
        p.unlink()
    with pytest.raises(DataError, match=r"base/val/images: split 'base_val' has no usable images"):
        read_split(load_dataset(ds), "base_val")


def test_yaml_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope.yaml")
    (tmp_path / "a.yaml").write_text("names: [a]\nsplits: {x: {images: i, label_ids: fine}}\n")
    with pytest.raises(DataError, match="label_ids must be"):
        load_dataset(tmp_path / "a.yaml")


def test_letterbox_round_trip_and_loader(ds):
    img = np.zeros((48, 64, 3), np.uint8)
    out, lb = letterbox(img, 96)
    assert out.shape == (96, 96, 3) and lb.pad_x == 0 and lb.pad_y == 12
    boxes = np.array([[3.0, 4.0, 50.0, 40.0], [0.0, 0.0, 64.0, 48.0]], np.float32)
    np.testing.assert_allclose(lb.to_original(lb.to_letterbox(boxes)), boxes, atol=1e-4)
    dset = DetectionDataset(read_split(load_dataset(ds), "personal"), imgsz=96)
    batch = collate([dset[0], dset[1]])
    assert batch["images"].shape == (2, 3, 96, 96) and 0 <= batch["images"].min() and batch["images"].max() <= 1
    # the letterboxed box maps back to the normalized label
    b0 = batch["letterbox"][0].to_original(batch["boxes"][0].numpy())
    cx = (b0[0, 0] + b0[0, 2]) / 2 / 64
    assert abs(cx - float(batch["boxes_norm"][0][0, 0])) < 1e-3
    t = yolo_targets(batch)
    assert t["bboxes"].shape == (4, 4) and t["batch_idx"].tolist() == [0, 0, 1, 1] and torch.all(t["bboxes"] <= 1)


def test_seeded_episodes(ds):
    spec = load_dataset(ds)
    split, recs, eps = load_episodes(spec, shots=1, n=5)
    assert split == "personal" and len(eps) == 5
    again = load_episodes(spec, shots=1, n=5)[2]
    assert [e.support for e in eps] == [e.support for e in again]
    for ep in eps:
        used = {i for v in ep.support.values() for i in v}
        assert not used & set(ep.query) and len(ep.support) == 6
    with pytest.raises(DataError, match="need at least"):
        load_episodes(spec, shots=8, n=1)


@pytest.mark.parametrize("layout", ["perseg", "core50", "icubworld", "pod"])
def test_paper_layouts(tmp_path, layout):
    path = make_paper_dataset(tmp_path / layout, layout)
    spec = load_dataset(path)
    assert spec.layout == ("core50" if layout == "core50" else layout)
    assert spec.names == ["bottle", "toy"] and spec.instances[1].coarse == 1 and spec.instances[3].coarse == 1
    split, recs, eps = load_episodes(spec, shots=1, n=3)
    assert len(eps) == 3 and all(len(e.support) == 4 for e in eps)
    for e in eps:
        for inst, idx in e.support.items():
            assert all(inst in recs[i].instance for i in idx)
    if layout == "pod":
        assert all("/val" in str(recs[i].image) for i in eps[0].query)
        import random

        random.seed(1)
        first = random.sample([f"tr00_{j:02d}.jpg" for j in range(3)], 1)[0]
        assert recs[eps[1].support[0][0]].image.name == first


def test_episode_file_naming_missing_image(tmp_path):
    path = make_paper_dataset(tmp_path / "p", "perseg")
    f = tmp_path / "p" / "episodes_1shot.json"
    f.write_text('[{"train": ["ghost.jpg"], "val": []}]')
    with pytest.raises(DataError, match="episode 0 names support image 'ghost.jpg'"):
        load_episodes(load_dataset(path), shots=1, n=1)
