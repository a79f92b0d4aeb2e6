"""Track-level identity: unknown until enough evidence, hysteresis against flicker, switching on clear
change, re-entry under the same track id, the per-frame baseline and the "none of them" option."""

from __future__ import annotations

import numpy as np
import pytest

from mocha.track.identity import UNKNOWN, IdentityParams, TrackIdentity, frame_identity, frame_logp, label

# The rule's mechanics, with explicit knobs (the defaults are measured settings and may move; docs/track.md)
P = IdentityParams(enter_margin=3.0, min_frames=3)


def sims(*rows: tuple[float, ...]) -> np.ndarray:
    return np.asarray(rows, np.float32)


def feed(ident: TrackIdentity, seq: list[np.ndarray], tid: int = 1, start: int = 0) -> list[int]:
    shown = []
    for f, s in enumerate(seq, start):
        inst, _ = ident.update(f, np.array([tid]), s)
        shown.append(int(inst[0]))
    return shown


A = sims((0.80, 0.70))  # prefers instance 0 by 0.1 (2 nats at the default temperature)
B = sims((0.70, 0.80))


def test_unknown_until_min_frames_and_margin() -> None:
    shown = feed(TrackIdentity(2, P), [A] * 5)
    assert shown[: P.min_frames - 1] == [UNKNOWN] * (P.min_frames - 1)
    assert shown[P.min_frames - 1:] == [0] * (5 - P.min_frames + 1)
    # A weak preference (0.02 = 0.4 nats per frame, lead saturating at 4 nats) needs ~14 frames to cross
    # enter_margin (3 nats); one too weak to ever reach it (0.01 → at most 2 nats) stays unknown.
    weak = sims((0.77, 0.75))
    shown = feed(TrackIdentity(2, P), [weak] * 40)
    first = shown.index(0)
    assert 12 <= first <= 16 and all(s == UNKNOWN for s in shown[:first]) and set(shown[first:]) == {0}
    assert set(feed(TrackIdentity(2, P), [sims((0.76, 0.75))] * 60)) == {UNKNOWN}


def test_hysteresis_holds_through_flicker() -> None:
    # One wrong frame in three: per-frame labelling flickers, the track keeps its name.
    seq = [A, A, B] * 10
    track = feed(TrackIdentity(2, P), seq)
    frame = [int(frame_identity(s, P)[0][0]) for s in seq]
    assert frame.count(1) == 10
    assert track[5:] == [0] * (len(seq) - 5)


def test_switches_when_evidence_clearly_moves() -> None:
    ident = TrackIdentity(2, P)
    shown = feed(ident, [A] * 20 + [B] * 20)
    assert shown[19] == 0 and shown[-1] == 1
    switch = shown.index(1)
    assert 21 < switch < 40  # not on the first contrary frame: it needs switch_margin nats of lead
    assert shown[switch:] == [1] * (40 - switch)
    # Without hysteresis (switch_margin = enter_margin = 0, min_frames 1) it follows the running leader sooner.
    eager = feed(TrackIdentity(2, IdentityParams(enter_margin=0.0, switch_margin=0.0, min_frames=1)),
                 [A] * 20 + [B] * 20)
    assert eager.index(1) < switch


def test_reentry_same_track_keeps_name_new_track_starts_unknown() -> None:
    ident = TrackIdentity(2, P)
    feed(ident, [A] * 10, tid=7)
    # Gone for 50 frames (occluded / out of view), back under the same id: named at once.
    assert feed(ident, [A], tid=7, start=60) == [0]
    # A new id (the tracker lost it for good) starts from nothing.
    assert feed(ident, [A], tid=8, start=61) == [UNKNOWN]
    # Evidence of a track unseen longer than forget_after is dropped.
    short = TrackIdentity(2, IdentityParams(enter_margin=3.0, min_frames=3, forget_after=5))
    feed(short, [A] * 10, tid=3)
    feed(short, [B], tid=4, start=30)
    assert 3 not in short.known() and feed(short, [A], tid=3, start=31) == [UNKNOWN]


def test_tracks_are_independent_and_untracked_boxes_are_per_frame() -> None:
    ident = TrackIdentity(2, P)
    for f in range(6):
        inst, _ = ident.update(f, np.array([1, 2, -1]), np.concatenate([A, B, B]))
    assert inst.tolist() == [0, 1, 1]


def test_none_option_and_labels() -> None:
    low = sims((0.3, 0.2))  # below none_sim: not an enrolled instance
    assert frame_identity(low, P)[0].tolist() == [UNKNOWN]
    assert feed(TrackIdentity(2, P), [low] * 10)[-1] == UNKNOWN
    logp = frame_logp(sims((0.8, 0.7)), P)
    assert logp.shape == (1, 3) and np.all(logp >= P.floor) and logp.argmax() == 0
    assert label(1, 0, ["my-mug-0", "my-mug-1"], ["mug"]) == "my-mug-1"
    assert label(UNKNOWN, 0, ["my-mug-0"], ["mug"]) == "unknown mug"


def test_params_checked() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        IdentityParams(enter_margin=5.0, switch_margin=1.0)
    with pytest.raises(ValueError):
        IdentityParams(decay=1.5)
