"""The soft coarse prior (the detector's enrolment votes scale the coarse penalty) and one box per instance: the
matching functions on hand-made numbers, the gallery storing the votes, and a Personalizer on a tiny bundle."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from mocha.personalize.gallery import Gallery, Support
from mocha.personalize.matching import coarse_prior, one_box_per_instance, prior_similarities
from mocha.personalize.personalizer import Personalizer, box_votes
from tests.test_personalize_api import make_bundle, scene


def test_coarse_prior_weights():
    assert coarse_prior(2, None, 4).tolist() == [0, 0, 1, 0]  # a class the user gave: only it
    w = coarse_prior(1, {1: 0.4, 3: 0.2, 0: 0.8, 9: 1.0}, 4)  # out-of-range ids ignored, capped at 1
    assert w.tolist() == pytest.approx([1.0, 1.0, 0.0, 0.5])


def test_penalty_scaled_by_the_prior():
    emb = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    protos = np.eye(2, dtype=np.float32)
    box_coarse, inst_coarse = np.array([0, 1]), np.array([1, 1])
    hard = prior_similarities(emb, protos, box_coarse, inst_coarse, 0.5)
    np.testing.assert_allclose(hard, [[0.5, -0.5], [0.0, 1.0]], atol=1e-6)
    prior = np.stack([coarse_prior(1, {1: 1.0, 0: 0.8}, 2), coarse_prior(1, None, 2)])
    soft = prior_similarities(emb, protos, box_coarse, inst_coarse, 0.5, prior)
    # box 0 is class 0: instance 0 voted 0.8 for it (penalty × 0.2), instance 1 did not (the full penalty)
    np.testing.assert_allclose(soft, [[0.9, -0.5], [0.0, 1.0]], atol=1e-6)
    inf = prior_similarities(emb, protos, box_coarse, inst_coarse, float("inf"), prior)
    assert inf[0].tolist() == [-1.0, -1.0]  # inf stays the conditional learner: the instance's own class only


def test_one_box_per_instance():
    named = np.array([3, 3, -1, 5, 3, 5])
    sim = np.array([0.2, 0.6, 0.9, np.nan, 0.4, 0.1], np.float32)
    assert one_box_per_instance(named, sim).tolist() == [-1, 3, -1, -1, -1, 5]
    assert one_box_per_instance(np.zeros(0, np.int64), np.zeros(0)).tolist() == []


def test_box_votes_take_each_class_best_overlap():
    dets = np.array([[0, 0, 10, 10, 0.5, 2], [0, 0, 10, 9, 0.9, 2], [0, 0, 10, 10, 0.3, 7],
                     [50, 50, 60, 60, 0.99, 1]], np.float32)
    v = box_votes(np.array([0, 0, 10, 10], np.float32), dets)
    assert set(v) == {2, 7} and v[2] == pytest.approx(0.81) and v[7] == pytest.approx(0.3)
    assert box_votes(np.array([0, 0, 10, 10], np.float32), np.zeros((0, 6), np.float32)) == {}


def test_gallery_keeps_votes_per_support(tmp_path):
    g = Gallery.create(tmp_path / "g.gallery", "d", None, 2)
    e = np.ones(2, np.float32)
    g.add("cup", 1, "cup", [Support("a.jpg", "x", [0, 0, 1, 1], "user", e, coarse_votes={1: 0.5, 4: 0.25})])
    g.add("cup", 1, "cup", [Support("b.jpg", "y", [0, 0, 1, 1], "user", e, coarse_votes={4: 0.5})], append=True)
    g.add("pen", 0, "pen", [Support("c.jpg", "z", [0, 0, 1, 1], "user", e)])
    g.close()
    with Gallery(tmp_path / "g.gallery") as g:
        recs = {r.name: r for r in g.instances(supports=True)}
    assert recs["cup"].coarse_votes() == {1: 0.5, 4: 0.75} and recs["pen"].coarse_votes() is None


def test_a_v2_gallery_migrates_with_no_votes(tmp_path):
    path = tmp_path / "old.gallery"
    g = Gallery.create(path, "d", None, 2)
    g.add("pen", 0, "pen", [Support("c.jpg", "z", [0, 0, 1, 1], "user", np.ones(2, np.float32))])
    g.close()
    con = sqlite3.connect(path)  # what a v2 file looks like: no votes column
    con.execute("ALTER TABLE supports DROP COLUMN coarse_votes")
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    with Gallery(path) as g:
        assert g.schema_version == 3 and g.get("pen").coarse_votes() is None


def test_personalizer_prior_survives_a_reload(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    img = scene(3)
    gpath = tmp_path / "me.gallery"
    kw = {"conf": 0.0, "max_det": 30, "enroll_conf": 0.0, "support_scale": 0, "coarse_penalty": 0.5}
    with Personalizer.load(bundle, gallery=gpath, **kw) as p:
        voted = p.enroll("thing", img, boxes=[[40, 30, 200, 150]])  # the class left to the detector
        p.enroll("given", img, boxes=[[10, 10, 90, 90]], coarse="ball")  # the user's class: no votes
        _, _, _, prior = p._gallery_matrix()
        votes = p.gallery.get("thing").supports[0].coarse_votes
        auto = p.enroll("auto", img)  # the detector's best box votes once, with its confidence (IoU 1 with itself)
        auto_votes = p.gallery.get("auto").supports[0].coarse_votes
        assert auto_votes[p.names.index(auto.coarse)] == pytest.approx(auto.shots[0]["det_conf"], rel=1e-5)
        p.remove("auto")
        assert votes and p.names.index(voted.coarse) in votes and p.gallery.get("given").coarse_votes() is None
        r = p.detect(img, min_similarity=-1.0)
    assert voted.coarse in p.names and prior[1].tolist() == [0.0, 1.0, 0.0]
    assert prior[0].max() == 1.0 and (prior[0] > 0).sum() >= 1
    with Personalizer.load(bundle, gallery=gpath, **kw) as q:  # the votes come back from the file
        assert np.array_equal(q._gallery_matrix()[3], prior)
        again = q.detect(img, min_similarity=-1.0)
    assert np.allclose(again.similarities, r.similarities)
    named = r.boxes.instance[r.boxes.instance >= 0]
    assert len(named) == len(set(named.tolist())) <= 2  # one box per instance, even with no threshold


def test_corrupt_votes_are_one_clear_error(tmp_path):
    from mocha.errors import ConfigError

    path = tmp_path / "g.gallery"
    g = Gallery.create(path, "d", None, 2)
    g.add("a", 0, "a", [Support("x", "y", [0, 0, 1, 1], "user", np.ones(2, np.float32), coarse_votes={0: 1.0})])
    g.close()
    for bad in ("[1, 2]", "{not json", '{"x": 1}'):
        con = sqlite3.connect(path)
        con.execute("UPDATE supports SET coarse_votes = ?", (bad,))
        con.commit()
        con.close()
        with Gallery(path) as g, pytest.raises(ConfigError, match="gallery rows are corrupt"):
            g.instances(supports=True)
