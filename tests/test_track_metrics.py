"""MOT table I/O and metrics on hand-checkable sequences: perfect track, one swap, misses, identity accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mocha.errors import DataError
from mocha.track.frames import FrameResult
from mocha.track.metrics import identity_accuracy, iou_matrix, mot_metrics
from mocha.track.mot import MotTable, concat, read_mot, write_mot
from mocha.track.outputs import DUPLICATE_ID_BASE, results_table, write_outputs

LEFT = [0, 0, 10, 10]
RIGHT = [50, 0, 60, 10]


def table(rows: list[tuple[int, int, list[float], int]]) -> MotTable:
    """rows of (frame, id, xyxy, instance)."""
    n = len(rows)
    return MotTable(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                    np.array([r[2] for r in rows], np.float32).reshape(n, 4), np.ones(n, np.float32),
                    np.zeros(n, np.int64), np.array([r[3] for r in rows]))


def two_objects(frames: int) -> MotTable:
    return table([r for f in range(1, frames + 1) for r in ((f, 1, LEFT, 8), (f, 2, RIGHT, 9))])


def test_iou() -> None:
    m = iou_matrix(np.array([LEFT]), np.array([LEFT, [5, 0, 15, 10], RIGHT]))
    assert m == pytest.approx(np.array([[1.0, 1 / 3, 0.0]]))


def test_perfect_track() -> None:
    gt = two_objects(4)
    m = mot_metrics(gt, gt, 4)
    assert (m["mota"], m["idf1"], m["idsw"], m["num_misses"]) == (1.0, 1.0, 0.0, 0.0)
    assert identity_accuracy(gt, gt, 4)["id_accuracy"] == 1.0


def test_one_swap() -> None:
    # The two hypothesis ids trade places after frame 2: each object switches once → 2 ID switches.
    gt = two_objects(4)
    hyp = table([r for f in range(1, 5) for r in ((f, 1 if f <= 2 else 2, LEFT, 8), (f, 2 if f <= 2 else 1, RIGHT, 9))])
    m = mot_metrics(gt, hyp, 4)
    assert m["idsw"] == 2.0
    assert m["mota"] == pytest.approx(1 - 2 / 8)
    assert m["idf1"] == pytest.approx(0.5)  # best one-to-one id mapping holds half of the 8 boxes


def test_misses_and_false_positives_and_iou_threshold() -> None:
    gt = two_objects(2)
    # Frame 1: right box shifted to IoU 1/3 (< 0.5) → one miss + one false positive; frame 2: right box missing.
    hyp = table([(1, 1, LEFT, 8), (1, 2, [55, 0, 65, 10], 9), (2, 1, LEFT, 8)])
    m = mot_metrics(gt, hyp, 2)
    assert (m["num_misses"], m["num_false_positives"], m["idsw"]) == (2.0, 1.0, 0.0)
    assert m["mota"] == pytest.approx(1 - 3 / 4)
    with pytest.raises(ValueError, match="repeat"):
        mot_metrics(gt, table([(1, 1, LEFT, 8), (1, 1, RIGHT, 9)]), 1)


def test_identity_accuracy() -> None:
    gt = two_objects(2)
    # 3 of 4 GT boxes matched; of those, 2 show the right instance, 1 shows the look-alike.
    hyp = table([(1, 1, LEFT, 8), (1, 2, RIGHT, 8), (2, 1, LEFT, 8)])
    acc = identity_accuracy(gt, hyp, 2)
    assert acc["id_accuracy"] == pytest.approx(2 / 3)
    assert acc["id_recall"] == pytest.approx(2 / 4)
    assert acc["id_accuracy_frame"] == pytest.approx((1 / 2 + 1) / 2)


def result(frame: int, inst: list[int], conf: list[float], tid: list[int]) -> FrameResult:
    n = len(inst)
    return FrameResult(frame, np.array([LEFT, RIGHT, [100, 0, 110, 10]][:n], np.float32), np.array(conf, np.float32),
                       np.zeros(n, np.int64), np.array(tid), np.array(inst), np.zeros(n, np.float32),
                       [f"x{i}" for i in inst])


def test_results_table_by_identity_and_track() -> None:
    res = [result(0, [0, 0, -1], [0.6, 0.9, 0.9], [4, 5, 6]), result(1, [1, 0], [0.9, 0.9], [4, 5])]
    gallery = [8, 9]
    by_id = results_table(res, gallery, by="identity")
    f1 = by_id.at(1)
    # Frame 1: both boxes show instance 0 (id 8); the more confident (RIGHT) keeps it, the other gets a fresh
    # id; the unknown box is left out.
    assert sorted(by_id.id[f1].tolist()) == [8, DUPLICATE_ID_BASE]
    assert by_id.id[f1][by_id.xyxy[f1][:, 0] == 50].tolist() == [8]
    assert by_id.id[by_id.at(2)].tolist() == [9, 8]
    by_track = results_table(res, gallery)
    assert by_track.id.tolist() == [4, 5, 6, 4, 5] and by_track.instance.tolist() == [8, 8, -1, 9, 8]
    with pytest.raises(ValueError):
        results_table(res, gallery, by="name")


def test_mot_csv_roundtrip_atomic_and_bad_lines(tmp_path: Path) -> None:
    gt = two_objects(3)
    p = write_mot(tmp_path / "t.csv", gt)
    back = read_mot(p)
    assert np.array_equal(back.frame, gt.frame) and np.allclose(back.xyxy, gt.xyxy)
    assert back.instance.tolist() == gt.instance.tolist()
    assert p.read_text().splitlines()[0] == "1,1,0.00,0.00,10.00,10.00,1.0000,0,8"
    assert [f.name for f in tmp_path.iterdir()] == ["t.csv"]  # no temp file left behind

    class Boom(MotTable):
        def __len__(self) -> int:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # interrupted while writing: the old file stays whole
        write_mot(p, Boom(*(getattr(gt, f) for f in ("frame", "id", "xyxy", "score", "cls", "instance"))))
    assert read_mot(p).frame.tolist() == gt.frame.tolist() and len(list(tmp_path.iterdir())) == 1
    (tmp_path / "bad.csv").write_text("1,1,0,0,10,10,1,0,8\n2,1,0,0,10\n")
    with pytest.raises(DataError, match=r"bad.csv:2: expected 9 fields"):
        read_mot(tmp_path / "bad.csv")
    (tmp_path / "nan.csv").write_text("1,a,0,0,10,10,1,0,8\n")
    with pytest.raises(DataError, match="nan.csv:1: non-numeric"):
        read_mot(tmp_path / "nan.csv")
    assert len(concat([])) == 0


def test_write_outputs(tmp_path: Path) -> None:
    import json

    res = [result(0, [0, -1], [0.6, 0.9], [4, 5]), result(1, [1], [0.9], [4])]
    paths = write_outputs(tmp_path, res, ["my-mug-0", "my-mug-1"], ["mug"])
    rows = read_mot(paths["csv"])
    assert rows.frame.tolist() == [1, 1, 2] and rows.id.tolist() == [4, 5, 4] and rows.instance.tolist() == [0, -1, 1]
    doc = json.loads(paths["json"].read_text())
    assert doc["names"] == ["my-mug-0", "my-mug-1"] and len(doc["frames"]) == 2
    assert doc["frames"][0]["boxes"][1] == {"xyxy": RIGHT, "conf": 0.9, "cls": 0, "track_id": 5, "instance": -1,
                                            "margin": 0.0, "label": "x-1"}
