"""`mocha demo` end to end on the tiny world: report files, then a rerun that reuses every stage."""

from __future__ import annotations

import json

from mocha.cli import main


def test_demo_tiny_then_cached(tmp_path, capsys):
    args = ["demo", "size=tiny", "pretrain_epochs=1", "episodes=2", "imgsz=128", f"out={tmp_path}"]
    main(args)
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["probe"]) == {"1", "5"}
    assert 0 <= report["probe"]["1"]["teacher"] <= 100
    assert "student" in report["results"]["1"]
    assert (tmp_path / "report.md").read_text().startswith("# mocha demo report")
    capsys.readouterr()
    main(args)
    out = capsys.readouterr().out
    assert sum(" cached " in line for line in out.splitlines()) == 4
