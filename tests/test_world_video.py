"""`mocha world video`: deterministic clips whose video decodes back, MOT ground truth consistent with the
pixels, mochaworld's own personal instances, motion events (look-alikes, exits/re-entries), bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mocha.data.world import video
from mocha.data.world.generate import SIZES as WORLD_SIZES
from mocha.data.world.generate import generate_world, make_instances
from mocha.errors import ConfigError, DataError
from mocha.track.mot import read_mot


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return video.generate_video(tmp_path_factory.mktemp("v") / "clips", size="tiny", seed=0, progress=False)


def test_deterministic_by_seed(clips: Path, tmp_path: Path) -> None:
    again = video.generate_video(tmp_path / "again", size="tiny", seed=0, progress=False)
    assert _files(again.parent) == _files(clips.parent)
    other = video.generate_video(tmp_path / "other", size="tiny", seed=1, progress=False)
    assert _files(other.parent)["clip_000/gt.txt"] != _files(clips.parent)["clip_000/gt.txt"]


def test_video_decodes_and_matches_ground_truth(clips: Path) -> None:
    w = video.load_video_world(clips)
    cfg = video.SIZES["tiny"]
    assert len(w.clips) == cfg.clips and w.fps == cfg.fps
    clip = w.clips[0]
    frames = list(clip.read_frames())
    assert len(frames) == cfg.frames and frames[0].shape == (cfg.imgsz, cfg.imgsz, 3) and frames[0].dtype == np.uint8
    gt = read_mot(clip.gt)
    assert set(gt.frame.tolist()) <= set(range(1, cfg.frames + 1))
    assert (gt.xyxy >= 0).all() and (gt.xyxy <= cfg.imgsz).all() and (gt.score == 1).all()
    ids = {o["id"]: o["instance"] for o in clip.objects}
    assert all(ids[int(i)] == int(g) for i, g in zip(gt.id, gt.instance, strict=True))
    assert all(w.instances[int(g)]["coarse"] == int(c) for g, c in zip(gt.instance, gt.cls, strict=True))
    # The codec round-trip keeps the rendered pixels (lossy, but close) and the boxes match the renderer's.
    picks, stream = video.render_clip(0, cfg, make_instances(WORLD_SIZES["tiny"], 0, base=False), 0)
    for t, (img, boxes) in enumerate(stream):
        assert np.abs(img.astype(int) - frames[t].astype(int)).mean() < 6
        rows = gt.at(t + 1)
        want = sorted((j + 1, b) for j, b in enumerate(boxes) if b is not None)
        assert [(int(gt.id[r]), tuple(int(v) for v in gt.xyxy[r])) for r in rows] == want


def test_instances_are_mochaworld_personal_instances(clips: Path, tmp_path: Path) -> None:
    w = video.load_video_world(clips)
    world = make_instances(WORLD_SIZES["tiny"], 0)
    personal = {i.id: i for i in world if i.split == "personal"}
    assert {k: v["name"] for k, v in w.instances.items()} == {k: i.name for k, i in personal.items()}
    same = make_instances(WORLD_SIZES["tiny"], 0, base=False)
    assert all(np.array_equal(i.rgba, personal[i.id].rgba) for i in same)
    import yaml

    doc = yaml.safe_load(generate_world(tmp_path / "w", size="tiny", seed=0, progress=False).read_text())
    assert all(doc["instances"][k]["name"] == v["name"] for k, v in w.instances.items())


def test_motion_events(clips: Path) -> None:
    w = video.load_video_world(clips)
    clip = w.clips[0]
    coarse = [w.instances[o["instance"]]["coarse"] for o in clip.objects]
    assert coarse.count(coarse[0]) >= 2  # same-category look-alikes share the clip
    gt = read_mot(clip.gt)
    present = {o["id"]: np.array([(gt.id[gt.at(f)] == o["id"]).any() for f in range(1, clip.frames + 1)])
               for o in clip.objects}
    # Some object vanishes (exit or occlusion) and comes back.
    assert any(np.flatnonzero(np.diff(p.astype(int)) == 1).size and not p.all() and p[0] for p in present.values())
    # Boxes change size while objects rotate and move.
    sizes = (gt.xyxy[:, 2:] - gt.xyxy[:, :2])[gt.id == 1]
    assert np.ptp(sizes[:, 0]) > 2


def test_bad_input(clips: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not empty"):
        video.generate_video(clips.parent, size="tiny", progress=False)
    with pytest.raises(ConfigError, match="unknown video size"):
        video.generate_video(tmp_path / "x", size="huge")
    with pytest.raises(DataError, match="no video.json"):
        video.load_video_world(tmp_path)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match="broken.mp4"):
        list(video.read_video(tmp_path / "broken.mp4"))


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = video._render_frame
    calls = {"n": 0}

    def boom(*a: object, **k: object) -> object:
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(video, "_render_frame", boom)
    with pytest.raises(KeyboardInterrupt):
        video.generate_video(tmp_path / "out", size="tiny", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_equals_python(clips: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mocha.cli import app, rewrite_argv

    r = CliRunner().invoke(app, rewrite_argv(["world", "video", f"out={tmp_path / 'c'}", "size=tiny",
                                              "progress=false"]))
    assert r.exit_code == 0, r.output
    assert r.output.strip().endswith("video.json")
    assert _files(tmp_path / "c") == _files(clips.parent)
    assert json.loads((tmp_path / "c" / "video.json").read_text())["format"] == "mocha-video/1"
    r = CliRunner().invoke(app, rewrite_argv(["world", "video", f"out={tmp_path / 'd'}", "size=big"]))
    assert r.exit_code != 0
