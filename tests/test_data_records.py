"""mocha.data schema + split reading on small real files, including every bad-input case."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from mocha.data.dataset import load_dataset
from mocha.data.records import Records, SkipReport, read_split
from mocha.errors import DataError
from tests.fixtures_data import make_many_images, make_yolo_dataset, write_image, write_label


@pytest.fixture()
def ds(tmp_path):
    return make_yolo_dataset(tmp_path / "ds")


def test_schema_fields(ds):
    spec = load_dataset(ds)
    assert spec.names == ["mug", "bottle", "ball"] and spec.root == ds.parent.resolve()
    assert spec.instances[4].name == "bottle-4" and spec.coarse_of(4) == 1
    assert spec.splits["personal"].label_ids == "instance"
    assert spec.splits["base_val"].labels == (ds.parent / "base/val/labels").resolve()
    assert spec.episodes["personal"][1].seed == 0 and spec.episodes["personal"][1].count == 5
    with pytest.raises(DataError, match="unknown instance id 99"):
        spec.coarse_of(99)


def test_schema_alternatives(tmp_path):
    (tmp_path / "d.yaml").write_text(
        "root: data\nnames: {0: cat, 1: dog}\ninstances: {7: {name: rex, coarse: dog}}\n"
        "splits:\n  p: {images: pics/images, labels: anns, label_ids: instance}\n"
    )
    spec = load_dataset(tmp_path / "d.yaml")
    assert spec.names == ["cat", "dog"] and spec.coarse_of(7) == 1
    assert spec.splits["p"].labels == (tmp_path / "data/anns").resolve()


def test_records_content(ds):
    spec = load_dataset(ds)
    recs = read_split(spec, "personal")
    assert isinstance(recs, Records) and isinstance(recs, list) and len(recs) == 24 and len(recs.skipped) == 0
    assert [r.image.name for r in recs] == sorted(r.image.name for r in recs)
    r = recs[5]  # primary instance 1 (coarse 1), other instance 4 (coarse 1)
    assert r.instance.tolist() == [1, 4] and r.coarse.tolist() == [1, 1]
    assert r.boxes.dtype == np.float32 and r.boxes.shape == (2, 4) and r.size == (64, 48)
    np.testing.assert_allclose(r.boxes[0], [0.25, 0.5, 0.3, 0.4], atol=1e-6)
    base = read_split(spec, "base_train")
    assert base[1].coarse.tolist() == [1, 2] and (base[1].instance == -1).all()


def test_empty_label_file_is_background(ds):
    write_image(ds.parent / "base/train/images/bg.png", seed=1)
    write_label(ds.parent / "base/train/labels/bg.txt", [])
    recs = read_split(load_dataset(ds), "base_train")
    bg = next(r for r in recs if r.image.name == "bg.png")
    assert bg.boxes.shape == (0, 4) and bg.coarse.shape == (0,) and bg.instance.shape == (0,)


def _bad_label(ds, split_dir: str, text: str, name: str = "bad"):
    write_image(ds.parent / split_dir / "images" / f"{name}.png", seed=7)
    (ds.parent / split_dir / "labels" / f"{name}.txt").write_text(text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 0.5 0.5 0.2\n", r"bad\.txt:1: expected 5 fields"),
        ("0 0.5 0.5 0.2 0.2 0.1\n", r"bad\.txt:1: expected 5 fields .* got 6"),
        ("0 0.5 0.5 0.2 0.2\n\n1 a 0.5 0.2 0.2\n", r"bad\.txt:3: non-numeric field"),
        ("0 0.5 nan 0.2 0.2\n", r"bad\.txt:1: non-finite"),
        ("1.5 0.5 0.5 0.2 0.2\n", r"bad\.txt:1: class id must be a non-negative integer"),
        ("-1 0.5 0.5 0.2 0.2\n", r"bad\.txt:1: class id must be a non-negative integer"),
        ("0 0.95 0.5 0.2 0.2\n", r"bad\.txt:1: box 0.95 0.5 0.2 0.2 extends outside the image"),
        ("0 0.5 0.05 0.2 0.2\n", r"bad\.txt:1: box .* extends outside"),
        ("0 0.5 0.5 0 0.2\n", r"bad\.txt:1: box has zero or negative area"),
        ("3 0.5 0.5 0.2 0.2\n", r"bad\.txt:1: class id 3 not in the dataset's names \(0\.\.2\)"),
    ],
)
def test_bad_label_line(ds, text, message):
    _bad_label(ds, "base/train", text)
    spec = load_dataset(ds)
    with pytest.raises(DataError, match=message):
        read_split(spec, "base_train")
    recs = read_split(spec, "base_train", skip_bad=True)
    assert len(recs) == 6 and len(recs.skipped) == 1 and "bad.txt" in recs.skipped.items[0]


def test_border_slack(ds):
    _bad_label(ds, "base/train", "0 0.1000005 0.5 0.2 0.2\n2 0.5 0.5 1.0 1.0\n")
    recs = read_split(load_dataset(ds), "base_train")
    assert len(recs) == 7


def test_unknown_instance_id(ds):
    _bad_label(ds, "personal", "0 0.5 0.5 0.2 0.2\n99 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: instance id 99 not in the dataset's instances"):
        read_split(load_dataset(ds), "personal")


def test_skip_bad_logs_every_line(ds, caplog):
    _bad_label(ds, "base/train", "0 0.5 0.5 0.2\n0 0.5 0.5 0.2 0.2\n9 0.5 0.5 0.2 0.2\n")
    write_image(ds.parent / "base/train/images/nolabel.png", seed=2)
    report = SkipReport()
    with caplog.at_level(logging.WARNING, logger="mocha.data"):
        recs = read_split(load_dataset(ds), "base_train", skip_bad=True, report=report)
    assert len(recs) == 6 and recs.skipped is report
    assert [m.split(": ")[0].rsplit("/", 1)[-1] for m in report] == ["bad.txt:1", "bad.txt:3", "nolabel.png"]
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 3


def test_image_without_label_and_label_without_image(ds):
    write_image(ds.parent / "base/train/images/lonely.png", seed=3)
    with pytest.raises(DataError, match=r"lonely\.png: image has no label file \(expected .*lonely\.txt"):
        read_split(load_dataset(ds), "base_train")
    (ds.parent / "base/train/images/lonely.png").unlink()
    write_label(ds.parent / "base/train/labels/orphan.txt", [(0, 0.5, 0.5, 0.2, 0.2)])
    with pytest.raises(DataError, match=r"orphan\.txt: label file has no image in .*base/train/images"):
        read_split(load_dataset(ds), "base_train")
    recs = read_split(load_dataset(ds), "base_train", skip_bad=True)
    assert len(recs) == 6 and "orphan.txt" in recs.skipped.items[0]


def test_two_images_sharing_a_label(ds):
    write_image(ds.parent / "base/train/images/b000.jpg", seed=3)
    with pytest.raises(DataError, match=r"b000\.png: shares its label file b000\.txt with b000\.jpg"):
        read_split(load_dataset(ds), "base_train")


@pytest.mark.parametrize("kind", ["truncated_jpeg", "truncated_png", "random_bytes", "empty_file"])
def test_corrupt_images(ds, kind):
    img = ds.parent / "base/train/images/b002.png"
    if kind == "truncated_jpeg":
        img.unlink()
        img = write_image(ds.parent / "base/train/images/b002.jpg", seed=5)
        img.write_bytes(img.read_bytes()[:-300])
    elif kind == "truncated_png":
        img.write_bytes(img.read_bytes()[: img.stat().st_size // 2])
    else:
        img.write_bytes(np.random.default_rng(0).bytes(500) if kind == "random_bytes" else b"")
    spec = load_dataset(ds)
    for full in (False, True):
        with pytest.raises(DataError, match=rf"{img.name}: unreadable or corrupt image"):
            read_split(spec, "base_train", verify_images=full)
    recs = read_split(spec, "base_train", skip_bad=True)
    assert len(recs) == 5 and img.name in recs.skipped.items[0]


def test_empty_and_missing_folders(ds):
    for sub in ("images", "labels"):
        for p in (ds.parent / "base/val" / sub).iterdir():
            p.unlink()
    with pytest.raises(DataError, match=r"base/val/images: split 'base_val' has no usable images"):
        read_split(load_dataset(ds), "base_val")
    with pytest.raises(DataError, match=r"no split 'nope' \(splits: base_train, base_val, personal\)"):
        read_split(load_dataset(ds), "nope")
    (ds.parent / "base/val/images").rmdir()
    with pytest.raises(DataError, match=r"base/val/images: images folder of split 'base_val' does not exist"):
        read_split(load_dataset(ds), "base_val")


def test_all_bad_with_skip_still_errors(ds):
    for p in (ds.parent / "base/val/labels").iterdir():
        p.write_text("0 2 2 1 1\n")
    with pytest.raises(DataError, match=r"has no usable images \(6 skipped\)"):
        read_split(load_dataset(ds), "base_val", skip_bad=True)


@pytest.mark.parametrize(
    "text, message",
    [
        ("names: [a]\nsplits: {x: {images: i, label_ids: fine}}\n", r"d\.yaml: split 'x': label_ids must be"),
        ("format: other/2\nnames: [a]\n", r"d\.yaml: unsupported format 'other/2'"),
        ("names: []\nsplits: {x: i}\n", r"d\.yaml: `names` must be a non-empty list"),
        ("names: {0: a, 2: b}\nsplits: {x: i}\n", r"d\.yaml: `names` ids must be 0\.\.1"),
        ("names: [a]\n", r"d\.yaml: no `splits` defined"),
        ("names: [a]\nsplits: {x: {labels: l}}\n", r"d\.yaml: split 'x' needs `images`"),
        ("names: [a]\ninstances: {0: {coarse: 3}}\nsplits: {x: i}\n", r"instance 0 has coarse id 3 outside"),
        ("names: [a]\ninstances: {0: {coarse: dog}}\nsplits: {x: i}\n", r"instance 0: coarse 'dog' is neither"),
        ("names: [a]\ninstances: {0: {name: z}}\nsplits: {x: i}\n", r"instance 0 needs `coarse`"),
        ("names: [a]\nsplits: {x: {images: i, label_ids: instance}}\n", r"uses instance ids but .* no `instances`"),
        ("names: [a]\nsplits: {x: i}\nepisodes: {y: {1: e.json}}\n", r"episodes given for unknown split 'y'"),
        ("names: [a]\nsplits: {x: i}\nepisodes: {x: {1: e.json}}\n", r"split 'x', which is not labelled with inst"),
        (
            "names: [a]\ninstances: {0: {coarse: 0}}\nsplits: {x: {images: i, label_ids: instance}}\n"
            "episodes: {x: {one: e.json}}\n",
            r"episodes\[x\]: shot count 'one' must be a positive integer",
        ),
        (
            "names: [a]\ninstances: {0: {coarse: 0}}\nsplits: {x: {images: i, label_ids: instance}}\n"
            "episodes: {x: {1: {seed: 0, cnt: 3}}}\n",
            r"episodes\[x\]\[1\]: must be an episode file path or \{seed",
        ),
        ("names: [a\n", r"d\.yaml: invalid YAML"),
        ("- a\n- b\n", r"d\.yaml: expected a mapping at the top level"),
    ],
)
def test_yaml_errors(tmp_path, text, message):
    (tmp_path / "d.yaml").write_text(text)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "d.yaml")


def test_yaml_not_found(tmp_path):
    with pytest.raises(DataError, match=r"nope\.yaml: dataset YAML not found"):
        load_dataset(tmp_path / "nope.yaml")


def test_reading_1000_images_is_fast(tmp_path):
    spec = load_dataset(make_many_images(tmp_path / "big", n=1000))
    t0 = time.perf_counter()
    recs = read_split(spec, "all")
    elapsed = time.perf_counter() - t0
    assert len(recs) == 1000 and sum(len(r.boxes) for r in recs) == 2000
    assert elapsed < 3.0, f"read_split of 1000 images took {elapsed:.2f}s"


def test_labels_beside_images_and_folder_path(tmp_path):
    write_image(tmp_path / "pics/a.png", seed=1)
    write_label(tmp_path / "pics/a.txt", [(1, 0.5, 0.5, 0.2, 0.2)])
    (tmp_path / "d.yaml").write_text("names: [x, y]\nsplits: {s: pics}\n")
    spec = load_dataset(tmp_path)  # the folder holding exactly one YAML
    assert spec.splits["s"].labels == spec.splits["s"].images == (tmp_path / "pics").resolve()
    assert read_split(spec, "s")[0].coarse.tolist() == [1]
    (tmp_path / "e.yml").write_text("names: [x]\n")
    with pytest.raises(DataError, match=r"expected exactly one dataset YAML in the folder \(found d\.yaml, e\.yml\)"):
        load_dataset(tmp_path)
