"""`mocha bench ablations`: one lever of the demo at a time, each row measured on both worlds.

Every row is `mocha demo <overrides>` on a shared stage cache (`<out>/../ablations/`), so a row reruns only the
stages its lever touches: a stage-2 lever reruns distillation, evaluation and the probes; an evaluation lever
(the prototype learner, its fallback) only the evaluations. Rows that change stage 2 evaluate `mocha` alone:
the student and the teacher methods see the same detector boxes and the same seeded episodes in every such row,
so their numbers are the baseline row's.

Per row and world: 1-/5-shot mAP50-95 of mocha, mocha / teacher on the same boxes, mocha - student, the 1-shot
probe and its share of the teacher's distance above chance (issue targets: 80 %, +15, 80 %), and wall seconds
of the stages the row ran. Interrupted? Run it again: finished stages are reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mocha.bench.core import BenchResult

WORLDS = (("default", "results", "probe"), ("held-out", "heldout", "heldout_probe"))


@dataclass(frozen=True)
class Ablation:
    """One row: a lever of the study and the `mocha demo` options that set it."""

    name: str
    lever: str
    overrides: dict[str, Any] = field(default_factory=dict)
    every_method: bool = False  # a lever that changes the boxes or the learner changes every method: evaluate all

    def options(self, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """The row's `mocha demo` options: the study's base, then `base` (a quick run's tiny world), then its lever."""
        return {**STUDY_BASE, **(base or {}), **self.overrides}

    @property
    def command(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, list | tuple):
                return ",".join(map(str, v)) or "none"
            return str(v).lower() if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)

        return " ".join(["mocha demo", *(f"{k}={fmt(v)}" for k, v in self.options().items())])


# The defaults every row starts from: the demo's when the study began (its levers adopted since are set back, so a
# row measures one lever against the same base).
STUDY_BASE: dict[str, Any] = {"pretrain_epochs": 60, "zoom_out": [], "epochs": 8, "translator_init": "random",
                               "hflip": False, "learner": "conditional", "pool_strides": []}

# In the order they run: the baseline, then the levers most likely to matter first.
ABLATIONS: tuple[Ablation, ...] = (
    Ablation("baseline", "the demo's defaults (recipe tuned, d_t 32, mean pooling, conditional learner)",
             every_method=True),
    Ablation("baseline-seed", "the baseline again with another stage-2 seed: the noise floor of every row",
             {"distill_seed": 43}),
    Ablation("zoom-out", "augmented views with their teacher targets: each image also shrunk to 0.5",
             {"zoom_out": [0.5]}),
    Ablation("zoom-out-4ep", "the zoomed views at the baseline's cost: zoom_out 0.5 over 4 epochs (as many steps as 8)",
             {"zoom_out": [0.5], "epochs": 4}),
    Ablation("zoom-out-6ep", "the zoomed views over 6 epochs (1.5× the baseline's steps)",
             {"zoom_out": [0.5], "epochs": 6}),
    Ablation("zoom-out-seed", "the zoomed views with the other stage-2 seed (is the gain above the noise floor?)",
             {"zoom_out": [0.5], "distill_seed": 43}),
    Ablation("epochs-16", "distillation length: 16 epochs", {"epochs": 16}),
    Ablation("hflip", "augmented views with their teacher targets: each image also mirrored", {"hflip": True}),
    Ablation("pull-40", "stage-2 schedule: a stronger pull on the student (λ_dist 40, student lr 1e-2)",
             {"lambda_dist": 40.0, "lr_student": 1e-2}),
    Ablation("letterbox-320", "letterbox size 320 in stages 2 and 3 (the stage-1 student saw 256)",
             {"distill_imgsz": 320}, every_method=True),  # other detector boxes: every method changes
    Ablation("grid-2", "region features: the box mean and its 2×2 grid, attended by the translator",
             {"pool_bins": 2}),
    Ablation("emb-relative", "L_emb temperature tied to the distance statistics", {"emb_relative": True}),
    Ablation("no-emb", "L_emb off (λ_emb 0)", {"lambda_emb": 0.0}),
    Ablation("paper-schedule", "stage-2 schedule: SPEC's (every 4th a detection epoch, λ_dist 1, student lr 1e-4)",
             {"det_every": 4, "lambda_dist": 1.0, "lr_student": 1e-4}),
    Ablation("learner-flat", "coarse-robust identification: every instance, the coarse class ignored",
             {"learner": "flat"}, every_method=True),
    Ablation("fallback-all", "coarse-robust identification: a box of a class without prototypes searches all",
             {"fallback": "all"}, every_method=True),
)

