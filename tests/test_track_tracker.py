"""The adapter over ultralytics' ByteTrack / BoT-SORT: registry, ids per box, confirmation, settings."""

from __future__ import annotations

import numpy as np
import pytest

from mocha.errors import ConfigError
from mocha.track.tracker import create_tracker, list_trackers, tracker_config


def boxes(f: int) -> np.ndarray:
    """Two boxes moving in opposite directions, 3 px per frame, never overlapping."""
    return np.array([[10 + 3 * f, 10, 40 + 3 * f, 50], [200 - 3 * f, 100, 230 - 3 * f, 140]], np.float32)


def test_registry() -> None:
    assert list_trackers() == ["bytetrack", "botsort"]
    with pytest.raises(ConfigError, match="did you mean 'bytetrack'"):
        create_tracker("bytetrak")
    with pytest.raises(ConfigError, match="choose one of bytetrack, botsort"):
        create_tracker("sort")


@pytest.mark.parametrize("name", ["bytetrack", "botsort"])
def test_ids_follow_boxes(name: str) -> None:
    trk = create_tracker(name)
    frame = np.zeros((200, 260, 3), np.uint8)
    ids = [trk.update(boxes(f), [0.9, 0.8], [0, 1], frame) for f in range(10)]
    assert all(len(i) == 2 for i in ids)
    assert len({tuple(i) for i in ids}) == 1 and ids[0][0] != ids[0][1] and (ids[0] > 0).all()
    # Box order in the input does not matter: ids follow the boxes, not the rows.
    swapped = trk.update(boxes(10)[::-1], [0.8, 0.9], [1, 0], frame)
    assert swapped.tolist() == ids[0][::-1].tolist()


def test_new_track_confirmed_on_second_frame_and_low_conf_ignored() -> None:
    trk = create_tracker("bytetrack")
    first = trk.update(boxes(0)[:1], [0.9], [0])
    assert first.tolist() == [1]  # on the first frame a track starts confirmed
    ids = [trk.update(boxes(f), [0.9, 0.9], [0, 0]) for f in (1, 2, 3)]
    assert ids[0][1] == -1 and ids[1][1] > 0 and ids[2][1] == ids[1][1]  # the newcomer waits one frame
    assert trk.update(boxes(4), [0.9, 0.05], [0, 0])[1] == -1  # under track_low_thresh: not tracked
    empty = trk.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    assert empty.shape == (0,)


def test_settings_from_ultralytics_yaml() -> None:
    cfg = tracker_config("bytetrack")
    assert cfg.tracker_type == "bytetrack" and cfg.track_buffer == 30
    assert tracker_config("botsort", gmc_method="none").gmc_method == "none"
    with pytest.raises(TypeError, match="track_bufer"):
        tracker_config("bytetrack", track_bufer=10)
    trk = create_tracker("bytetrack", track_buffer=2)
    trk.update(boxes(0), [0.9, 0.9], [0, 0])
    for f in range(1, 6):  # the second box vanishes for longer than the buffer: it comes back as a new track
        trk.update(boxes(f)[:1], [0.9], [0])
    back = [trk.update(boxes(f), [0.9, 0.9], [0, 0]) for f in (6, 7)]
    assert back[1][1] not in (-1, 2)


def low_score_breathing_box(trk, frames: int = 30) -> list[int]:
    """A box scored 0.3 (a distilled student's typical score) whose size breathes ±25 % frame to frame, as a
    spinning object's box does, with a little jitter: the track id it gets on each frame."""
    rng = np.random.default_rng(0)
    out = []
    for f in range(frames):
        s = 40 + (10 if f % 2 else -10)
        cx, cy = 100 + 2 * f + rng.normal(0, 3), 100 + rng.normal(0, 3)
        box = np.array([[cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2]], np.float32)
        out.append(int(trk.update(box, [0.3], [0])[0]))
    return out


def test_our_defaults_keep_low_score_boxes_on_their_track() -> None:
    # ultralytics' fuse_score multiplies IoU by the score: with scores ~0.3 the box loses its own track on the
    # second frame and never gets it back; our default (MOCHA_DEFAULTS: fuse_score=False) keeps one track.
    assert tracker_config("bytetrack").fuse_score is False and tracker_config("botsort").fuse_score is False
    assert low_score_breathing_box(create_tracker("bytetrack")) == [1] * 30
    fused = low_score_breathing_box(create_tracker("bytetrack", fuse_score=True))  # overrides still win
    assert fused[0] == 1 and fused[1:].count(-1) >= 25
