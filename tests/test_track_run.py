"""End to end on a tiny generated clip: ground-truth detections with noise (jittered boxes, dropped frames,
similarities that sometimes prefer the wrong look-alike) → tracker → identity; track mode beats per-frame
labelling in IDF1 and ID switches; outputs written; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mocha.data.world.video import generate_video, load_video_world
from mocha.errors import ConfigError
from mocha.track import Detections, run_clip
from mocha.track.compare import compare_modes, compare_world
from mocha.track.mot import read_mot
from mocha.track.outputs import write_outputs
from mocha.track.synthetic import Noise, NoisyDetector


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> dict:
    w = load_video_world(generate_video(tmp_path_factory.mktemp("v") / "clips", size="tiny", seed=0,
                                        progress=False))
    c = w.clips[0]
    gallery = sorted(w.instances)
    return {"frames": list(c.read_frames()), "gt": read_mot(c.gt), "gallery": gallery, "coarse_names": w.names,
            "names": [w.instances[i]["name"] for i in gallery],
            "coarse": {i: w.instances[i]["coarse"] for i in gallery}}


def detector(clip: dict, seed: int = 0) -> NoisyDetector:
    return NoisyDetector(clip["gt"], clip["gallery"], clip["coarse"], Noise(drop=0.1, jitter=0.04), seed=seed)


@pytest.mark.parametrize("tracker", ["bytetrack", "botsort"])
def test_track_mode_beats_frame_mode(clip: dict, tracker: str) -> None:
    r = compare_modes(clip["frames"], clip["gt"], detector(clip), clip["gallery"], clip["names"],
                      clip["coarse_names"], tracker=tracker)
    frame, track = r["frame"], r["track"]
    assert 0.5 < frame["id_accuracy"] < 0.95  # the noise really makes per-frame labels flicker
    assert track["idf1"] > frame["idf1"] + 0.1
    assert r["idf1_gain"] == pytest.approx(100 * (track["idf1"] - frame["idf1"]))
    assert track["idsw"] < frame["idsw"] / 4
    assert track["id_accuracy"] >= frame["id_accuracy"]
    assert track["tracker"]["mota"] > 0.8  # the tracker itself follows the objects
    assert r["frames"] == len(clip["frames"]) and track["fps"] > 0


def test_run_clip_outputs(clip: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = run_clip(clip["frames"], detector(clip), clip["names"], clip["coarse_names"], identity="track",
                   total=len(clip["frames"]), progress=True)
    assert len(res) == len(clip["frames"]) and "frame/s" in capsys.readouterr().err
    assert all((r.track_id > 0).all() for r in res)
    labels = {lab for r in res for lab in r.labels}
    assert any(lab.startswith("unknown ") for lab in labels) and set(clip["names"]) & labels
    paths = write_outputs(tmp_path, res, clip["names"], clip["coarse_names"])
    rows = read_mot(paths["csv"])
    assert len(rows) == sum(len(r) for r in res)
    doc = json.loads(paths["json"].read_text())
    assert [f["frame"] for f in doc["frames"]] == list(range(len(res)))
    per_frame = run_clip(clip["frames"], detector(clip), clip["names"], clip["coarse_names"], identity="frame",
                         progress=False)
    assert all((r.track_id == -1).all() for r in per_frame)
    assert sum(len(r) for r in per_frame) >= sum(len(r) for r in res)  # untracked newcomers are not shown


def test_bad_input(clip: dict) -> None:
    det = detector(clip)
    with pytest.raises(ConfigError, match="identity=tracks"):
        run_clip(clip["frames"], det, clip["names"], clip["coarse_names"], identity="tracks", progress=False)
    with pytest.raises(ConfigError, match="did you mean 'botsort'"):
        run_clip(clip["frames"], det, clip["names"], clip["coarse_names"], tracker="botsrt", identity="frame",
                 progress=False)
    with pytest.raises(ValueError, match="similarity columns"):
        run_clip(clip["frames"], det, clip["names"][:2], clip["coarse_names"], progress=False)
    empty = run_clip([np.zeros((8, 8, 3), np.uint8)] * 3, lambda f, i: Detections.empty(2), ["a", "b"], ["x"],
                     progress=False)
    assert [len(r) for r in empty] == [0, 0, 0]
    with pytest.raises(ValueError, match="sim must be"):
        Detections(np.zeros((2, 4)), np.ones(2), np.zeros(2), np.zeros((3, 2)))


def test_compare_world(tmp_path: Path) -> None:
    path = generate_video(tmp_path / "clips", size="tiny", seed=1, progress=False)
    r = compare_world(path, NoisyDetector.for_clip)
    assert len(r["clips"]) == 1 and r["frames"] == r["clips"][0]["frames"]
    assert r["idf1_gain"] == pytest.approx(r["clips"][0]["idf1_gain"]) and r["idf1_gain"] > 5
    assert r["track"]["idsw"] == r["clips"][0]["track"]["idsw"] < r["frame"]["idsw"]
    # A gallery of only some instances: the others are never named.
    w = load_video_world(path)
    some = sorted(w.instances)[:2]
    part = compare_world(path, NoisyDetector.for_clip, gallery=some)
    assert part["track"]["id_recall"] < r["track"]["id_recall"]