# --quick: the tiny world and two rows, to smoke-test the study itself
QUICK_BASE = {"size": "tiny", "pretrain_epochs": 1, "epochs": 1, "dim": 8, "episodes": 2, "probe_episodes": 3,
              "imgsz": 64}


def _num(report: dict[str, Any], key: str, shots: str, method: str) -> float | None:
    row = report.get(key, {}).get(shots, {}).get(method)
    return None if row is None else float(row["map50_95"])


def row_metrics(report: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, Any]:
    """The study's numbers of one demo report; student / teacher from `baseline` where this run lacks them."""
    out: dict[str, Any] = {}
    for world, key, probe_key in WORLDS:
        if key not in report:
            continue

        def get(shots: str, method: str, key: str = key) -> float | None:
            v = _num(report, key, shots, method)
            return v if v is not None or baseline is None else _num(baseline, key, shots, method)

        mocha1, mocha5 = get("1", "mocha"), get("5", "mocha")
        teacher, student, teacher_gt = get("1", "teacher"), get("1", "student"), get("1", "teacher-gt")
        probe = report.get(probe_key, {}).get("1", {})
        w = "" if world == "default" else "heldout_"
        out[f"{w}mocha_1shot"] = mocha1
        out[f"{w}mocha_5shot"] = mocha5
        out[f"{w}teacher_1shot"] = teacher
        out[f"{w}of_teacher_pct"] = None if not (mocha1 is not None and teacher) else round(100 * mocha1 / teacher, 1)
        out[f"{w}gain_over_student"] = None if mocha1 is None or student is None else round(mocha1 - student, 1)
        out[f"{w}teacher_of_gt_pct"] = None if not (teacher is not None and teacher_gt) else \
            round(100 * teacher / teacher_gt, 1)
        if probe:
            above = probe["teacher"] - probe["chance"]
            out[f"{w}probe_mocha"] = round(float(probe["mocha"]), 1)
            out[f"{w}probe_of_teacher_pct"] = round(100 * (probe["mocha"] - probe["chance"]) / above, 1) \
                if above > 0 else None
    ws = report.get("wall_seconds", {})
    out["distill_s"] = ws.get("distill")
    out["evaluate_s"] = round(sum(ws.get(s, 0.0) for s in ("evaluate", "heldout-evaluate")), 1)
    return out


def run_ablations(out: Path, rows: tuple[Ablation, ...] = ABLATIONS, base: dict[str, Any] | None = None,
                  ) -> list[dict[str, Any]]:
    """Run (or reuse) every row's demo on the shared stage cache `out`; one dict of numbers per row."""
    from mocha.demo.config import DemoConfig
    from mocha.demo.run import run_demo

    results: list[dict[str, Any]] = []
    baseline: dict[str, Any] | None = None
    for row in rows:
        print(f"=== ablation {row.name}: {row.command}", flush=True)
        opts = {**row.options(base), "out": out, "progress": False}
        if not row.every_method:
            opts["method"] = ["mocha"]
        report = run_demo(DemoConfig(**opts))
        if baseline is None and row.every_method and not row.overrides:
            baseline = report
        results.append({"row": row.name, "lever": row.lever, "command": row.command, "dataset": report.get("dataset"),
                        "methods": "all" if row.every_method else "mocha", **row_metrics(report, baseline)})
    return results


