"""`mocha demo`: the whole MOCHA recipe on the embedded default, with content-cached stages.

world → student (stage 1: the shipped, hash-checked student of the default world, or `mocha pretrain`) →
extract (built-in teacher embeddings of every GT region into the store) → pca → distill (stage 2) →
evaluate (stage 3: student / mocha / teacher / teacher-gt, episodic, all on the stage-1 student's boxes) →
deployed (`mocha-own`: the bundle on its own distilled student's boxes, as `mocha detect` runs it, and the coarse
detection mAP of both students) → probe (the neural-collapse evidence) → heldout-world / heldout-evaluate /
heldout-deployed / heldout-probe (the same student and bundle on the personal split of a world with another seed
and disjoint photos; no earlier stage reads anything of it, so nothing is tuned on it).
A stage's key covers its config and its inputs' keys; a rerun reuses finished stages, `--fresh` reruns all.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from mocha.data.world.textures import photo_set
from mocha.demo.config import RECIPE, DemoConfig
from mocha.demo.shipped import shipped_student, stage1_legs
from mocha.demo.stages import StageResult, run_stage
from mocha.errors import ConfigError
from mocha.io import atomic_dir, write_json, write_text

log = logging.getLogger(__name__)
MIN_FREE_BYTES = 1 << 30  # the small world's stages take ~0.3 GB; keep margin
OWN_BOXES = "mocha-own"  # results key of the deployed bundle (its own student's boxes)


def _check_disk(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise ConfigError(f"--out {out}: only {free / 2**30:.2f} GiB free; the demo needs at least "
                          f"{MIN_FREE_BYTES / 2**30:.0f} GiB")


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run (or reuse) every stage; write <out>/report.md, report.json and plots/; return the report."""
    out = Path(cfg.out)
    _check_disk(out)
    t_all = time.perf_counter()
    stages: list[StageResult] = []

    def stage(name: str, inputs: dict[str, Any], fn: Any) -> StageResult:
        print(f"== {name} ==", flush=True)
        s = run_stage(out, name, inputs, fn, cfg.fresh)
        stages.append(s)
        return s

    # ------------------------------------------------------------------ world
    def world(work: Path) -> dict[str, Any]:
        from mocha.data.world import generate_world

        yml = generate_world(work / "world", size=cfg.size, seed=cfg.seed, progress=cfg.progress)
        return {"yaml": str(yml.relative_to(work))}

    s_world = stage("world", {"size": cfg.size, "seed": cfg.seed}, world)
    data = s_world.dir / s_world.result["yaml"]

    # ------------------------------------------------------------------ stage 1
    shipped = None if cfg.fresh else shipped_student(cfg.size, cfg.seed, cfg.imgsz, cfg.pretrain_epochs)
    if shipped is not None:
        def use_shipped(work: Path) -> dict[str, Any]:
            import hashlib

            if shipped.world_yaml_sha256 and hashlib.sha256(data.read_bytes()).hexdigest() != shipped.world_yaml_sha256:
                log.warning("the generated world differs from the one the shipped student was trained on; "
                            "its numbers may not hold — `mocha demo --fresh` retrains it")
            shutil.copyfile(shipped.path, work / "student.safetensors")
            return {"student": "student.safetensors", "source": f"shipped ({shipped.path.name}, sha256 verified)",
                    "metrics": shipped.metrics, "command": shipped.command}

        s_student = stage("student", {"world": s_world.key, "sha256": shipped.sha256}, use_shipped)
    else:
        def pretrain_stage(work: Path) -> dict[str, Any]:
            from mocha.data.world import generate_world
            from mocha.student.pretrain import PretrainConfig, pretrain, read_metrics

            legs = stage1_legs(cfg.size, cfg.seed, cfg.imgsz, cfg.pretrain_epochs)
            names = ["pretrain"] + [f"pretrain-{i}" for i in range(2, len(legs) + 1)]
            model = "yolov8n"  # the first leg trains from scratch; each next one continues the last student
            for name, leg in zip(names, legs, strict=True):
                leg_data = data
                if leg.photos != "default":  # the same world's layout, drawn from another photo set
                    leg_data = work / f"world-{leg.photos}" / data.name
                    if not leg_data.is_file():
                        generate_world(leg_data.parent, size=cfg.size, seed=cfg.seed, photos=leg.photos,
                                       overwrite=True, progress=cfg.progress)
                student = pretrain(PretrainConfig(data=leg_data, model=model, epochs=leg.epochs, imgsz=cfg.imgsz,
                                                  project=work, name=name))
                model = str(student)
            m = read_metrics(work / names[-1])["metrics"]
            how = " + ".join(f"{leg.epochs} ep" + ("" if leg.photos == "default" else f" ({leg.photos} photos)")
                             for leg in legs)
            return {"student": str(student.relative_to(work)), "source": f"mocha pretrain ({how})",
                    "metrics": {"map50": m.get("metrics/mAP50(B)", 0.0), "map50_95": m.get("metrics/mAP50-95(B)", 0.0)}}

        s_student = stage("student", {"world": s_world.key, "epochs": cfg.pretrain_epochs, "imgsz": cfg.imgsz},
                          pretrain_stage)
    student = s_student.dir / s_student.result["student"]

    # ------------------------------------------------------------------ teacher store + PCA
    def extract(work: Path) -> dict[str, Any]:
        from mocha.teacher.extract import extract_split

        rows = {}
        for split in ("base_train", "base_val", "personal"):
            st = extract_split(data, split, work / "store", teacher=cfg.teacher, progress=cfg.progress)
            rows[split] = {"regions": st.regions, "seconds": round(st.seconds, 1)}
        return {"store": "store", "splits": rows}

    s_extract = stage("extract", {"world": s_world.key, "teacher": cfg.teacher}, extract)
    store = s_extract.dir / "store"

    def pca(work: Path) -> dict[str, Any]:
        from mocha.teacher.pca import fit_store_pca

        art = fit_store_pca(store, dim=cfg.dim, split="base_train")
        art.save(work / "pca.safetensors")
        return {"pca": "pca.safetensors", "explained_variance": art.meta["explained_variance_ratio"],
                "vectors": art.meta["vectors"]}

    s_pca = stage("pca", {"extract": s_extract.key, "dim": cfg.dim}, pca)
    pca_path = s_pca.dir / s_pca.result["pca"]

    # ------------------------------------------------------------------ stage 2
    def distill_stage(work: Path) -> dict[str, Any]:
        from mocha.distill.config import DistillConfig
        from mocha.distill.rundir import read_metrics
        from mocha.distill.train import distill

        best = distill(DistillConfig(recipe=RECIPE.name, data=data, store=store, pca=pca_path, student=student,
                                     project=work, name="run", progress=cfg.progress, tensorboard=False,
                                     **cfg.distill_overrides()))
        rows = read_metrics(work / "run")
        return {"bundle": str(best.relative_to(work)), "best_epoch": rows[-1].get("best_epoch"),
                "best_val_loss": rows[-1].get("best")}

    s_distill = stage("distill", {"student": s_student.key, "pca": s_pca.key, **cfg.distill_key()}, distill_stage)
    bundle = s_distill.dir / s_distill.result["bundle"]

    # ------------------------------------------------------------------ stage 3
    def evaluate_on(world: Path) -> Any:
        def evaluate_stage(work: Path) -> dict[str, Any]:
            from mocha.evaluate.episodic import EvalConfig, evaluate
            from mocha.evaluate.methods import MethodSpec

            every = [MethodSpec("student", detector=student), MethodSpec("mocha", bundle=bundle),
                     MethodSpec("teacher", teacher=cfg.teacher), MethodSpec("teacher-gt", teacher=cfg.teacher)]
            methods = [m for m in every if m.kind in cfg.method]
            report = evaluate(EvalConfig(data=world, methods=methods, shots=list(cfg.shots), episodes=cfg.episodes,
                                         detector=student, imgsz=cfg.stage2_imgsz, learner=cfg.learner,
                                         fallback=cfg.fallback, coarse_penalty=cfg.coarse_penalty, project=work,
                                         name="evaluate", cache=False, progress=cfg.progress))
            return {"report": json.loads(json.dumps(report, default=str)), "run": "evaluate"}

        return evaluate_stage

    eval_inputs = {"student": s_student.key, "distill": s_distill.key, "teacher": cfg.teacher,
                   "episodes": cfg.episodes, "shots": cfg.shots, "imgsz": cfg.stage2_imgsz, **cfg.eval_overrides()}
    s_eval = stage("evaluate", eval_inputs, evaluate_on(data))

    # the bundle as `mocha detect` runs it: its own (distilled) student detects and embeds in one pass
    def deployed_on(world: Path) -> Any:
        def deployed_stage(work: Path) -> dict[str, Any]:
            from mocha.evaluate.detection import coarse_detection_map
            from mocha.evaluate.episodic import EvalConfig, evaluate
            from mocha.evaluate.methods import MethodSpec

            report = evaluate(EvalConfig(data=world, methods=[MethodSpec("mocha", name=OWN_BOXES, bundle=bundle)],
                                         shots=list(cfg.shots), episodes=cfg.episodes, detector=bundle,
                                         imgsz=cfg.stage2_imgsz, learner=cfg.learner, fallback=cfg.fallback,
                                         coarse_penalty=cfg.coarse_penalty,
                                         project=work, name="evaluate", cache=False, plots=False,
                                         progress=cfg.progress))
            detection = {which: coarse_detection_map(path, world, imgsz=cfg.stage2_imgsz)
                         for which, path in (("stage1", student), ("distilled", bundle))}
            return {"report": {"results": json.loads(json.dumps(report["results"], default=str))},
                    "detection": detection}

        return deployed_stage

    deploy = "mocha" in cfg.method
    s_deploy = stage("deployed", eval_inputs, deployed_on(data)) if deploy else None

    def probe(work: Path) -> dict[str, Any]:
        from mocha.demo.probe import collapse_probe

        return {"probe": collapse_probe(data, shots=cfg.shots, episodes=cfg.probe_episodes, store=store,
                                        student=student, bundle=bundle, imgsz=cfg.stage2_imgsz)}

    probe_inputs = {"student": s_student.key, "distill": s_distill.key, "shots": cfg.shots,
                    "episodes": cfg.probe_episodes}
    s_probe = stage("probe", {"extract": s_extract.key, **probe_inputs}, probe)

    # ------------------------------------------------------------------ held-out world (evaluation only)
    heldout: dict[str, Any] | None = None
    if cfg.heldout:
        h_photos = list(photo_set(cfg.heldout_photos))
        h_world = {"size": cfg.size, "seed": cfg.heldout_world_seed, "photos": h_photos, "splits": "personal"}

        def heldout_world(work: Path) -> dict[str, Any]:
            from mocha.data.world import generate_world

            # only the personal split and its episodes: no stage trains on a held-out image
            yml = generate_world(work / "world", size=cfg.size, seed=cfg.heldout_world_seed, photos=tuple(h_photos),
                                 splits="personal", progress=cfg.progress)
            return {"yaml": str(yml.relative_to(work))}

        s_hworld = stage("heldout-world", h_world, heldout_world)
        h_data = s_hworld.dir / s_hworld.result["yaml"]
        s_heval = stage("heldout-evaluate", {"world": s_hworld.key, **eval_inputs}, evaluate_on(h_data))
        s_hdeploy = stage("heldout-deployed", {"world": s_hworld.key, **eval_inputs}, deployed_on(h_data)) \
            if deploy else None

        def heldout_probe(work: Path) -> dict[str, Any]:
            from mocha.demo.probe import collapse_probe
            from mocha.teacher.extract import extract_split

            # the probe's teacher side reads the store: the held-out personal regions only
            extract_split(h_data, "personal", work / "store", teacher=cfg.teacher, progress=cfg.progress)
            return {"probe": collapse_probe(h_data, shots=cfg.shots, episodes=cfg.probe_episodes,
                                            store=work / "store", student=student, bundle=bundle,
                                            imgsz=cfg.stage2_imgsz)}

        s_hprobe = stage("heldout-probe", {"world": s_hworld.key, "teacher": cfg.teacher, **probe_inputs},
                         heldout_probe)
        heldout = {"results": _with_deployed(s_heval, s_hdeploy), "probe": s_hprobe.result["probe"],
                   "detection": s_hdeploy.result["detection"] if s_hdeploy else None,
                   "world": {**h_world, "splits": ["personal"], "dataset": s_heval.result["report"]["dataset"],
                             "episodes_run": s_heval.result["report"].get("episodes_run")}}

    # ------------------------------------------------------------------ report
    report = dict(s_eval.result["report"])
    report["results"] = _with_deployed(s_eval, s_deploy)
    if s_deploy is not None:  # coarse mAP of the stage-1 and the distilled student's own detections
        report["detection"] = s_deploy.result["detection"]
    report["probe"] = s_probe.result["probe"]
    report["world"] = {"size": cfg.size, "seed": cfg.seed, "photos": list(photo_set(cfg.photos)),
                       "splits": ["base_train", "base_val", "personal"]}
    if heldout is not None:  # the same schema as `results` / `probe`: heldout["1"]["mocha"]["map50_95"]
        report["heldout"] = heldout["results"]
        report["heldout_probe"] = heldout["probe"]
        report["heldout_world"] = heldout["world"]
        if heldout["detection"] is not None:
            report["heldout_detection"] = heldout["detection"]
    report["student"] = {k: s_student.result.get(k) for k in ("source", "metrics", "command")}
    report["distill"] = {k: s_distill.result.get(k) for k in ("best_epoch", "best_val_loss")}
    report["pca"] = {"dim": cfg.dim, **{k: s_pca.result[k] for k in ("explained_variance", "vectors")}}
    report["wall_seconds"] = {s.name: round(s.seconds, 1) for s in stages}
    report["wall_seconds"]["total_from_scratch"] = round(sum(s.seconds for s in stages), 1)
    report["wall_seconds"]["total_this_run"] = round(time.perf_counter() - t_all, 1)
    report["config"] = {k: str(v) for k, v in cfg.to_dict().items()}
    plots = s_eval.dir / s_eval.result["run"] / "plots"
    if plots.is_dir():
        if (out / "plots").exists():
            shutil.rmtree(out / "plots")
        shutil.copytree(plots, out / "plots")
    with atomic_dir(out / "bundle") as tmp:  # the distilled bundle where users look for it (README)
        shutil.copytree(bundle, tmp, dirs_exist_ok=True)
    report["bundle"] = str(out / "bundle")
    write_json(out / "report.json", report)
    write_text(out / "report.md", _markdown(report, stages))
    print()
    for s in stages:
        print(f"{s.name:16s} {'cached' if s.cached else 'ran   '} {s.seconds:7.1f} s  {_figure(s, report)}")
    print(f"{'total':16s} {report['wall_seconds']['total_this_run']:.1f} s this run "
          f"({report['wall_seconds']['total_from_scratch']:.1f} s of stage work)")
    print(f"report: {out / 'report.md'}")
    return report


