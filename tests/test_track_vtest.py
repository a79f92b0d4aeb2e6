"""A real video: opencv-doc's vtest.avi (pedestrians, XVID, 768×576), fetched by scripts/setup.sh into
.mocha-cache/media/ when apt is there. One person is enrolled from one frame at a user box; the first frames
are tracked as a stream and written as an annotated video. Skipped when the file is absent."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from mocha.personalize.personalizer import Personalizer
from mocha.personalize.sources import Source
from mocha.track.video import TrackVideoWriter, video_fps
from tests.test_personalize_api import make_bundle

VTEST = Path(__file__).resolve().parents[1] / ".mocha-cache" / "media" / "vtest.avi"
PERSON = [468, 200, 504, 292]  # the walker in the dark jacket at frame 60 (x1, y1, x2, y2)

pytestmark = pytest.mark.skipif(not VTEST.is_file(), reason="vtest.avi not fetched (scripts/setup.sh, needs apt)")


def test_vtest_stream_and_video(tmp_path):
    import cv2

    frame60 = next(f.image for f in Source(VTEST) if f.frame == 60)
    assert frame60.shape == (576, 768, 3)
    with Personalizer.load(make_bundle(tmp_path / "bundle"), conf=0.0, max_det=30) as p:
        report = p.enroll("walker", frame60, boxes=[PERSON], coarse=0)
        assert report.shots[0]["box_source"] == "user"
        stream = p.track(VTEST, stream=True, tracker="bytetrack")
        first = list(itertools.islice(stream, 12))  # a stream: the other 780 frames are never decoded
    assert [r.frame for r in first] == list(range(12))
    assert all(r.boxes.is_track for r in first) and sum(len(r) for r in first) > 0
    for r in first:
        assert (r.boxes.xyxy >= -1).all() and (r.boxes.xyxy[:, [2]] <= 769).all()
    assert video_fps(VTEST) == pytest.approx(10.0)
    out = tmp_path / "vtest.mp4"
    with TrackVideoWriter(out, video_fps(VTEST)) as w:
        for r in first:
            w.write(r)
    cap = cv2.VideoCapture(str(out))
    ok, img = cap.read()
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert ok and img.shape == (576, 768, 3) and n == 12
    assert np.abs(img.astype(int) - first[0].orig_img[..., ::-1]).mean() > 0.1  # boxes were drawn on it
