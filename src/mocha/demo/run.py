"""`mocha demo`: the end-to-end slice that exists on the embedded default, with content-cached stages.

Stages: generate the mochaworld → world probe (colour histogram vs the ImageNet teacher, the collapse
setting) → stage 1 pretraining of the student → episodic evaluation of the student on the personal split.
The teacher-store and distillation stages join this pipeline when `mocha.teacher` lands (issue 4).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mocha.demo.stages import StageResult, run_stage
from mocha.io import write_json, write_text


@dataclass
class DemoConfig:
    size: str = "small"
    seed: int = 0
    imgsz: int = 256
    pretrain_epochs: int = 5
    episodes: int = 100
    shots: list[int] = field(default_factory=lambda: [1, 5])
    probe_episodes: int = 20
    out: Path = Path("runs/demo")
    fresh: bool = False


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run (or reuse) every stage; write runs/demo/report.md and report.json; return the report."""
    out = Path(cfg.out)
    t_all = time.perf_counter()
    stages: list[StageResult] = []

    def world(work: Path) -> dict[str, Any]:
        from mocha.data.world import generate_world

        yml = generate_world(work / "world", size=cfg.size, seed=cfg.seed, progress=True)
        return {"yaml": str(yml.relative_to(work))}

    s_world = run_stage(out, "world", {"size": cfg.size, "seed": cfg.seed}, world, cfg.fresh)
    stages.append(s_world)
    yaml_path = s_world.dir / s_world.result["yaml"]

    def probe(work: Path) -> dict[str, Any]:
        from mocha.data.world.probe import probe_world

        return {str(k): probe_world(yaml_path, shots=k, episodes=cfg.probe_episodes) for k in cfg.shots}

    s_probe = run_stage(
        out, "probe", {"world": s_world.key, "shots": cfg.shots, "ep": cfg.probe_episodes}, probe, cfg.fresh
    )
    stages.append(s_probe)

    def pretrain_stage(work: Path) -> dict[str, Any]:
        from mocha.student.pretrain import PretrainConfig, pretrain, read_metrics

        student = pretrain(
            PretrainConfig(data=yaml_path, epochs=cfg.pretrain_epochs, imgsz=cfg.imgsz, project=work, name="pretrain")
        )
        return {"student": str(student.relative_to(work)), "metrics": read_metrics(work / "pretrain")["metrics"]}

    s_pre = run_stage(
        out,
        "pretrain",
        {"world": s_world.key, "epochs": cfg.pretrain_epochs, "imgsz": cfg.imgsz},
        pretrain_stage,
        cfg.fresh,
    )
    stages.append(s_pre)
    student_path = s_pre.dir / s_pre.result["student"]

    def evaluate_stage(work: Path) -> dict[str, Any]:
        from mocha.evaluate.episodic import EvalConfig, evaluate
        from mocha.evaluate.methods import MethodSpec

        report = evaluate(
            EvalConfig(
                data=yaml_path, methods=[MethodSpec("student", detector=student_path)], shots=list(cfg.shots),
                episodes=cfg.episodes, detector=student_path, imgsz=cfg.imgsz, out=work, name="evaluate",
            )
        )  # fmt: skip
        return {"report": json.loads(json.dumps(report, default=str))}

    s_eval = run_stage(
        out, "evaluate", {"student": s_pre.key, "episodes": cfg.episodes, "shots": cfg.shots}, evaluate_stage, cfg.fresh
    )
    stages.append(s_eval)

    report = dict(s_eval.result["report"])
    report["probe"] = {
        k: {"colour_histogram": 100 * v["histogram"], "teacher": 100 * v["mobilenetv2"], "chance": 100 * v["chance"]}
        for k, v in s_probe.result.items()
    }
    report["pretrain_metrics"] = s_pre.result["metrics"]
    report["wall_seconds"] = {s.name: round(s.seconds, 1) for s in stages}
    report["wall_seconds"]["total_this_run"] = round(time.perf_counter() - t_all, 1)
    report["config"] = {k: str(v) for k, v in asdict(cfg).items()}
    write_json(out / "report.json", report)
    write_text(out / "report.md", _markdown(report, stages))
    for s in stages:
        print(f"{s.name:10s} {'cached' if s.cached else 'ran'} {s.seconds:7.1f} s")
    return report


def _markdown(report: dict[str, Any], stages: list[StageResult]) -> str:
    lines = ["# mocha demo report", "", "## World probe (within-category nearest-prototype accuracy, GT crops, %)", ""]
    lines += ["| shots | colour histogram | ImageNet teacher | chance |", "|---|---|---|---|"]
    for k, v in report["probe"].items():
        lines.append(f"| {k} | {v['colour_histogram']:.1f} | {v['teacher']:.1f} | {v['chance']:.1f} |")
    lines += ["", "## Episodic evaluation on the personal split (%)", ""]
    lines += ["| shots | method | mAP50-95 | mAP50 | strict mAP50-95 | accuracy |", "|---|---|---|---|---|---|"]
    for shots, methods in report.get("results", {}).items():
        for m, r in methods.items():
            lines.append(
                f"| {shots} | {m} | {r['map50_95']:.1f} | {r['map50']:.1f} "
                f"| {r['strict_map50_95']:.1f} | {r['accuracy']:.1f} |"
            )
    lines += ["", "## Stages", "", "| stage | seconds | cached |", "|---|---|---|"]
    lines += [f"| {s.name} | {s.seconds:.1f} | {s.cached} |" for s in stages]
    return "\n".join(lines) + "\n"
