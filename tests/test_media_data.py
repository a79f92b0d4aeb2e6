"""`mocha data media` (mocha.data.media): a real dataset from packaged photos and clips, NanoDet-g's labels.

The small build needs no fetched media: a few real photos of the installed packages stand in for opencv-doc's,
and its "vtest.avi" is a clip cut with OpenCV from ultralytics' bus.jpg panning across a grey frame, so its
four people walk and ByteTrack follows them. One test runs on the real opencv-doc media and is skipped when
scripts/fetch_media.sh has not fetched it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mocha.data import load_dataset, load_episodes, read_split
from mocha.data.cli import MediaConfig, check_dataset
from mocha.data.media import MANIFEST, YAML_NAME, build_media
from mocha.data.media_sources import OPENCV_SKIP, package_photos
from mocha.errors import ConfigError
from mocha.io import file_sha256

REAL = Path(__file__).resolve().parents[1] / ".mocha-cache" / "media"
SPLIT_FRAME, FRAMES = 10, 50
SMALL = {"packages": False, "split_frame": SPLIT_FRAME, "frame_step": 2, "min_track": 20, "per_track": 6,
         "episodes": 5}


def _package_photo(name: str) -> Path:
    return next(p.path for p in package_photos()[0] if p.path.name == name)


def make_media(root: Path, frames: int = FRAMES) -> Path:
    """A media folder as scripts/fetch_media.sh lays it out, from files already installed."""
    import cv2

    src = root / "opencv-doc"
    src.mkdir(parents=True)
    shutil.copy(_package_photo("zidane.jpg"), src / "zidane.jpg")
    shutil.copy(_package_photo("astronaut.png"), src / "astronaut.png")
    photo = cv2.imread(str(_package_photo("bus.jpg")))
    cv2.imwrite(str(src / "chessboard.png"), photo[:200, :200])  # skipped by name
    cv2.imwrite(str(src / "tiny.png"), photo[:100, :90])  # skipped by size
    small = cv2.resize(photo, (270, 360), interpolation=cv2.INTER_AREA)
    out = cv2.VideoWriter(str(src / "vtest.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for i in range(frames):
        frame = np.full((480, 640, 3), 114, np.uint8)
        x = 20 + 6 * i  # the whole photo pans 6 px a frame: its people travel ~300 px
        frame[60:420, x : x + 270] = small
        out.write(frame)
    out.release()
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    media = make_media(root / "media")
    yaml_path = build_media(MediaConfig(out=root / "ds", media=media, **SMALL))
    return media, yaml_path


def _manifest(yaml_path: Path) -> dict:
    return json.loads((yaml_path.parent / MANIFEST).read_text())


def test_small_build_splits_labels_and_instances(built):
    media, yaml_path = built
    assert yaml_path.name == YAML_NAME
    spec = load_dataset(yaml_path.parent)
    assert spec.names[0] == "person" and len(spec.names) == 80
    rows = {r.split: r for r in check_dataset(yaml_path)}
    assert set(rows) == {"base_train", "base_val", "personal"} and not any(r.skipped for r in rows.values())
    m = _manifest(yaml_path)
    # photos: zidane + astronaut used (one per split, by group), chessboard and tiny skipped with their reason
    photos = {s["key"]: s for s in m["sources"] if "frames" not in s}
    assert set(photos) == {"opencv-doc/astronaut.png", "opencv-doc/zidane.jpg"}
    assert {s for p in photos.values() for s in p["splits"]} == {"base_train", "base_val"}
    assert {s["key"]: s["reason"] for s in m["skipped"]} == {"opencv-doc/chessboard.png": OPENCV_SKIP["chessboard.png"],
                                                             "opencv-doc/tiny.png": "smaller than 128 px (90×100)"}
    zidane = read_split(spec, photos["opencv-doc/zidane.jpg"]["splits"][0])
    people = [r for r in zidane if r.image.name == "zidane.jpg"][0]
    assert (people.coarse == 0).sum() >= 2  # the two men of zidane.jpg, NanoDet at conf >= 0.35
    # clip frames: base from before split_frame (every 2nd: 0..8, the last 20 % val), personal from it on
    frames = {s: [i["frame"] for i in m["images"][s] if i["frame"] is not None] for s in m["images"]}
    assert frames["base_train"] == [0, 2, 4, 6] and frames["base_val"] == [8]
    assert min(frames["personal"]) >= SPLIT_FRAME
    # instances: the bus photo's walkers, each in >= per_track images, every label an instance of class person
    assert len(spec.instances) >= 2
    assert all(i.coarse == 0 and i.name.startswith("vtest-person-") for i in spec.instances.values())
    for inst in m["instances"]:
        assert inst["images"] >= SMALL["per_track"] and inst["clean_frames"] >= SMALL["min_track"]
        assert len(set(inst["picked_frames"])) == SMALL["per_track"]
    personal = read_split(spec, "personal")
    assert {int(i) for r in personal for i in r.instance} == set(spec.instances)
    assert rows["personal"].episodes == "1-shot: 5, 5-shot: 5"
    _, eps = load_episodes(spec, 5, n=5)
    assert all(len(e.query) > 0 for e in eps)
    # the manifest: every source's sha256, the detector checkpoint's, the counts
    vtest = next(s for s in m["sources"] if s["key"] == "opencv-doc/vtest.avi")
    assert vtest["sha256"] == file_sha256(media / "opencv-doc/vtest.avi") and vtest["frames"] == FRAMES
    assert len(m["detector"]["checkpoint_sha256"]) == 64
    assert m["counts"]["personal"]["images"] == len(personal) and m["settings"]["conf"] == 0.35


def test_rebuild_is_identical_and_needs_exist_ok(built):
    media, yaml_path = built
    out = yaml_path.parent
    with pytest.raises(ConfigError, match="already exists; pass exist_ok=true"):
        build_media(MediaConfig(out=out, media=media, **SMALL))
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    build_media(MediaConfig(out=out, media=media, exist_ok=True, **SMALL))
    after = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after.keys() == before.keys()
    assert [k for k in before if before[k] != after[k]] == []  # same labels, frames, YAML and manifest


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError, match=r"media=.*nowhere: no opencv-doc/ folder.*run scripts/fetch_media.sh"):
        build_media(MediaConfig(out=tmp_path / "ds", media=tmp_path / "nowhere"))
    (tmp_path / "empty" / "opencv-doc").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds no photo and no clip; run scripts/fetch_media.sh"):
        build_media(MediaConfig(out=tmp_path / "ds", media=tmp_path / "empty"))
    media = make_media(tmp_path / "media", frames=12)
    with pytest.raises(ConfigError, match="min_track=7: must be >= per_track=8"):
        MediaConfig(out=tmp_path / "ds", media=media, min_track=7)
    with pytest.raises(ConfigError, match="split_frame=10: .*vtest.avi has 12 frames"):
        build_media(MediaConfig(out=tmp_path / "ds", media=media, **SMALL))
    assert not (tmp_path / "ds").exists()  # nothing half-built under the final name
    (media / "opencv-doc" / "vtest.avi").unlink()
    with pytest.raises(ConfigError, match="vtest.avi is missing"):
        build_media(MediaConfig(out=tmp_path / "ds", media=media))


@pytest.mark.skipif(not (REAL / "opencv-doc" / ".fetched").is_file(),
                    reason="opencv-doc media not fetched (scripts/fetch_media.sh, needs apt)")
def test_real_opencv_doc_media(tmp_path):
    # the real clips and photos, cut short: personal from frame 700 of vtest.avi, base every 100th frame
    cfg = MediaConfig(out=tmp_path / "coco", media=REAL, packages=False, split_frame=700, frame_step=100,
                      min_track=30, per_track=6, episodes=3)
    m = _manifest(build_media(cfg))
    used = {s["key"] for s in m["sources"]}
    assert {"opencv-doc/messi5.jpg", "opencv-doc/vtest.avi", "opencv-doc/Megamind.avi"} <= used
    skipped = {s["key"]: s["reason"] for s in m["skipped"]}
    assert skipped["opencv-doc/left01.jpg"] == "chessboard / calibration target"
    assert skipped["opencv-doc/box_in_scene.png"] == "held out for the enrol/detect check"
    assert len(m["instances"]) >= 3 and min(i["images"] for i in m["instances"]) >= 6
    statuses = [t["status"] for t in m["tracks"]]
    assert any(s.startswith("static") for s in statuses)  # the road sign NanoDet calls a person
    assert m["counts"]["base_train"]["per_label"]["0"] > 0
    rows = {r.split: r for r in check_dataset(cfg.out)}
    assert rows["personal"].instances == len(m["instances"]) and rows["personal"].episodes == "1-shot: 3, 5-shot: 3"