def _with_deployed(s_eval: StageResult, s_deploy: StageResult | None) -> dict[str, Any]:
    """The evaluation's `results` with the deployed bundle's row (`mocha-own`) after `mocha` in every shot count."""
    results = s_eval.result["report"]["results"]
    if s_deploy is None:
        return results
    own = s_deploy.result["report"]["results"]
    out: dict[str, Any] = {}
    for shots, methods in results.items():
        row: dict[str, Any] = {}
        for m, r in methods.items():
            row[m] = r
            if m == "mocha" and OWN_BOXES in own.get(shots, {}):
                row[OWN_BOXES] = own[shots][OWN_BOXES]
        out[shots] = row
    return out


def _figure(s: StageResult, report: dict[str, Any]) -> str:
    """The key figure of a stage for the closing summary."""
    r = s.result
    if s.name in ("world", "heldout-world"):
        return r["yaml"]
    if s.name == "student":
        m = r.get("metrics") or {}
        return f"{r.get('source')}; val mAP50 {100 * float(m.get('map50', 0)):.1f}"
    if s.name == "extract":
        return ", ".join(f"{k} {v['regions']}" for k, v in r["splits"].items()) + " regions"
    if s.name == "pca":
        return f"d_t {report['pca']['dim']}, {100 * r['explained_variance']:.1f}% variance kept"
    if s.name == "distill":
        return f"best epoch {r.get('best_epoch')}, val loss {r.get('best_val_loss', 0):.4f}"
    if s.name in ("evaluate", "heldout-evaluate"):
        res = r["report"]["results"]
        one = res.get(str(min(int(k) for k in res)), {})
        return "1-shot mAP50-95: " + ", ".join(f"{m} {v['map50_95']:.1f}" for m, v in one.items())
    if s.name in ("deployed", "heldout-deployed"):
        res = r["report"]["results"]
        one = res.get(str(min(int(k) for k in res)), {}).get(OWN_BOXES, {})
        det = r["detection"]
        return (f"1-shot mAP50-95: {OWN_BOXES} {one.get('map50_95', float('nan')):.1f}; coarse detection mAP50-95 "
                f"stage-1 {det['stage1']['map50_95']:.1f}, distilled {det['distilled']['map50_95']:.1f}")
    if s.name in ("probe", "heldout-probe"):
        one = r["probe"].get(min(r["probe"], key=int), {})
        return "1-shot probe %: " + ", ".join(f"{k} {v:.1f}" for k, v in one.items())
    return ""


