"""`mocha demo` end to end on the tiny world: every stage, report files, then a rerun that reuses all."""

from __future__ import annotations

import json

import pytest

from mocha.cli import main


@pytest.mark.timeout(900)  # the whole tiny demo: world, teacher, distillation, evaluation
def test_demo_tiny_then_cached(tmp_path, capsys):
    args = ["demo", "size=tiny", "pretrain_epochs=1", "epochs=2", "det_every=2", "dim=8", "episodes=2",
            "probe_episodes=3", "imgsz=64", f"out={tmp_path}", "progress=false"]
    main(args)
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["probe"]) == {"1", "5"}
    for row in report["probe"].values():
        assert set(row) == {"colour_histogram", "teacher", "student", "mocha", "chance"}
        assert all(0 <= v <= 100 for v in row.values())
    assert set(report["results"]["1"]) == {"student", "mocha", "teacher", "teacher-gt"}
    assert set(report["wall_seconds"]) >= {"world", "student", "extract", "pca", "distill", "evaluate", "probe",
                                           "total_from_scratch", "total_this_run"}
    assert report["pca"]["dim"] == 8 and report["student"]["source"].startswith("mocha pretrain")
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# mocha demo report") and "| 1 | mocha |" in md and "Neural-collapse probe" in md
    assert (tmp_path / "plots").is_dir() and (tmp_path / "bundle" / "bundle.json").is_file()
    capsys.readouterr()
    main(args)
    out = capsys.readouterr().out
    assert sum(" cached " in line for line in out.splitlines()) == 7
    again = json.loads((tmp_path / "report.json").read_text())
    assert again["results"] == report["results"] and again["probe"] == report["probe"]


def test_demo_refuses_bad_shots_and_a_tampered_shipped_student(tmp_path):
    from mocha.demo.shipped import shipped_student
    from mocha.errors import ConfigError

    with pytest.raises(SystemExit) as exc:
        main(["demo", "shots=1,x", f"out={tmp_path}"])
    assert exc.value.code == 2
    (tmp_path / "student-small-s0-256px-30ep.json").write_text(json.dumps({"sha256": "0" * 64, "command": "c"}))
    (tmp_path / "student-small-s0-256px-30ep.safetensors").write_bytes(b"weights")
    with pytest.raises(ConfigError, match="differs from the recorded"):
        shipped_student("small", 0, 256, 30, assets=tmp_path)
    assert shipped_student("small", 1, 256, 30, assets=tmp_path) is None


def test_the_default_worlds_student_is_shipped_and_verifies():
    from mocha.demo.config import DemoConfig
    from mocha.demo.shipped import shipped_student

    cfg = DemoConfig()
    shipped = shipped_student(cfg.size, cfg.seed, cfg.imgsz, cfg.pretrain_epochs)
    assert shipped is not None and shipped.path.stat().st_size > 1_000_000  # the real weights, hash-checked
    assert f"epochs={cfg.pretrain_epochs}" in shipped.command
