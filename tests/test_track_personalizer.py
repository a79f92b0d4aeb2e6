"""Personalizer.track / detections on a tiny random-weight bundle and the tiny generated clip: the similarity
matrix, one threshold for detect and track, track ids on Results, and the bad inputs (tracker, video, webcam)."""

from __future__ import annotations

import numpy as np
import pytest

from mocha.errors import ConfigError, DataError
from mocha.personalize.personalizer import Personalizer
from mocha.track.frames import Detections
from tests.test_personalize_api import make_bundle


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from mocha.data.world.video import generate_video, load_video_world

    world = load_video_world(generate_video(tmp_path_factory.mktemp("v") / "clips", size="tiny", progress=False))
    return world.clips[0]


@pytest.fixture(scope="module")
def frames(clip):
    return list(clip.read_frames())


@pytest.fixture()
def p(tmp_path_factory, frames):
    bundle = make_bundle(tmp_path_factory.mktemp("b") / "bundle")
    # conf 0: a random detector's boxes all score low; the test needs boxes, not good ones
    per = Personalizer.load(bundle, conf=0.0, max_det=20, min_similarity=0.0)
    per.enroll("a", frames[0], boxes=[[10, 10, 60, 60]], coarse=0)
    per.enroll("b", frames[5], boxes=[[40, 40, 110, 100]], coarse=1)
    per.enroll("c", frames[9], boxes=[[20, 50, 90, 120]], coarse=0)
    yield per
    per.close()


@pytest.mark.parametrize("penalty", [float("inf"), 0.05, 0.0])
def test_similarities_follow_gallery_ids_and_the_coarse_prior(p, frames, penalty):
    p.coarse_penalty = 0.0
    raw = p.detect(frames[3]).similarities  # plain cosine to every instance
    p.coarse_penalty = penalty
    r = p.detect(frames[3])
    assert len(r) > 0
    ids = p.gallery_ids
    assert list(r.gallery_ids) == ids == sorted(ids) and len(ids) == 3
    sims = r.similarities
    assert sims.shape == (len(r), 3)
    coarse_of = {i: c for i, c in zip(ids, [0, 1, 0], strict=True)}  # a, b, c enrolled in id order
    crossed = 0
    for j in range(len(r)):
        for col, i in enumerate(ids):
            if coarse_of[i] != int(r.boxes.cls[j]):  # another class: penalised, or never named with inf
                assert sims[j, col] == pytest.approx(-1.0 if np.isinf(penalty) else raw[j, col] - penalty, abs=1e-6)
            else:
                assert sims[j, col] == pytest.approx(raw[j, col], abs=1e-6)
        if r.boxes.instance[j] >= 0:  # the named instance is the row's best column, at the box's similarity
            col = ids.index(int(r.boxes.instance[j]))
            assert sims[j].argmax() == col
            assert sims[j, col] == pytest.approx(float(r.boxes.similarity[j]), abs=1e-5)
            crossed += coarse_of[ids[col]] != int(r.boxes.cls[j])
    if penalty == 0.0:  # class-agnostic: some box is named as an instance of another class than detected
        assert crossed > 0
    elif np.isinf(penalty):
        assert crossed == 0
    det = p.detections(frames[3])
    assert isinstance(det, Detections)
    np.testing.assert_allclose(det.sim, sims, atol=1e-6)
    np.testing.assert_allclose(det.xyxy, r.boxes.xyxy)
    sub = r[r.boxes.conf > np.median(r.boxes.conf)]  # indexing keeps rows of the matrix in step
    np.testing.assert_allclose(sub.similarities, sims[r.boxes.conf > np.median(r.boxes.conf)])
    p.remove("b")
    assert p.detect(frames[3]).similarities.shape[1] == 2


def test_one_threshold_for_detect_and_track(p, frames):
    assert p.identity_params().none_sim == p.min_similarity == 0.0
    per_frame = p.track(frames[:6], identity="frame")
    for f, r in zip(frames[:6], per_frame, strict=True):
        d = p.detect(f)
        assert r.boxes.id is None
        # the baseline is `detect` naming every box on its own: where detect names a box it agrees, and a box
        # only the baseline names lost its instance to a more similar box (detect's one box per instance)
        both = d.boxes.instance >= 0
        np.testing.assert_array_equal(r.boxes.instance[both], d.boxes.instance[both])
        for j in np.flatnonzero((r.boxes.instance >= 0) & ~both):
            k = r.boxes.instance[j]
            assert (d.boxes.instance == k).sum() == 1
            assert d.boxes.similarity[d.boxes.instance == k][0] >= d.boxes.similarity[j]
    high = p.track(frames[:6], identity="frame", min_similarity=0.99)  # nothing is that similar
    assert all((r.boxes.instance == -1).all() for r in high)


def test_track_yields_results_with_track_ids(p, clip):
    gen = p.track(str(clip.video), stream=True, tracker="bytetrack")
    assert not isinstance(gen, list)
    out = list(gen)
    assert [r.frame for r in out] == list(range(clip.frames))
    assert all(r.boxes.is_track and len(r.boxes.id) == len(r) for r in out)
    assert sum(len(r) for r in out) > 0
    ids = np.concatenate([r.boxes.id for r in out])
    assert (ids >= 1).all()
    # along each track, names switch less than the same boxes' per-frame names (their own similarity rows)
    from mocha.track.identity import frame_identity

    shown: dict[int, list[int]] = {}
    alone: dict[int, list[int]] = {}
    for r in out:
        per_box, _ = frame_identity(r.similarities, p.identity_params())
        for j, tid in enumerate(r.boxes.id.tolist()):
            shown.setdefault(tid, []).append(int(r.boxes.instance[j]))
            alone.setdefault(tid, []).append(p.gallery_ids[per_box[j]] if per_box[j] >= 0 else -1)

    def switches(seqs: dict[int, list[int]]) -> int:  # name → another name (unknown → name not counted)
        return sum(a != b and a >= 0 and b >= 0 for v in seqs.values() for a, b in zip(v, v[1:], strict=False))

    assert switches(shown) < switches(alone)
    js = out[-1].to_json()["detections"]
    assert all("track_id" in d for d in js)
    assert out[-1].plot().shape == out[-1].orig_img.shape


def test_bad_inputs_are_one_clear_error(p, tmp_path, frames):
    with pytest.raises(ConfigError, match="bytetrack"):
        p.track(frames[:2], tracker="bytetrak")
    with pytest.raises(ConfigError, match="identity=x"):
        p.track(frames[:2], identity="x")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DataError, match="cannot decode video"):
        p.track(broken)
    empty = tmp_path / "empty.mp4"
    import cv2

    w = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    w.release()  # a valid container with zero frames
    with pytest.raises(DataError, match="cannot decode video"):
        p.track(empty)
    with pytest.raises(DataError, match="webcam 7"):  # no camera at index 7 on a test machine
        p.track(7)
    with pytest.raises(DataError, match="source not found"):
        p.track(tmp_path / "missing.mp4")