def _markdown(report: dict[str, Any], stages: list[StageResult]) -> str:
    lines = ["# mocha demo report", ""]
    lines += ["## Episodic evaluation on the personal split (%; mean ± std over episodes)", ""]
    lines += ["| shots | method | mAP50-95 | mAP50 | strict mAP50-95 | top-1 acc | query ms/img | peak MB |",
              "|---|---|---|---|---|---|---|---|"]
    for shots, methods in report.get("results", {}).items():
        for m, r in methods.items():
            def cell(key: str, r: dict = r) -> str:
                return f"{r[key]:.1f}" + (f" ± {r[key + '_std']:.1f}" if key + "_std" in r else "")

            lines.append(f"| {shots} | {m} | {cell('map50_95')} | {cell('map50')} | {cell('strict_map50_95')} "
                         f"| {cell('accuracy')} | {r['query_ms_per_image']:.1f} | {r['peak_memory_mb']:.0f} |")
    if OWN_BOXES in next(iter(report.get("results", {}).values()), {}):
        lines += ["", f"Every method takes its query boxes from the stage-1 student except `{OWN_BOXES}`: the bundle "
                  "as `mocha detect` runs it, its distilled student detecting and embedding in one pass."]
    for key, where in (("detection", "personal split"), ("heldout_detection", "held-out personal split")):
        if key in report:
            d = report[key]
            lines += ["", f"Coarse detection mAP50-95 / mAP50 on the {where}: stage-1 student "
                      f"{d['stage1']['map50_95']:.1f} / {d['stage1']['map50']:.1f}, distilled student "
                      f"{d['distilled']['map50_95']:.1f} / {d['distilled']['map50']:.1f}."]
    lines += ["", "## Neural-collapse probe (within-category nearest-prototype accuracy on GT boxes, %)", ""]
    names = ["colour_histogram", "teacher", "student", "mocha", "chance"]
    lines += ["| shots | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for k, row in report["probe"].items():
        lines.append(f"| {k} | " + " | ".join(f"{row[n]:.1f}" if n in row else "–" for n in names) + " |")
    if "heldout" in report:
        lines += _heldout_markdown(report)
    st = report.get("student", {})
    lines += ["", f"Stage-1 student: {st.get('source')}.", ""]
    lines += ["## Stages", "", "| stage | seconds | cached |", "|---|---|---|"]
    lines += [f"| {s.name} | {s.seconds:.1f} | {s.cached} |" for s in stages]
    ws = report["wall_seconds"]
    lines += ["", f"Stage work in total: {ws['total_from_scratch']:.1f} s; this run: {ws['total_this_run']:.1f} s."]
    return "\n".join(lines) + "\n"


def _heldout_markdown(report: dict[str, Any]) -> list[str]:
    """The default and the held-out world side by side (mAP50-95, mAP50, probe)."""
    w, h = report["world"], report["heldout_world"]
    lines = ["", "## Held-out world: the same student and bundle, nothing tuned on it (%)", "",
             f"Default world: seed {w['seed']}, photos {', '.join(w['photos'])}. Held-out world: seed {h['seed']}, "
             f"photos {', '.join(h['photos'])} (personal split only).", "",
             "| shots | method | mAP50-95 default | mAP50-95 held-out | mAP50 default | mAP50 held-out |",
             "|---|---|---|---|---|---|"]
    for shots, methods in report["results"].items():
        for m, r in methods.items():
            o = report["heldout"].get(shots, {}).get(m)
            lines.append(f"| {shots} | {m} | {r['map50_95']:.1f} | {o['map50_95']:.1f} | {r['map50']:.1f} "
                         f"| {o['map50']:.1f} |" if o else f"| {shots} | {m} | {r['map50_95']:.1f} | – "
                         f"| {r['map50']:.1f} | – |")
    names = ["colour_histogram", "teacher", "student", "mocha", "chance"]
    lines += ["", "Neural-collapse probe, default / held-out:", "",
              "| shots | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for k, row in report["probe"].items():
        other = report.get("heldout_probe", {}).get(k, {})
        lines.append(f"| {k} | " + " | ".join(
            f"{row[n]:.1f} / {other[n]:.1f}" if n in row and n in other else "–" for n in names) + " |")
    return lines