def mirror_invariance(data: str | Path, teacher: str = "builtin", images: int = 60) -> dict[str, Any]:
    """How much a mirrored crop moves the teacher's embedding, against the gaps that identification needs: mean and
    min cosine(crop, mirrored crop) and the mean cosine between crops of one instance / of two instances, on the
    first `images` personal images (the evidence behind `hflip` reusing its targets)."""
    import torch
    import torch.nn.functional as F

    from mocha.data.dataset import load_dataset
    from mocha.data.images import load_image, norm_cxcywh_to_xyxy
    from mocha.data.records import read_split
    from mocha.teacher.crops import crop_regions
    from mocha.teacher.registry import create_teacher

    spec = load_dataset(data)
    crops, inst = [], []
    for r in read_split(spec, "personal")[:images]:
        img = load_image(r.image)
        crops += crop_regions(img, norm_cxcywh_to_xyxy(r.boxes, img.shape[1], img.shape[0]))
        inst += [int(i) for i in r.instance]
    t = create_teacher(teacher)
    labels = ["object"] * len(crops)
    a = F.normalize(t.embed(crops, labels).float(), dim=1)
    b = F.normalize(t.embed([c[:, ::-1].copy() for c in crops], labels).float(), dim=1)
    ids = torch.tensor(inst)
    mirror, sim = (a * b).sum(1), a @ a.T
    same = (ids[:, None] == ids[None]) & ~torch.eye(len(ids), dtype=torch.bool)
    return {"regions": len(ids), "mirror_cos_mean": round(float(mirror.mean()), 3),
            "mirror_cos_min": round(float(mirror.min()), 3), "same_instance_cos": round(float(sim[same].mean()), 3),
            "other_instance_cos": round(float(sim[ids[:, None] != ids[None]].mean()), 3)}


COLUMNS = (("mocha_1shot", "1-shot"), ("mocha_5shot", "5-shot"), ("of_teacher_pct", "% of teacher"),
           ("gain_over_student", "− student"), ("probe_of_teacher_pct", "probe % of teacher"))


def markdown_table(results: list[dict[str, Any]]) -> str:
    """The study as one markdown table: per world mocha's mAP50-95 and its shares of the targets."""
    head = ["row", "command"] + [f"{w} {c}" for w in ("default", "held-out") for _, c in COLUMNS] + ["stage 2 s",
                                                                                                     "evaluation s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(v: Any) -> str:
        return "–" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)

    for r in results:
        vals = [r[f"{w}{k}"] if f"{w}{k}" in r else None for w in ("", "heldout_") for k, _ in COLUMNS]
        lines.append("| " + " | ".join([r["row"], f"`{r['command']}`", *map(cell, vals), cell(r.get("distill_s")),
                                        cell(r.get("evaluate_s"))]) + " |")
    return "\n".join(lines) + "\n"


def run(out_dir: Path, quick: bool = False) -> BenchResult:
    """The `mocha bench ablations` entry point (its table and runs/bench/ablations.json)."""
    rows = ABLATIONS[:1] + tuple(r for r in ABLATIONS if r.name == "no-emb") if quick else ABLATIONS
    results = run_ablations(Path(out_dir).parent / ("ablations-quick" if quick else "ablations"), rows,
                            QUICK_BASE if quick else None)
    from mocha.io import write_text

    write_text(Path(out_dir) / ("ablations-quick.md" if quick else "ablations.md"), markdown_table(results))
    base = results[0]
    summary = {"baseline_of_teacher_pct": base.get("of_teacher_pct"),
               "baseline_heldout_of_teacher_pct": base.get("heldout_of_teacher_pct"),
               "best_row_default": max(results, key=lambda r: r.get("mocha_1shot") or -1)["row"],
               "best_row_heldout": max(results, key=lambda r: r.get("heldout_mocha_1shot") or -1)["row"]}
    world = results[0].get("dataset")
    if world:  # the teacher's mirror invariance on the default world's personal split (what hflip relies on)
        summary |= {f"teacher_{k}": v for k, v in mirror_invariance(world, images=12 if quick else 60).items()}
    return BenchResult("ablations", results, summary,
                       targets={"baseline_of_teacher_pct": ">= 80", "baseline_heldout_of_teacher_pct": ">= 80"},
                       notes="1-shot paper-protocol mAP50-95 (%); rows that change stage 2 evaluate mocha alone and "
                             "take student / teacher from the baseline (the same boxes and seeded episodes)")
