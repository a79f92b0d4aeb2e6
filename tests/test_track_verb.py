"""`mocha track` on the tiny generated clip with a tiny random-weight bundle: run folder, MOT CSV, per-frame
JSON, annotated video; bad input; an interrupted run leaves no half-written video under the final name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mocha.errors import ConfigError, DataError
from mocha.personalize.personalizer import Personalizer
from mocha.track.mot import read_mot
from mocha.track.verb import TrackConfig, track
from tests.test_personalize_api import make_bundle

FRAMES = 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import cv2

    from mocha.data.world.video import generate_video, load_video_world

    root = tmp_path_factory.mktemp("t")
    clip = load_video_world(generate_video(root / "clips", size="tiny", progress=False)).clips[0]
    frames = list(clip.read_frames())[:FRAMES]
    video = root / "short.mp4"  # a short clip keeps the test fast
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, frames[0].shape[1::-1])
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    bundle = make_bundle(root / "bundle")
    gallery = root / "g.gallery"
    with Personalizer.load(bundle, gallery) as p:
        p.enroll("a", frames[0], boxes=[[10, 10, 60, 60]], coarse=0)
        p.enroll("b", frames[5], boxes=[[40, 40, 110, 100]], coarse=1)
    return {"video": video, "gallery": gallery, "root": root}


def cfg(setup, tmp_path, **kw):
    return TrackConfig(gallery=setup["gallery"], source=str(setup["video"]), project=tmp_path, conf=0.0,
                       max_det=20, min_similarity=0.0, progress=False, **kw)


def test_track_writes_video_csv_json(setup, tmp_path, capsys):
    import cv2

    out = track(cfg(setup, tmp_path, tracker="botsort"))
    assert out == tmp_path / "exp"
    assert "frames/s" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["short.csv", "short.json", "short.mp4"]
    doc = json.loads((out / "short.json").read_text())
    assert doc["format"] == "mocha-track/1" and doc["tracker"] == "botsort" and len(doc["frames"]) == FRAMES
    assert set(doc["instances"].values()) == {"a", "b"}
    boxes = [d for f in doc["frames"] for d in f["detections"]]
    assert boxes and all(d["track_id"] >= 1 for d in boxes)
    table = read_mot(out / "short.csv")
    assert len(table) == len(boxes)
    assert set(np.unique(table.frame)) <= set(range(1, FRAMES + 1))
    assert set(table.instance.tolist()) <= {-1, *map(int, doc["instances"])}
    cap = cv2.VideoCapture(str(out / "short.mp4"))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert n == FRAMES
    again = track(cfg(setup, tmp_path, save=False))  # run-folder policy: exp → exp2
    assert again.name == "exp2" and not (again / "short.mp4").exists()


def test_bad_input(setup, tmp_path):
    with pytest.raises(ConfigError, match="tracker"):
        cfg(setup, tmp_path, tracker="sort")
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(DataError, match="cannot decode video"):
        track(TrackConfig(gallery=setup["gallery"], source=str(broken), project=tmp_path / "r", progress=False))
    assert not (tmp_path / "r").exists()  # no run folder for a source that cannot be read


def test_interrupted_run_leaves_no_video(setup, tmp_path, monkeypatch):
    real = Personalizer._detect_frame
    seen = []

    def flaky(self, frame, conf, thr):
        seen.append(frame.frame)
        if len(seen) == 6:
            raise KeyboardInterrupt  # Ctrl-C halfway through the video
        return real(self, frame, conf, thr)

    monkeypatch.setattr(Personalizer, "_detect_frame", flaky)
    with pytest.raises(KeyboardInterrupt):
        track(cfg(setup, tmp_path))
    out = tmp_path / "exp"
    assert out.is_dir() and list(out.iterdir()) == []  # no video, no temp file, no half CSV / JSON


def test_cli_track(setup, tmp_path):
    from typer.testing import CliRunner

    from mocha.cli import app, rewrite_argv

    argv = rewrite_argv(["track", f"gallery={setup['gallery']}", f"source={setup['video']}", "tracker=bytetrack",
                         "save=false", f"project={tmp_path}", "conf=0", "max_det=10", "--no-progress"])
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "exp" / "short.csv").is_file()
