"""Results / Boxes on real detections of the tiny bundle: properties, indexing and filtering, plot (RGB), save,
JSON, supervision round trip; `predict` over a list, a folder, a glob, a video and as a stream; the README's
"Personalize and detect" example."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mocha.data.images import letterbox
from mocha.errors import DataError, MochaError
from mocha.personalize.personalizer import Personalizer
from mocha.personalize.results import Results, _color
from tests.test_personalize_api import IMGSZ, make_bundle, scene

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("res")
    bundle = make_bundle(root / "bundle")
    photos = root / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(scene(i)).save(photos / f"s{i}.png")
    p = Personalizer.load(bundle, conf=0.0, max_det=30, enroll_conf=0.0)
    p.enroll("cup", photos / "s0.png", boxes=[[10, 10, 100, 100]], coarse="mug")
    p.enroll("ball", photos / "s1.png", boxes=[[40, 20, 160, 120]], coarse="ball")
    yield p, photos
    p.close()


@pytest.fixture(scope="module")
def result(world):
    p, photos = world
    # a low threshold names boxes of both enrolled classes, a high one leaves the rest unknown
    return p.detect(photos / "s0.png", min_similarity=0.9)


def test_boxes_match_the_engine_and_each_other(world, result):
    p, photos = world
    r = result
    lb_img, lb = letterbox(np.asarray(Image.open(photos / "s0.png")), IMGSZ)
    dets, _ = p.engine.detect(lb_img, conf=0.0, max_det=30)
    b = r.boxes
    assert len(r) == len(b) == len(dets) == 30 and r.orig_shape == (180, 240) and r.path.endswith("s0.png")
    assert np.allclose(b.xyxy, lb.to_original(dets[:, :4])) and np.allclose(b.conf, dets[:, 4])
    assert b.cls.tolist() == dets[:, 5].astype(int).tolist()
    x1, y1, x2, y2 = b.xyxy.T
    assert np.allclose(b.xywh, np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], 1))
    assert np.allclose(b.xyxyn * [240, 180, 240, 180], b.xyxy) and b.xyxyn.min() >= 0 and b.xyxyn.max() <= 1
    assert np.allclose(b.xywhn[:, 2:] * [240, 180], b.xywh[:, 2:])
    ids = {n: i for i, n in r.instances.items()}
    assert set(ids) == {"cup", "ball"} and r.names == {0: "mug", 1: "ball", 2: "can"}
    # named boxes carry an enrolled id of their own coarse class and similarity ≥ the threshold
    known = b.known
    assert 0 < known.sum() < len(r) and known.tolist() == (b.instance >= 0).tolist()
    coarse_of = {ids["cup"]: 0, ids["ball"]: 1}
    assert all(coarse_of[int(i)] == int(c) for i, c in zip(b.instance[known], b.cls[known], strict=True))
    assert (b.similarity[known] >= 0.9).all() and (b.instance_conf[~known] == 0).all()
    assert np.allclose(b.score[known], b.conf[known] * b.instance_conf[known])
    assert np.allclose(b.score[~known], b.conf[~known])
    labels = r.labels
    assert all(lab == r.instances[int(i)] for lab, i in zip(np.array(labels)[known], b.instance[known], strict=True))
    assert all(lab == f"unknown {r.names[int(c)]}" for lab, c in zip(np.array(labels)[~known], b.cls[~known],
                                                                     strict=True))


def test_indexing_and_boolean_filtering(result):
    r = result
    mine = r[r.boxes.known]
    assert isinstance(mine, Results) and len(mine) == int(r.boxes.known.sum())
    assert mine.boxes.known.all() and not any(lab.startswith("unknown ") for lab in mine.labels)
    assert np.array_equal(mine.boxes.xyxy, r.boxes.xyxy[r.boxes.known])
    assert mine.orig_img is r.orig_img and mine.instances == r.instances and mine.path == r.path
    one = r[3]
    assert len(one) == 1 and one.boxes.xyxy.shape == (1, 4) and one.labels == [r.labels[3]]
    assert r[:5].labels == r.labels[:5] and r[np.array([4, 1])].labels == [r.labels[4], r.labels[1]]
    t = float(np.median(r.boxes.conf))
    assert (r[r.boxes.conf > t].boxes.conf > t).all()
    empty = r[r.boxes.conf > 2]
    assert len(empty) == 0 and empty.to_json()["detections"] == [] and empty.plot().shape == r.orig_img.shape
    js = mine.to_json()
    json.dumps(js)
    assert [d["name"] for d in js["detections"]] == mine.labels
    assert [d["instance_id"] for d in js["detections"]] == mine.boxes.instance.tolist()
    assert set(js["detections"][0]) == {"box", "name", "instance", "instance_id", "coarse", "coarse_id", "det_score",
                                        "similarity", "instance_score", "score"}


def test_plot_is_rgb_and_save_writes_it(result, tmp_path):
    r = result
    one = r[int(np.flatnonzero(r.boxes.known)[0])]
    img = one.plot(line_width=3)
    x1, y1, x2, y2 = one.boxes.xyxy[0]
    y = int((y1 + y2) / 2)
    # the left edge of the box, in the instance's colour in RGB order (ultralytics would give BGR)
    assert tuple(img[y, int(round(x1)) + 1]) == _color(one.labels[0])
    assert not np.array_equal(img, r.orig_img) and np.array_equal(r.orig_img, np.asarray(
        Image.open(Path(r.path))))  # plot draws on a copy
    out = one.save(tmp_path / "a.png")
    assert np.array_equal(np.asarray(Image.open(out)), one.plot())


def test_to_supervision_round_trip(result):
    sv = pytest.importorskip("supervision")
    r = result
    det = r.to_supervision()
    assert isinstance(det, sv.Detections) and len(det) == len(r)
    assert np.array_equal(det.xyxy, r.boxes.xyxy) and np.array_equal(det.class_id, r.boxes.cls)
    assert np.array_equal(det.confidence, r.boxes.conf)
    assert det.data["instance_id"].tolist() == r.boxes.instance.tolist()
    assert det.data["instance_name"].tolist() == [r.instances.get(int(i), "") for i in r.boxes.instance]
    assert det.data["class_name"].tolist() == [r.names[int(c)] for c in r.boxes.cls]
    assert det.data["label"].tolist() == r.labels
    assert np.array_equal(det.data["similarity"], r.boxes.similarity, equal_nan=True)
    # supervision's own filtering agrees with ours
    mine = det[det.data["instance_id"] >= 0]
    assert np.array_equal(mine.xyxy, r[r.boxes.known].boxes.xyxy)
    assert r[r.boxes.conf > 2].to_supervision().xyxy.shape == (0, 4)


def test_to_supervision_without_the_extra(result, monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)  # as if not installed: import raises ImportError
    with pytest.raises(MochaError, match=r"pip install 'mocha\[supervision\]'"):
        result.to_supervision()


def test_predict_list_folder_glob_video_and_stream(world, tmp_path):
    import cv2

    p, photos = world
    single = [p.detect(photos / f"s{i}.png") for i in range(3)]
    folder = p.predict(photos)
    assert [Path(r.path).name for r in folder] == ["s0.png", "s1.png", "s2.png"]
    assert [r.labels for r in folder] == [r.labels for r in single]
    assert all(np.array_equal(a.boxes.xyxy, b.boxes.xyxy) for a, b in zip(folder, single, strict=True))
    assert [Path(r.path).name for r in p(str(photos / "s[02].png"))] == ["s0.png", "s2.png"]
    arr = np.asarray(Image.open(photos / "s1.png"))
    mixed = p.predict([photos / "s2.png", arr, Image.fromarray(arr)])
    assert [r.path for r in mixed][1:] == [None, None] and mixed[1].labels == mixed[2].labels == single[1].labels
    gen = p.predict(photos, stream=True)
    assert isinstance(gen, types.GeneratorType)
    first = next(gen)
    assert first.labels == single[0].labels and len(list(gen)) == 2
    # a video: one Results per frame, the video's path and the frame index
    video = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (240, 180))
    for i in range(3):
        w.write(np.ascontiguousarray(scene(i)[:, :, ::-1]))
    w.release()
    frames = p.predict(video)
    assert [r.frame for r in frames] == [0, 1, 2] and {r.path for r in frames} == {str(video)}
    assert all(r.orig_shape == (180, 240) for r in frames)
    # a missing file fails at the call, before any detection, even with stream=True
    with pytest.raises(DataError, match="source not found"):
        p.predict([photos / "s0.png", tmp_path / "nope.png"], stream=True)
    with pytest.raises(DataError, match="matches no files"):
        p.predict(str(tmp_path / "*.jpg"))
    with pytest.raises(DataError, match="empty list"):
        p.predict([])


def readme_python(section: str) -> str:
    """The ```python block of a README section."""
    text = README.read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", body, re.S).group(1)


def test_readme_personalize_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_bundle(tmp_path / "runs/demo/bundle")
    for name, seed in (("mug1.jpg", 0), ("mug2.jpg", 1), ("kitchen.jpg", 2)):
        Image.fromarray(scene(seed)).save(name)
    Path("photos").mkdir()
    for i in range(2):
        Image.fromarray(scene(i + 3)).save(f"photos/p{i}.jpg")
    code = readme_python("Personalize and detect")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert Image.open("kitchen_annotated.jpg").size == (240, 180)
    assert "my mug" in out and "photos/p0.jpg" in out and "photos/p1.jpg" in out
    assert Path("my.gallery").exists()


def test_from_mocha_import_personalizer_is_lazy():
    import subprocess

    code = ("import sys, mocha; before = 'mocha.personalize' in sys.modules; from mocha import Personalizer, Results; "
            "print(before, Personalizer.__module__, Results.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "mocha.personalize.personalizer", "mocha.personalize.results"]
    with pytest.raises(AttributeError, match="no attribute 'Personaliser'"):
        import mocha

        mocha.Personaliser  # noqa: B018


def test_repr_is_short(result):
    text = repr(result)
    assert text.startswith("Results(") and "s0.png, 240×180, 30 boxes" in text and len(text) < 300
