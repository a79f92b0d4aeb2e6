"""`mocha enroll`, `mocha gallery list|remove`, `mocha detect` over an image, a folder, a glob and a video."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mocha.cli import main
from tests.test_personalize_api import make_bundle, scene


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    bundle = make_bundle(root / "bundle")
    imgs = root / "imgs"
    imgs.mkdir()
    for i in range(3):
        Image.fromarray(scene(i)).save(imgs / f"s{i}.jpg")
    return root, bundle, imgs


def run(args, capsys):
    main(args)
    return capsys.readouterr().out


def fail(args, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_enroll_list_remove(setup, tmp_path, capsys):
    root, bundle, imgs = setup
    g = tmp_path / "me.gallery"
    default = tmp_path / "coco.gallery"  # a new gallery without bundle=: the shipped coco bundle
    out = run(["enroll", f"gallery={default}", "name=cup", f"source={imgs / 's0.jpg'}", "box=10,10,100,100",
               "coarse=cup"], capsys)
    assert "enrolled 'cup' (cup)" in out and "1 instance(s)" in out
    assert "coco" in run(["gallery", "list", f"gallery={default}"], capsys)
    assert "not a shipped name (coco)" in fail(["enroll", f"gallery={g}", "bundle=cocoa", "name=cup",
                                                f"source={imgs / 's0.jpg'}"], capsys)
    out = run(["enroll", f"gallery={g}", f"bundle={bundle}", "name=cup", f"source={imgs / 's0.jpg'},{imgs / 's1.jpg'}",
               "box=10,10,100,100;-", "coarse=mug", "conf=0.0"], capsys)
    assert "your box" in out and "detector's best box" in out and "1 instance(s)" in out
    err = fail(["enroll", f"gallery={g}", "name=cup", f"source={imgs / 's2.jpg'}", "box=1,1,50,50"], capsys)
    assert "already enrolled" in err and "append=true" in err
    out = run(["enroll", f"gallery={g}", "name=cup", f"source={imgs / 's2.jpg'}", "box=1,1,50,50", "append=true"],
              capsys)
    assert "enrolled 'cup'" in out
    assert "outside" in fail(["enroll", f"gallery={g}", "name=b", f"source={imgs / 's2.jpg'}", "box=0,0,999,50",
                              "coarse=ball"], capsys)
    assert "empty" in fail(["enroll", f"gallery={g}", "name= ", f"source={imgs / 's2.jpg'}", "box=0,0,9,9",
                            "coarse=ball"], capsys)
    assert "box: 2 box(es) for 1 source" in fail(["enroll", f"gallery={g}", "name=b", f"source={imgs / 's2.jpg'}",
                                             "box=0,0,9,9;1,1,5,5"], capsys)
    out = run(["gallery", "list", f"gallery={g}"], capsys)
    assert "cup" in out and "mug" in out and "3" in out
    assert "conf=2.0: must be <= 1" in fail(["enroll", f"gallery={g}", "name=b", f"source={imgs / 's2.jpg'}",
                                            "conf=2"], capsys)
    assert "did you mean 'gallery'" in fail(["gallery", "list", f"galery={g}"], capsys)
    assert "unknown instance 'nope'" in fail(["gallery", "remove", f"gallery={g}", "name=nope"], capsys)
    assert "removed 'cup'; 0 instance(s) left" in run(["gallery", "remove", f"gallery={g}", "name=cup"], capsys)
    bad = tmp_path / "bad.gallery"
    bad.write_bytes(b"garbage" * 10)
    assert "not a gallery" in fail(["gallery", "list", f"gallery={bad}"], capsys)
    assert bad.read_bytes() == b"garbage" * 10


def test_detect_folder_glob_and_video(setup, tmp_path, capsys, monkeypatch):
    import cv2

    root, bundle, imgs = setup
    monkeypatch.chdir(tmp_path)
    g = tmp_path / "me.gallery"
    run(["enroll", f"gallery={g}", f"bundle={bundle}", "name=cup", f"source={imgs / 's0.jpg'}", "box=10,10,100,100",
         "coarse=mug"], capsys)
    run(["detect", f"gallery={g}", f"source={imgs}", "save=true", "conf=0.0", "max_det=5"], capsys)
    out = tmp_path / "runs/detect/exp"
    assert sorted(p.name for p in out.iterdir()) == [f"s{i}.{e}" for i in range(3) for e in ("jpg", "json")]
    js = json.loads((out / "s0.json").read_text())
    assert js["width"] == 240 and len(js["detections"]) == 5
    assert all(d["name"] == "cup" or d["name"].startswith("unknown ") for d in js["detections"])
    run(["detect", f"gallery={g}", f"source={imgs}/s1*.jpg", "save=false", "conf=0.0", "max_det=5"], capsys)
    assert sorted(p.name for p in (tmp_path / "runs/detect/exp2").iterdir()) == ["s1.json"]
    # a short video
    video = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (240, 180))
    for i in range(4):
        w.write(np.ascontiguousarray(scene(i % 3)[:, :, ::-1]))
    w.release()
    run(["detect", f"gallery={g}", f"source={video}", "name=vid", "conf=0.0", "max_det=3"], capsys)
    vout = tmp_path / "runs/detect/vid"
    assert sorted(p.name for p in vout.iterdir()) == ["clip.json", "clip.mp4"]
    vj = json.loads((vout / "clip.json").read_text())
    assert [f["frame"] for f in vj["frames"]] == [0, 1, 2, 3] and len(vj["frames"][0]["detections"]) == 3
    cap = cv2.VideoCapture(str(vout / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()
    # bad inputs
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
    assert "cannot decode video" in fail(["detect", f"gallery={g}", f"source={broken}", "name=bad"], capsys)
    assert not (tmp_path / "runs/detect/bad/broken.json").exists()
    assert "source not found" in fail(["detect", f"gallery={g}", "source=nope.jpg"], capsys)
    assert "matches no files" in fail(["detect", f"gallery={g}", "source=zzz/*.png"], capsys)
    assert "gallery=missing.gallery: no such file" in fail(["detect", "gallery=missing.gallery", f"source={imgs}"],
                                                            capsys)
    assert "backend=onnx needs onnx=" in fail(["detect", f"gallery={g}", f"source={imgs}", "backend=onnx"], capsys)
    assert "unknown backend 'tflite'" in fail(["detect", f"gallery={g}", f"source={imgs}", "backend=tflite"], capsys)
    other = make_bundle(tmp_path / "other", seed=1)
    assert "made with bundle" in fail(["detect", f"gallery={g}", f"source={imgs}", f"bundle={other}"], capsys)


def test_gallery_tune_on_a_tiny_world(setup, tmp_path, capsys):
    from mocha.data.world import generate_world
    from mocha.personalize.gallery import Gallery
    from mocha.personalize.personalizer import Personalizer

    world = generate_world(tmp_path / "world", size="tiny", seed=0, progress=False)
    bundle = make_bundle(tmp_path / "wb", imgsz=128)  # class names differ from the world's: only ids matter
    g = tmp_path / "t.gallery"
    Personalizer.load(bundle, g).close()
    out = run(["gallery", "tune", f"gallery={g}", f"data={world}", "episodes=2", "conf=0.0"], capsys)
    assert "chosen coarse_penalty" in out and out.count("strict mAP") >= 10
    from mocha.personalize.tuning import PENALTIES

    assert out.count("best min_similarity") == len(PENALTIES)  # one tuning run per coarse_penalty candidate
    with Gallery(g) as gal:
        chosen = gal.get_setting("min_similarity")
        penalty = gal.get_setting("coarse_penalty")
        assert penalty in PENALTIES
        assert gal.get_setting("tuned_on")["episodes"] == 2 and set(gal.get_setting("calibration")) == {"slope",
                                                                                                        "center"}
    with Personalizer.load(gallery=g) as p:
        assert p.min_similarity == chosen and p.coarse_penalty == penalty
    with Personalizer.load(gallery=g, coarse_penalty=float("inf")) as p:  # the argument wins over the gallery
        assert p.coarse_penalty == float("inf")


def test_detect_exist_ok_and_run_folders(setup, tmp_path, capsys, monkeypatch):
    root, bundle, imgs = setup
    monkeypatch.chdir(tmp_path)
    run(["enroll", "gallery=g.gallery", f"bundle={bundle}", "name=cup", f"source={imgs / 's0.jpg'}",
         "box=10,10,100,100", "coarse=mug"], capsys)
    args = ["detect", "gallery=g.gallery", f"source={imgs / 's0.jpg'}", "conf=0.0", "max_det=3"]
    assert "→ runs/detect/exp" in run(args + ["save=false"], capsys)
    assert "→ runs/detect/exp2" in run(args + ["save=false"], capsys)
    # exist_ok=true reuses exp (the issue's `mocha detect ... exist_ok=true` failed to parse)
    out = run(args + ["exist_ok=true", "save=true"], capsys)
    assert "1 result(s) → runs/detect/exp" in out and not (tmp_path / "runs/detect/exp3").exists()
    assert sorted(p.name for p in (tmp_path / "runs/detect/exp").iterdir()) == ["s0.jpg", "s0.json"]
    run(args + ["--exist-ok", "--no-save", "project=other", "name=x"], capsys)
    assert sorted(p.name for p in (tmp_path / "other/x").iterdir()) == ["s0.json"]
    run(args + ["exist_ok=false", "progress=false", "save=false"], capsys)
    assert (tmp_path / "runs/detect/exp3/s0.json").exists()
    assert "expected true or false" in fail(args + ["exist_ok=maybe"], capsys)


def test_every_bool_option_takes_true_and_false():
    """Each generated verb of this package parses key=true and key=false for every bool option."""
    from mocha.cli import rewrite_argv
    from mocha.core.commands import COMMANDS

    words = [("enroll",), ("detect",), ("export",), ("gallery", "list"), ("gallery", "remove"), ("gallery", "tune")]
    seen = 0
    for w in words:
        spec = COMMANDS[w]
        for key in spec.config.bool_options():
            flag = key.replace("_", "-")
            assert rewrite_argv([*w, f"{key}=true"]) == [*w, f"--{flag}"]
            assert rewrite_argv([*w, f"{key}=false"]) == [*w, f"--no-{flag}"]
            seen += 1
    assert seen >= 5  # enroll append; detect save, exist_ok, progress; gallery tune progress


def test_open_set_rates_count_genuine_and_impostor_trials():
    from mocha.personalize.openset import equal_error_threshold, rates_at

    trials = {"genuine": [(0.9, True), (0.7, True), (0.4, True), (0.8, False)], "impostor": [0.2, 0.5, -np.inf]}
    at = rates_at(trials, 0.45)
    assert at["frr"] == pytest.approx(0.5) and at["far"] == pytest.approx(1 / 3)  # 0.4 too low, 0.8 the wrong one
    assert rates_at(trials, -1.0)["far"] == pytest.approx(2 / 3)  # an impostor named as nobody is never accepted
    eer = equal_error_threshold(trials)
    assert 0.2 < eer["min_similarity"] <= 0.5 and eer["far"] == pytest.approx(1 / 3)


def test_gallery_openset_on_a_tiny_world(tmp_path, capsys):
    from mocha.data.world import generate_world

    world = generate_world(tmp_path / "world", size="tiny", seed=0, progress=False)
    bundle = make_bundle(tmp_path / "wb", imgsz=128)
    out = run(["gallery", "openset", f"bundle={bundle}", f"data={world}", "episodes=2", "conf=0.0",
               "min_similarity=0.3", f"out={tmp_path / 'o.json'}"], capsys)
    assert out.count("FAR") >= 20 and "equal error at" in out
    rep = json.loads((tmp_path / "o.json").read_text())
    at = rep["at_default"]
    assert at["min_similarity"] == 0.3 and at["genuine"] > 0 and at["impostor"] > 0
    assert 0 <= at["far"] <= 1 and 0 <= at["frr"] <= 1
    # a lower threshold never rejects more nor accepts fewer impostors
    far = [r["far"] for r in rep["table"]]
    frr = [r["frr"] for r in rep["table"]]
    assert far == sorted(far, reverse=True) and frr == sorted(frr)
    # every box on its own: the same trials; one box per instance only ever takes names away
    run(["gallery", "openset", f"bundle={bundle}", f"data={world}", "episodes=2", "conf=0.0", "one_box=false",
         f"out={tmp_path / 'per_box.json'}"], capsys)
    per_box = json.loads((tmp_path / "per_box.json").read_text())
    assert rep["one_box"] is True and per_box["one_box"] is False
    assert all(a["genuine"] == b["genuine"] and a["impostor"] == b["impostor"] and a["far"] <= b["far"]
               and a["frr"] >= b["frr"] for a, b in zip(rep["table"], per_box["table"], strict=True))
    assert any(a["far"] < b["far"] or a["frr"] > b["frr"] for a, b in zip(rep["table"], per_box["table"], strict=True))
