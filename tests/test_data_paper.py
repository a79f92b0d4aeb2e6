"""Paper-dataset layouts (generated replicas): dispatch, idmap resolution, episodes, POD's seeded draw, errors."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from mocha.data.dataset import load_dataset, load_episodes
from mocha.data.records import read_split
from mocha.errors import DataError
from tests.fixtures_data import make_paper_dataset

LAYOUTS = ["perseg", "core50", "icubworld", "pod"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("hint", [True, False])
def test_layouts_load_like_ours(tmp_path, layout, hint):
    spec = load_dataset(make_paper_dataset(tmp_path / layout, layout, hint=hint))
    expected = layout if hint or layout != "icubworld" else "core50"  # iCubWorld reads like CORe50
    assert spec.layout == expected
    assert spec.names == ["bottle", "toy"]
    assert [spec.instances[i].name for i in range(4)] == [f"obj{i}" for i in range(4)]
    # idmap: "0" → "0" (id), "1" → "toy", "2" → "bottle", "3" → "1" (id)
    assert [spec.coarse_of(i) for i in range(4)] == [0, 1, 0, 1]
    recs = read_split(spec, "personal")
    assert len(recs) == (4 * 3 + 4 * 2 + 4 if layout == "pod" else 12)
    assert all(r.coarse.tolist() == [spec.coarse_of(int(r.instance[0]))] for r in recs)
    split, eps = load_episodes(spec, shots=1, n=3)
    assert split == "personal" and len(eps) == 3
    for e in eps:
        assert sorted(e.support) == [0, 1, 2, 3] and all(len(v) == 1 for v in e.support.values())
        used = {i for v in e.support.values() for i in v}
        assert not used & set(e.query)


@pytest.mark.parametrize("layout", ["perseg", "core50", "icubworld"])
def test_episode_files_are_followed(tmp_path, layout):
    path = make_paper_dataset(tmp_path / layout, layout)
    spec = load_dataset(path)
    raw = json.loads((path.parent / "episodes_1shot.json").read_text())
    raw = [raw[k] for k in sorted(raw, key=int)] if isinstance(raw, dict) else raw
    split, eps = load_episodes(spec, shots=1, n=10)
    recs = read_split(spec, split)
    assert len(eps) == 3
    for ep, want in zip(eps, raw, strict=True):
        assert sorted(recs[i].image.name for v in ep.support.values() for i in v) == sorted(want["train"])
        assert [recs[i].image.name for i in ep.query] == want["val"]
    if layout == "perseg":  # the 2-shot file is found by its name
        assert all(len(v) == 2 for v in load_episodes(spec, shots=2)[1][0].support.values())


def test_pod_draw_matches_python_random(tmp_path):
    path = make_paper_dataset(tmp_path / "pod", "pod")
    spec = load_dataset(path)
    assert set(spec.splits) == {"personal", "train", "val"} and sorted(spec.episodes["personal"]) == [1, 2]
    classes = json.loads((path.parent / "train_classes.json").read_text())
    state = random.getstate()
    split, eps = load_episodes(spec, shots=2, n=4)
    assert random.getstate() == state  # the global RNG is left alone
    recs = read_split(spec, split)
    for e, ep in enumerate(eps):
        random.seed(e)
        want = {i: sorted(random.sample(classes[f"obj{i}"], 2)) for i in range(4)}
        assert {i: sorted(recs[j].image.name for j in v) for i, v in ep.support.items()} == want
        assert all("/train/" in str(recs[j].image) for v in ep.support.values() for j in v)
        assert sorted(recs[j].image.parent.parent.name for j in ep.query) == ["val1"] * 8 + ["val2"] * 4
    assert len(read_split(spec, "val")) == 12 and len(read_split(spec, "train")) == 12


def test_pod_same_file_names_in_train_and_val(tmp_path):
    path = make_paper_dataset(tmp_path / "pod", "pod")
    val_img = path.parent / "val1/images/va00_00.jpg"
    val_img.rename(path.parent / "val1/images/tr00_00.jpg")
    (path.parent / "val1/labels/va00_00.txt").rename(path.parent / "val1/labels/tr00_00.txt")
    spec = load_dataset(path)
    split, eps = load_episodes(spec, shots=1, n=5)
    recs = read_split(spec, split)
    assert all("/train/" in str(recs[j].image) for e in eps for v in e.support.values() for j in v)


def _edit(path, **changes):
    doc = yaml.safe_load(path.read_text())
    doc.update(changes)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"idmap": {"0": "bottle", "1": "sofa", "2": 0, "3": 1}}, r"idmap coarse 'sofa' is neither an id nor a name"),
        ({"idmap": {"0": 0, "1": 1, "2": 0, "obj9": 1}}, r"idmap fine 'obj9' is neither"),
        ({"idmap": {"0": 0, "1": 1, "2": 0}}, r"idmap has no coarse class for instance\(s\) obj3"),
        ({"idmap": [0, 1]}, r"`idmap` must map instance"),
        ({"layout": "coco"}, r"unknown layout 'coco'"),
        ({"fine_names": []}, r"`fine_names` must be a non-empty list"),
    ],
)
def test_bad_paper_yaml(tmp_path, changes, message):
    path = _edit(make_paper_dataset(tmp_path / "p", "perseg"), **changes)
    with pytest.raises(DataError, match=rf"dataset\.yaml: {message}"):
        load_dataset(path)


def test_paper_yaml_needs_all_keys(tmp_path):
    (tmp_path / "d.yaml").write_text("coarse_names: [a]\nfine_names: [x]\n")
    with pytest.raises(DataError, match=r"d\.yaml: paper-dataset YAML needs `idmap`"):
        load_dataset(tmp_path / "d.yaml")


@pytest.mark.parametrize(
    "content, message",
    [
        ([{"train": ["ghost.jpg"], "val": []}], r"episode 0 names support image 'ghost\.jpg', which is not in"),
        ([{"train": ["img00_00.jpg"], "val": ["nope.jpg"]}], r"episode 0 names query image 'nope\.jpg'"),
        ([{"train": ["img00_00.jpg"]}], r"episode 0: needs 'train' \(support\) and 'val' \(query\)"),
        ({"a": {"train": [], "val": []}}, r"episodes must be a list or a dict keyed by episode index"),
        ([], r"episode file lists no episodes"),
    ],
)
def test_bad_paper_episode_files(tmp_path, content, message):
    path = make_paper_dataset(tmp_path / "p", "core50")
    (path.parent / "episodes_1shot.json").write_text(json.dumps(content))
    with pytest.raises(DataError, match=rf"episodes_1shot\.json: {message}"):
        load_episodes(load_dataset(path), shots=1, n=3)


def test_bad_pod_class_file(tmp_path):
    path = make_paper_dataset(tmp_path / "pod", "pod")
    classes = path.parent / "train_classes.json"
    classes.write_text(json.dumps({"obj0": ["tr00_00.jpg"], "obj1": ["tr01_00.jpg", "tr01_01.jpg"]}))
    with pytest.raises(DataError, match=r"train_classes\.json: instance obj0 lists 1 images, 2-shot episodes need 2"):
        load_episodes(load_dataset(path), shots=2)
    classes.write_text(json.dumps({"obj7": ["tr00_00.jpg"]}))
    with pytest.raises(DataError, match=r"train_classes\.json: unknown instance 'obj7'"):
        load_episodes(load_dataset(path), shots=1)
    classes.write_text(json.dumps({"obj0": ["va00_00.jpg"]}))  # a query image is not a support candidate
    with pytest.raises(DataError, match=r"episode 0 names support image 'va00_00\.jpg'"):
        load_episodes(load_dataset(path), shots=1)
