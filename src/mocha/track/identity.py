"""Identity per track, not per frame: accumulate evidence over a track's frames, switch only on clear change.

Each box's similarities to the K enrolled instances, plus a fixed "none of them" option at `none_sim`,
become per-frame log-probabilities (softmax at `temperature`, floored at `floor`). A track keeps a decayed
sum of them (`E <- decay * E + log p` per observation). It shows nothing (`unknown <coarse>`) until it has
`min_frames` observations and the leader leads the runner-up by `enter_margin` nats; afterwards it changes
what it shows only when a challenger leads the shown option by `switch_margin` nats (hysteresis). Winning
"none" shows `unknown <coarse>` too. Evidence is kept by track id, so a track the tracker re-finds after an
occlusion or a short exit keeps its name; one unseen for `forget_after` frames is dropped.
Docs: docs/track.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNKNOWN = -1  # shown instance index when no enrolled instance is shown


@dataclass(frozen=True)
class IdentityParams:
    """The identity rule's knobs (defaults tuned on mochaworld clips; see docs/track.md)."""

    temperature: float = 0.05  # similarity gap of 0.05 = 1 nat of evidence per frame
    none_sim: float = 0.5  # similarity of the "not enrolled" option: a box must beat it to be named
    decay: float = 0.9  # evidence kept per observation: memory of about 1/(1-decay) = 10 observations
    floor: float = -4.0  # per-frame log-probability floor: one bad frame costs an option at most 4 nats
    enter_margin: float = 2.0  # lead (nats) over the runner-up before an unknown track shows a name
    switch_margin: float = 6.0  # lead (nats) over the shown option before a track changes its name
    min_frames: int = 1  # observations before a track shows any name (the tracker confirms a track on its 2nd)
    forget_after: int = 300  # frames a vanished track's evidence is kept

    def __post_init__(self) -> None:
        if not 0 <= self.decay <= 1 or self.temperature <= 0 or self.min_frames < 1:
            raise ValueError("need 0 <= decay <= 1, temperature > 0, min_frames >= 1")
        if self.switch_margin < self.enter_margin:
            raise ValueError("switch_margin must be >= enter_margin (hysteresis)")


def frame_logp(sim: np.ndarray, params: IdentityParams) -> np.ndarray:
    """(n, K) similarities → (n, K+1) floored log-probabilities; the last column is "none of them"."""
    sim = np.asarray(sim, np.float64)
    z = np.concatenate([sim, np.full((len(sim), 1), params.none_sim)], axis=1) / params.temperature
    z -= z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return np.maximum(logp, params.floor)


def frame_identity(sim: np.ndarray, params: IdentityParams) -> tuple[np.ndarray, np.ndarray]:
    """The per-frame baseline: each box shows its best instance if it beats "none", else unknown.
    Returns (instance (n,), margin (n,) in nats over the runner-up)."""
    logp = frame_logp(sim, params)
    k = sim.shape[1]
    best = logp.argmax(axis=1)
    top2 = np.sort(logp, axis=1)[:, -2:] if logp.shape[1] > 1 else np.zeros((len(logp), 2))
    inst = np.where(best == k, UNKNOWN, best).astype(np.int64)
    return inst, (top2[:, 1] - top2[:, 0]).astype(np.float32)


@dataclass
class _Evidence:
    score: np.ndarray  # (K+1,) decayed sum of log-probabilities
    shown: int = UNKNOWN  # index into the K+1 options (K = none) or UNKNOWN before the first decision
    seen: int = 0
    last: int = 0


@dataclass
class TrackIdentity:
    """Per-track identity state over a stream. `update(frame, track_ids, sim)` once per frame."""

    k: int
    params: IdentityParams = field(default_factory=IdentityParams)
    _tracks: dict[int, _Evidence] = field(default_factory=dict, init=False, repr=False)

    def update(self, frame: int, track_ids: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fold this frame's boxes into their tracks; return (shown instance (n,), margin (n,) nats).
        Boxes with track id < 0 (no track) are labelled per frame."""
        p = self.params
        logp = frame_logp(sim, p)
        inst = np.full(len(track_ids), UNKNOWN, np.int64)
        margin = np.zeros(len(track_ids), np.float32)
        for i, tid in enumerate(np.asarray(track_ids, np.int64)):
            if tid < 0:
                fi, fm = frame_identity(np.asarray(sim)[i:i + 1], p)
                inst[i], margin[i] = fi[0], fm[0]
                continue
            ev = self._tracks.get(int(tid))
            if ev is None:
                ev = self._tracks[int(tid)] = _Evidence(np.zeros(self.k + 1))
            ev.score = p.decay * ev.score + logp[i]
            ev.seen += 1
            ev.last = frame
            shown, lead = self._decide(ev)
            ev.shown = shown
            inst[i] = shown if 0 <= shown < self.k else UNKNOWN
            margin[i] = lead
        self._forget(frame)
        return inst, margin

    def _decide(self, ev: _Evidence) -> tuple[int, float]:
        p = self.params
        order = np.argsort(ev.score)[::-1]
        best = int(order[0])
        lead = float(ev.score[best] - ev.score[order[1]]) if len(order) > 1 else 0.0
        if ev.shown == UNKNOWN:
            if ev.seen >= p.min_frames and lead >= p.enter_margin:
                return best, lead
            return UNKNOWN, lead
        over = float(ev.score[best] - ev.score[ev.shown])
        if best != ev.shown and over >= p.switch_margin:
            return best, over
        others = np.delete(ev.score, ev.shown)
        return ev.shown, float(ev.score[ev.shown] - others.max()) if len(others) else 0.0

    def _forget(self, frame: int) -> None:
        stale = [t for t, ev in self._tracks.items() if frame - ev.last > self.params.forget_after]
        for t in stale:
            del self._tracks[t]

    def known(self) -> list[int]:
        """Track ids that currently hold evidence."""
        return sorted(self._tracks)


def label(instance: int, cls: int, names: list[str], coarse_names: list[str]) -> str:
    """Display text: the instance name, or `unknown <coarse>`."""
    if instance >= 0:
        return names[instance]
    coarse = coarse_names[cls] if 0 <= cls < len(coarse_names) else str(cls)
    return f"unknown {coarse}"
