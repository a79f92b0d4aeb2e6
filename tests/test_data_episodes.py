"""Few-shot episodes: the exact seeded draw, episode files (ours), and every bad-episode error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from mocha.data.dataset import load_dataset, load_episodes
from mocha.data.episodes import draw_episodes, images_by_instance, write_episode_file
from mocha.data.records import read_split
from mocha.errors import DataError
from tests.fixtures_data import make_yolo_dataset


@pytest.fixture()
def ds(tmp_path):
    return make_yolo_dataset(tmp_path / "ds")


def test_images_by_instance(ds):
    recs = read_split(load_dataset(ds), "personal")
    by = images_by_instance(recs)
    # instance i is primary in images 4i..4i+3 and secondary in the images of instance i-3
    assert by[0] == [0, 1, 2, 3, 12, 13, 14, 15] and list(by) == list(range(6))


def test_seeded_draw_follows_the_documented_procedure(ds):
    spec = load_dataset(ds)
    split, eps = load_episodes(spec, shots=2, n=4, seed=3)
    recs = read_split(spec, split)
    by = images_by_instance(recs)
    assert split == "personal" and [e.index for e in eps] == [0, 1, 2, 3]
    for e, ep in enumerate(eps):
        rng = np.random.default_rng(3 + e)
        expected = {i: sorted(rng.choice(by[i], size=2, replace=False).tolist()) for i in sorted(by)}
        assert ep.support == expected
        used = {i for v in ep.support.values() for i in v}
        assert ep.query == [i for i in range(len(recs)) if i not in used]
        for inst, idx in ep.support.items():
            assert all(inst in recs[i].instance for i in idx)
    assert eps[0].support != eps[1].support
    assert [e.support for e in load_episodes(spec, shots=2, n=4, seed=3)[1]] == [e.support for e in eps]


def test_yaml_draw_source_sets_seed_and_caps_count(ds):
    spec = load_dataset(ds)  # personal: {1: {seed: 0, count: 5}}
    split, eps = load_episodes(spec, shots=1, n=100)
    assert len(eps) == 5
    recs = read_split(spec, split)
    assert [e.support for e in eps] == [e.support for e in draw_episodes(recs, 1, 5, seed=0)]
    assert [e.support for e in load_episodes(spec, shots=1, n=2, seed=7)[1]] == [
        e.support for e in draw_episodes(recs, 1, 2, seed=7)
    ]
    # no YAML source for 3 shots: n episodes drawn with `seed`
    assert len(load_episodes(spec, shots=3, n=6)[1]) == 6


def test_records_argument_is_used(ds):
    spec = load_dataset(ds)
    recs = read_split(spec, "personal")
    _, eps = load_episodes(spec, shots=1, n=2, records=recs[:12])
    assert max(max(e.query) for e in eps) < 12 and set(eps[0].support) == {0, 1, 2, 3, 4, 5}


def test_episode_file_round_trip(ds, tmp_path):
    spec = load_dataset(ds)
    split, drawn = load_episodes(spec, shots=2, n=3, seed=11)
    recs = read_split(spec, split)
    out = write_episode_file(ds.parent / "personal/eps2.json", split, 2, drawn, recs, spec.splits[split].images)
    doc = json.loads(out.read_text())
    assert doc["split"] == "personal" and doc["shots"] == 2 and doc["episodes"][0]["support"]["0"][0].endswith(".png")
    y = yaml.safe_load(ds.read_text())
    y["episodes"]["personal"]["2"] = "personal/eps2.json"
    ds.write_text(yaml.safe_dump(y))
    _, again = load_episodes(load_dataset(ds), shots=2, n=100)
    assert [(e.support, e.query) for e in again] == [(e.support, e.query) for e in drawn]
    assert len(load_episodes(load_dataset(ds), shots=2, n=2)[1]) == 2


def _with_file(ds, doc, shots: int = 1):
    (ds.parent / "personal/eps.json").write_text(json.dumps(doc))
    y = yaml.safe_load(ds.read_text())
    y["episodes"]["personal"] = {str(shots): "personal/eps.json"}
    ds.write_text(yaml.safe_dump(y))
    return load_dataset(ds)


def _ep(support, query=("p023.png",)):
    return {"support": support, "query": list(query)}


@pytest.mark.parametrize(
    "episodes, message",
    [
        ([_ep({"0": ["p000.png"]}), _ep({"0": ["ghost.png"]})], r"eps\.json: episode 1 names image 'ghost\.png'"),
        ([_ep({"0": ["p000.png"]}, ["nope/q.png"])], r"episode 0 names image 'nope/q\.png'"),
        ([_ep({"2": ["p000.png"]})], r"eps\.json: episode 0: instance 2 has no support box in .*p000\.png"),
        ([_ep({"0": ["p000.png", "p001.png"]})], r"episode 0: instance 0 has 2 support images, 1-shot needs 1"),
        ([_ep({"42": ["p000.png"]})], r"eps\.json: episode 0: unknown instance 42"),
        ([_ep({"x": ["p000.png"]})], r"episode 0: support key 'x' is not an instance id"),
        ([_ep({"0": ["p000.png"]}, ["p000.png"])], r"episode 0: image p000\.png is both a support and a query"),
        ([{"support": {"0": ["p000.png"]}}], r"episode 0: needs 'support'"),
        ([_ep({})], r"episode 0: no support images"),
        ([], r"eps\.json: episode file lists no episodes"),
    ],
)
def test_bad_episode_files(ds, episodes, message):
    spec = _with_file(ds, {"split": "personal", "shots": 1, "episodes": episodes})
    with pytest.raises(DataError, match=message):
        load_episodes(spec, shots=1)


def test_episode_file_header_mismatch(ds):
    with pytest.raises(DataError, match=r"eps\.json: episodes are 5-shot, not 1-shot"):
        load_episodes(_with_file(ds, {"split": "personal", "shots": 5, "episodes": []}), shots=1)
    with pytest.raises(DataError, match=r"eps\.json: episodes are for split 'other', not 'personal'"):
        load_episodes(_with_file(ds, {"split": "other", "shots": 1, "episodes": []}), shots=1)
    (ds.parent / "personal/eps.json").write_text("{not json")
    with pytest.raises(DataError, match=r"eps\.json: unreadable episode file"):
        load_episodes(load_dataset(ds), shots=1)
    (ds.parent / "personal/eps.json").unlink()
    with pytest.raises(DataError, match=r"eps\.json: episode file not found"):
        load_episodes(load_dataset(ds), shots=1)


def test_draw_errors(ds):
    spec = load_dataset(ds)
    with pytest.raises(DataError, match=r"instance 0: 9-shot episodes need at least 9 images containing it, the split"):
        load_episodes(spec, shots=9, n=1)
    assert len(load_episodes(spec, shots=8, n=1)[1][0].support[0]) == 8  # exactly all of its images is allowed
    with pytest.raises(DataError, match=r"split 'base_train' has coarse labels"):
        load_episodes(spec, shots=1, split="base_train")
    with pytest.raises(DataError, match=r"no split 'x'"):
        load_episodes(spec, shots=1, split="x")


def test_generated_world_episodes_load(tmp_path):
    from mocha.data.world import generate_world

    spec = load_dataset(generate_world(tmp_path / "w", "tiny", progress=False))
    for shots in (1, 5):
        split, eps = load_episodes(spec, shots=shots, n=3)
        assert split == "personal" and len(eps) == 3
        assert all(len(v) == shots for e in eps for v in e.support.values())
