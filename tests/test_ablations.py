"""The ablation study: the demo levers reach their stages without disturbing a default run's cache, each row
sets exactly its lever, and the row numbers (shares of the teacher, gains, probe) are computed right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mocha.demo import ablations
from mocha.demo.config import DemoConfig
from mocha.distill.config import DistillConfig
from mocha.distill.recipes import TUNED
from mocha.errors import ConfigError
from mocha.evaluate.config import KINDS


def test_default_levers_keep_a_default_demos_stage_keys() -> None:
    cfg = DemoConfig()
    # the exact keys a demo had before the levers existed: its finished stages stay reusable
    assert cfg.distill_overrides() == {"epochs": TUNED.epochs, "det_every": 1, "lambda_dist": 20.0, "lr_student": 5e-3,
                                       "lambda_emb": 1.0, "temperature": 1.0, "emb_relative": False, "imgsz": 256,
                                       "zoom_out": list(TUNED.zoom_out), "translator_init": "ridge", "hflip": True,
                                       "pool_strides": [8]}
    # the learner became `prior` on 2026-12-07: a conditional run keeps the evaluation keys it had before
    assert cfg.eval_overrides() == {"learner": "prior", "coarse_penalty": 0.2}
    assert DemoConfig(learner="conditional").eval_overrides() == {}
    assert cfg.method == list(KINDS)
    # a stage-2 key without zoomed views has no zoom_out entry (as before it was a recipe field); with them it has
    from mocha.demo.stages import content_key

    plain = DemoConfig(zoom_out=[], epochs=8, translator_init="random", hflip=False, pool_strides=[]).distill_key()
    zoomed = DemoConfig(zoom_out=[0.5]).distill_key()
    assert "zoom_out" not in plain and zoomed["zoom_out"] == [0.5]
    assert "translator_init" not in plain and zoomed["translator_init"] == "ridge"  # the same for a random start
    assert "hflip" not in plain and zoomed["hflip"] is True  # and for mirrored views
    # the baseline row's key as measured before the levers existed (runs/ablations, 2026-12-02)
    assert content_key({"stage": "distill", "student": "s", "pca": "p", **plain}) == content_key(
        {"stage": "distill", "student": "s", "pca": "p", "epochs": 8, "det_every": 1, "batch": 16,
         "lr_translator": 1e-3, "wd_translator": 1e-4, "lr_student": 5e-3, "wd_student": 1e-5, "wd_head": 0.0,
         "betas": (0.937, 0.999), "warmup_iters": 1000, "warmup_max_frac": 0.1, "warmup_start": 1e-6,
         "lambda_det": 1.0, "lambda_dist": 20.0, "lambda_emb": 1.0, "temperature": 1.0, "emb_relative": False,
         "imgsz": 256})


def test_set_levers_reach_stage_2_and_the_evaluation() -> None:
    cfg = DemoConfig(zoom_out=[0.5], emb_relative=True, temperature=0.5, pool_bins=2, distill_seed=7,
                     hflip=True, method=["mocha"], learner="flat", fallback="all", lambda_det=5.0)
    stage2 = DistillConfig(recipe="tuned", **cfg.distill_overrides())
    assert (stage2.zoom_out, stage2.emb_relative, stage2.temperature, stage2.pool_bins, stage2.seed, stage2.hflip,
            stage2.lambda_det) == ([0.5], True, 0.5, 2, 7, True, 5.0)
    assert DemoConfig().distill_seed == DistillConfig().seed
    assert DemoConfig(distill_imgsz=320).distill_overrides()["imgsz"] == 320 and DemoConfig().stage2_imgsz == 256
    assert cfg.eval_overrides() == {"method": ["mocha"], "learner": "flat", "fallback": "all"}
    with pytest.raises(ConfigError, match="method"):
        DemoConfig(method=["mocha", "oracle"])
    with pytest.raises(ConfigError, match="learner"):
        DemoConfig(learner="knn")
    with pytest.raises(ConfigError, match="zoom_out"):
        DemoConfig(zoom_out=[1.5])


def _report(mocha: float, teacher: float | None = 40.0, student: float | None = 10.0) -> dict[str, Any]:
    def world(m: float) -> dict[str, Any]:
        methods = {"mocha": {"map50_95": m}}
        if teacher is not None:
            methods |= {"teacher": {"map50_95": teacher}, "student": {"map50_95": student},
                        "teacher-gt": {"map50_95": 80.0}}
        return {"1": methods, "5": {"mocha": {"map50_95": m + 5}}}

    probe = {"1": {"teacher": 83.3, "mocha": 58.3, "student": 34.0, "chance": 33.3, "colour_histogram": 50.0}}
    return {"results": world(mocha), "heldout": world(mocha / 2), "probe": probe, "heldout_probe": probe,
            "wall_seconds": {"distill": 12.0, "evaluate": 3.0, "heldout-evaluate": 2.5}}


def test_row_metrics_shares_gains_and_the_baseline_fill_in() -> None:
    base = _report(20.0)
    m = ablations.row_metrics(base, None)
    assert (m["mocha_1shot"], m["mocha_5shot"], m["of_teacher_pct"], m["gain_over_student"]) == (20.0, 25.0, 50.0,
                                                                                                  10.0)
    assert (m["heldout_mocha_1shot"], m["heldout_of_teacher_pct"], m["heldout_gain_over_student"]) == (10.0, 25.0, 0.0)
    assert m["teacher_of_gt_pct"] == 50.0
    assert m["probe_mocha"] == 58.3 and m["probe_of_teacher_pct"] == 50.0  # (58.3-33.3)/(83.3-33.3)
    assert (m["distill_s"], m["evaluate_s"]) == (12.0, 5.5)
    # a row that evaluated mocha alone takes the student and the teacher from the baseline
    alone = ablations.row_metrics(_report(30.0, teacher=None), base)
    assert (alone["of_teacher_pct"], alone["gain_over_student"], alone["heldout_of_teacher_pct"]) == (75.0, 20.0, 37.5)
    assert ablations.row_metrics(_report(30.0, teacher=None), None)["of_teacher_pct"] is None


def test_each_row_runs_the_demo_with_exactly_its_lever(tmp_path: Path, monkeypatch) -> None:
    import mocha.demo.run as demo_run

    seen: list[DemoConfig] = []

    def fake_demo(cfg: DemoConfig) -> dict[str, Any]:
        seen.append(cfg)
        return _report(20.0 + len(seen), teacher=40.0 if cfg.method == list(KINDS) else None)

    monkeypatch.setattr(demo_run, "run_demo", fake_demo)
    rows = ablations.run_ablations(tmp_path, base={"size": "tiny"})
    assert [r["row"] for r in rows] == [a.name for a in ablations.ABLATIONS]
    assert all(c.out == tmp_path and c.size == "tiny" and c.progress is False for c in seen)
    base = DemoConfig(**ablations.STUDY_BASE)  # every row starts from the study's base, not today's defaults
    assert base.zoom_out == [] and base.epochs == 8 and base.hflip is False and base.learner == "conditional"
    for a, cfg in zip(ablations.ABLATIONS, seen, strict=True):
        changed = {k for k in base.to_dict() if getattr(cfg, k) != getattr(base, k)} - {"out", "progress", "size"}
        assert changed == set(a.overrides) | (set() if a.every_method else {"method"}), a.name
        assert cfg.method == (list(KINDS) if a.every_method else ["mocha"])
    by = {r["row"]: r for r in rows}
    # stage-2 rows are scored against the baseline's teacher (40): hflip is the 8th run → mocha 28
    assert [a.name for a in ablations.ABLATIONS][7] == "hflip"
    assert by["hflip"]["mocha_1shot"] == 28.0 and by["hflip"]["of_teacher_pct"] == 70.0
    base = ("mocha demo pretrain_epochs=60 zoom_out=none epochs=8 translator_init=random hflip=false "
            "learner=conditional pool_strides=none")
    assert by["hflip"]["command"] == base.replace("hflip=false", "hflip=true")
    assert by["zoom-out"]["command"] == base.replace("zoom_out=none", "zoom_out=0.5")
    assert by["paper-schedule"]["command"] == base + " det_every=4 lambda_dist=1 lr_student=0.0001"
    assert by["baseline"]["command"] == base
    assert by["baseline"]["methods"] == "all"
    table = ablations.markdown_table(rows).splitlines()
    assert len(table) == 2 + len(rows) and table[0].count("|") == table[1].count("|") == table[2].count("|")
    assert table[2].startswith("| baseline | `mocha demo pretrain_epochs=60 zoom_out=none epochs=8 "
                               "translator_init=random hflip=false learner=conditional pool_strides=none` "
                               "| 21.0 | 26.0 | 52.5 | 11.0 | 50.0 | 10.5 |")


def test_the_study_is_a_benchmark() -> None:
    from mocha.bench.core import list_benchmarks

    assert "ablations" in list_benchmarks()


def test_mirror_invariance_is_measured_on_real_crops(tmp_path: Path) -> None:
    from mocha.data.world import generate_world

    world = generate_world(tmp_path / "w", size="tiny", seed=0, splits="personal", progress=False)
    m = ablations.mirror_invariance(world, images=6)
    assert m["regions"] > 4
    assert -1 <= m["mirror_cos_min"] <= m["mirror_cos_mean"] <= 1
    # a mirrored crop is far closer to its crop than other instances are
    assert m["mirror_cos_mean"] > m["other_instance_cos"]
    assert m["mirror_cos_min"] < 0.9999  # the crops were mirrored: not the same pixels


def test_a_quick_base_wins_over_the_study_base_but_not_over_the_lever(tmp_path: Path, monkeypatch) -> None:
    """`mocha bench ablations quick=true` trains stage 1 for 1 epoch on the tiny world, not the study's 60."""
    import mocha.demo.run as demo_run

    seen: list[DemoConfig] = []
    monkeypatch.setattr(demo_run, "run_demo", lambda cfg: seen.append(cfg) or _report(20.0, teacher=40.0))
    rows = tuple(a for a in ablations.ABLATIONS if a.name in ("baseline", "zoom-out"))
    ablations.run_ablations(tmp_path, rows=rows, base={"size": "tiny", "pretrain_epochs": 1, "zoom_out": [0.3]})
    assert [c.pretrain_epochs for c in seen] == [1, 1] and [c.zoom_out for c in seen] == [[0.3], [0.5]]
