"""`mocha data check | episodes` through mocha.cli.main: summaries, exit codes, key=value arguments."""

from __future__ import annotations

import json

import pytest

from mocha.cli import main
from tests.fixtures_data import make_paper_dataset, make_yolo_dataset, write_image


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _rows(out: str) -> dict[str, list[str]]:
    lines = [ln.split() for ln in out.strip().splitlines() if not ln.startswith("skipped")]
    assert lines[0][:8] == ["split", "labels", "images", "boxes", "empty", "instances", "coarse", "skipped"]
    return {row[0]: row[1:] for row in lines[1:]}


def test_check_summary(tmp_path, capsys):
    ds = make_yolo_dataset(tmp_path / "ds")
    code, out, _ = _run(["data", "check", str(ds)], capsys)
    assert code == 0
    rows = _rows(out)
    assert rows["base_train"][:7] == ["coarse", "6", "12", "0", "0", "3", "0"]
    assert rows["personal"][:7] == ["instance", "24", "48", "0", "6", "3", "0"]
    assert " ".join(rows["personal"][7:]) == "1-shot: 5"
    code, out, _ = _run(["data", "check", f"data={ds.parent}", "split=base_val", "verify=header"], capsys)
    assert code == 0 and list(_rows(out)) == ["base_val"]


def test_check_bad_input_exits_2(tmp_path, capsys):
    ds = make_yolo_dataset(tmp_path / "ds")
    (ds.parent / "base/train/labels/b003.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n")
    code, out, err = _run(["data", "check", str(ds)], capsys)
    assert code == 2 and out == ""
    assert err.strip().endswith("b003.txt:2: expected 5 fields 'class cx cy w h', got 4: '1 0.5 0.5 0.2'")
    assert err.count("\n") == 1  # one message, no traceback
    code, _, err = _run(["data", "check", str(ds), "--split", "nope"], capsys)
    assert code == 2 and "no split 'nope'" in err
    code, _, err = _run(["data", "check", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and "missing.yaml: no such file or folder" in err
    code, _, err = _run(["data", "check", str(ds), "verify=sometimes"], capsys)
    assert code == 2 and "unknown verify 'sometimes'" in err


def test_check_skip_bad_lists_everything_and_exits_1(tmp_path, capsys):
    ds = make_yolo_dataset(tmp_path / "ds")
    (ds.parent / "base/train/labels/b003.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n5 0.5 0.5 0.1 0.1\n")
    img = ds.parent / "personal/images/p004.png"
    img.write_bytes(img.read_bytes()[:100])
    write_image(ds.parent / "base/val/images/extra.png", seed=1)
    code, out, _ = _run(["data", "check", str(ds), "skip_bad=true"], capsys)
    assert code == 1
    skipped = [ln for ln in out.splitlines() if ln.startswith("skipped")]
    assert len(skipped) == 4
    assert skipped[0].startswith("skipped [base_train] ")
    assert skipped[0].endswith("b003.txt:2: expected 5 fields 'class cx cy w h', got 4: '1 0.5 0.5 0.2'")
    assert "b003.txt:3: class id 5 not in" in skipped[1] and "extra.png: image has no label file" in skipped[2]
    assert "p004.png: unreadable or corrupt image" in skipped[3]
    rows = _rows(out)
    assert rows["base_train"][1:3] == ["5", "10"] and rows["base_train"][6] == "2"
    assert rows["base_val"][6] == "1" and rows["personal"][1] == "23" and rows["personal"][6] == "1"


@pytest.mark.parametrize("layout", ["perseg", "pod"])
def test_check_paper_layout(tmp_path, capsys, layout):
    path = make_paper_dataset(tmp_path / layout, layout)
    code, out, _ = _run(["data", "check", str(path)], capsys)
    assert code == 0
    rows = _rows(out)
    assert rows["personal"][:2] == ["instance", "24" if layout == "pod" else "12"]
    assert " ".join(rows["personal"][7:]) == ("1-shot: 100, 2-shot: 100" if layout == "pod" else "1-shot: 3, 2-shot: 3")


def test_episodes_verb_freezes_a_draw(tmp_path, capsys):
    ds = make_yolo_dataset(tmp_path / "ds")
    out_file = tmp_path / "eps" / "e3.json"
    code, out, _ = _run(["data", "episodes", str(ds), "shots=3", "n=4", "seed=2", f"out={out_file}"], capsys)
    assert code == 0 and "4 3-shot episodes of split 'personal'" in out
    doc = json.loads(out_file.read_text())
    assert doc["split"] == "personal" and doc["shots"] == 3 and len(doc["episodes"]) == 4
    assert all(len(v) == 3 for ep in doc["episodes"] for v in ep["support"].values())
    code, _, err = _run(["data", "episodes", str(ds), "shots=9", f"out={out_file}"], capsys)
    assert code == 2 and "instance 0: 9-shot episodes need at least 9 images" in err
    assert len(json.loads(out_file.read_text())["episodes"]) == 4  # the old file is untouched
