"""Per-frame results → MOT tables (by track id or by shown identity), the MOT CSV and the per-frame JSON."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mocha.io import write_json
from mocha.track.frames import FrameResult
from mocha.track.mot import MotTable, concat, write_mot

DUPLICATE_ID_BASE = 1_000_000  # ids given to extra boxes showing an instance already shown in the frame


def results_table(results: Sequence[FrameResult], instance_ids: Sequence[int] | None = None,
                  by: str = "track") -> MotTable:
    """One MOT table. `instance_ids` maps a shown instance index to the id written (default: the index).
    `by="track"`: the row id is the track id. `by="identity"`: the row id is the shown instance's id, the
    way a user tells objects apart; unknown boxes are left out, and a second box showing an instance already
    shown in the same frame gets a fresh id of its own (so it counts as an error, never as the instance)."""
    if by not in ("track", "identity"):
        raise ValueError(f"by must be 'track' or 'identity', got {by!r}")
    ids = np.asarray(instance_ids if instance_ids is not None else [], np.int64)
    parts, fresh = [], DUPLICATE_ID_BASE
    for r in results:
        inst = np.where(r.instance >= 0, ids[r.instance] if len(ids) else r.instance, -1).astype(np.int64)
        if by == "track":
            keep = np.arange(len(r))
            row_id = r.track_id.astype(np.int64)
        else:
            keep = np.flatnonzero(inst >= 0)
            keep = keep[np.argsort(-r.conf[keep], kind="stable")]  # the most confident box keeps the id
            row_id = np.empty(len(keep), np.int64)
            seen: set[int] = set()
            for j, i in enumerate(keep):
                if int(inst[i]) in seen:
                    row_id[j], fresh = fresh, fresh + 1
                else:
                    row_id[j] = inst[i]
                    seen.add(int(inst[i]))
        parts.append(MotTable(np.full(len(keep), r.frame + 1, np.int64), row_id, r.xyxy[keep],
                              r.conf[keep], r.cls[keep].astype(np.int64), inst[keep]))
    return concat(parts)


def write_outputs(folder: str | Path, results: Sequence[FrameResult], names: list[str],
                  coarse_names: list[str], stem: str = "tracks") -> dict[str, Path]:
    """`<stem>.csv` (MOT rows by track id; `instance` = index into `names`, -1 unknown) and `<stem>.json`
    (names + one entry per frame), each written to a temp file and renamed."""
    folder = Path(folder)
    csv = write_mot(folder / f"{stem}.csv", results_table(results))
    js = folder / f"{stem}.json"
    write_json(js, {"format": "mocha-tracks/1", "names": list(names), "coarse_names": list(coarse_names),
                    "frames": [r.to_dict() for r in results]})
    return {"csv": csv, "json": js}
