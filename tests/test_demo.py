"""`mocha demo` end to end on the tiny world: every stage, an interruption in the held-out evaluation that a rerun
resumes from the last finished stage, report files (both worlds), then a rerun that reuses all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mocha.cli import main
from mocha.data.world import textures
from mocha.demo.shipped import Leg

STAGES = ("world", "student", "extract", "pca", "distill", "evaluate", "deployed", "probe", "heldout-world",
          "heldout-evaluate", "heldout-deployed", "heldout-probe")


def _ran(out: str) -> dict[str, bool]:
    """{stage: ran (False = cached)} from the demo's closing summary."""
    rows = [line.split() for line in out.splitlines()]
    return {r[0]: r[1] == "ran" for r in rows if len(r) > 2 and r[0] in STAGES and r[1] in ("ran", "cached")}


@pytest.mark.timeout(900)  # the whole tiny demo: world, teacher, distillation, evaluation, held-out world
def test_demo_tiny_interrupted_resumed_then_cached(tmp_path, capsys, monkeypatch):
    import mocha.evaluate.episodic as episodic

    args = ["demo", "size=tiny", "pretrain_epochs=1", "epochs=2", "det_every=2", "dim=8", "episodes=2",
            "probe_episodes=3", "imgsz=64", f"out={tmp_path}", "progress=false"]
    real = episodic.evaluate
    seen: list[tuple[str, str, list[str]]] = []  # (world, box source, methods) of every evaluation

    def interrupted_on_heldout(config):  # Ctrl-C while the held-out world is being evaluated
        seen.append((str(config.data), str(config.detector), [m.label for m in config.methods]))
        if "heldout-world" in str(config.data):
            raise KeyboardInterrupt
        return real(config)

    monkeypatch.setattr(episodic, "evaluate", interrupted_on_heldout)
    # stage 1 in two legs, the second continuing the first (as a shipped student with "continues" is made)
    # (the second on the same world drawn from the wide photo set, as the shipped 250-epoch student's last leg)
    monkeypatch.setattr("mocha.demo.run.stage1_legs", lambda *a, **k: [Leg(1), Leg(1, "wide")])
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 130 and not (tmp_path / "report.json").exists()
    monkeypatch.setattr(episodic, "evaluate", lambda config: seen.append(
        (str(config.data), str(config.detector), [m.label for m in config.methods])) or real(config))
    capsys.readouterr()
    main(args)
    ran = _ran(capsys.readouterr().out)
    # resumed after heldout-world
    assert ran == {s: s in ("heldout-evaluate", "heldout-deployed", "heldout-probe") for s in STAGES}
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["probe"]) == {"1", "5"}
    for row in report["probe"].values():
        assert set(row) == {"colour_histogram", "teacher", "student", "mocha", "chance"}
        assert all(0 <= v <= 100 for v in row.values())
    # every method on the stage-1 student's boxes, and the bundle on its own distilled student's (`mocha-own`)
    assert list(report["results"]["1"]) == ["student", "mocha", "mocha-own", "teacher", "teacher-gt"]
    assert set(report["results"]["1"]["mocha-own"]) == set(report["results"]["1"]["mocha"])
    for key in ("detection", "heldout_detection"):
        det = report[key]
        assert set(det) == {"stage1", "distilled"} and all(0 <= d["map50_95"] <= d["map50"] <= 100
                                                            for d in det.values())
    # the deployed rows come from the bundle's own student; the others from the stage-1 student
    boxes = {tuple(labels): Path(det).name for _, det, labels in seen}
    assert boxes[("student", "mocha", "teacher", "teacher-gt")] == "student.safetensors"
    assert boxes[("mocha-own",)] == "best"
    assert set(report["wall_seconds"]) >= {*STAGES, "total_from_scratch", "total_this_run"}
    # the held-out world: the same schema, another seed, disjoint photos, personal split only
    assert set(report["heldout"]) == {"1", "5"} and set(report["heldout"]["1"]) == set(report["results"]["1"])
    assert set(report["heldout"]["1"]["mocha"]) == set(report["results"]["1"]["mocha"])
    assert 0 <= report["heldout"]["1"]["mocha"]["map50_95"] <= 100
    assert set(report["heldout_probe"]["1"]) == set(report["probe"]["1"])
    hw, w = report["heldout_world"], report["world"]
    assert hw["seed"] == 1 and w["seed"] == 0 and hw["splits"] == ["personal"]
    assert hw["photos"] and not set(hw["photos"]) & set(w["photos"])
    assert report["pca"]["dim"] == 8
    assert report["student"]["source"] == "mocha pretrain (1 ep + 1 ep (wide photos))"
    leg2 = json.loads(next(tmp_path.glob("stages/student-*/pretrain-2/pretrain.json")).read_text())
    assert leg2["config"]["model"].endswith("pretrain/student.safetensors") and leg2["config"]["epochs"] == 1
    assert leg2["config"]["data"].endswith("world-wide/mochaworld.yaml")
    leg2_world = yaml.safe_load(next(tmp_path.glob("stages/student-*/world-wide/mochaworld.yaml")).read_text())["world"]
    assert leg2_world["photos"] == list(textures.photo_set("wide")) and leg2_world["seed"] == 0
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# mocha demo report") and "| 1 | mocha |" in md and "Neural-collapse probe" in md
    assert "| 1 | mocha-own |" in md and "Coarse detection mAP50-95 / mAP50 on the held-out personal split" in md
    assert "## Held-out world" in md and f"seed {hw['seed']}" in md
    assert (tmp_path / "plots").is_dir() and (tmp_path / "bundle" / "bundle.json").is_file()
    capsys.readouterr()
    main(args)
    assert _ran(capsys.readouterr().out) == dict.fromkeys(STAGES, False)
    again = json.loads((tmp_path / "report.json").read_text())
    assert again["results"] == report["results"] and again["probe"] == report["probe"]
    assert again["heldout"] == report["heldout"]


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
    from mocha.demo.shipped import shipped_student, stage1_legs

    cfg = DemoConfig()
    shipped = shipped_student(cfg.size, cfg.seed, cfg.imgsz, cfg.pretrain_epochs)
    assert shipped is not None and shipped.path.stat().st_size > 1_000_000  # the real weights, hash-checked
    legs = stage1_legs(cfg.size, cfg.seed, cfg.imgsz, cfg.pretrain_epochs)
    assert sum(leg.epochs for leg in legs) == cfg.pretrain_epochs
    assert [f"epochs={leg.epochs}" in shipped.command for leg in legs] == [True] * len(legs)
    assert shipped.command.count("mocha pretrain") == len(legs)


def test_stage1_legs_follow_the_continues_chain(tmp_path):
    from mocha.demo.shipped import stage1_legs
    from mocha.errors import ConfigError

    def meta(epochs, **kw):
        (tmp_path / f"student-small-s0-256px-{epochs}ep.json").write_text(json.dumps({"sha256": "0", **kw}))

    meta(100)
    meta(150, continues=100)
    meta(180, continues=150, photos="wide")
    assert stage1_legs("small", 0, 256, 180, assets=tmp_path) == [(100, "default"), (50, "default"), (30, "wide")]
    assert stage1_legs("small", 0, 256, 150, assets=tmp_path) == [(100, "default"), (50, "default")]
    assert stage1_legs("small", 0, 256, 77, assets=tmp_path) == [(77, "default")]  # nothing shipped: from scratch
    meta(90, continues=120)
    with pytest.raises(ConfigError, match="continues=120"):
        stage1_legs("small", 0, 256, 90, assets=tmp_path)
