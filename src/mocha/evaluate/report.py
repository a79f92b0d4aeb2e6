"""Run folder of `mocha evaluate`: report.json, report.md (one table), config.json and plots, written atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mocha.core.metrics import COLUMNS
from mocha.io import atomic_dir


def _clean(obj: Any) -> Any:
    """NaN/inf → None so report.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _pm(row: dict[str, Any], key: str) -> str:
    v, s = row.get(key), row.get(f"{key}_std")
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.1f} ± {s:.1f}" if s is not None and math.isfinite(s) else f"{v:.1f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as one markdown table: methods × shots × metrics (mean ± std), time per image, memory."""
    head = ["method", "shots", *[c for _, c in COLUMNS], "support ms/img", "query ms/img", "peak MB"]
    lines = [
        f"# Episodic evaluation — {Path(report['dataset']).name}",
        "",
        f"Dataset `{report['dataset']}`, split `{report.get('split')}`, up to {report['episodes']} episodes per shot "
        f"count ({', '.join(f'{k}-shot: {v}' for k, v in report.get('episodes_run', {}).items())}), "
        f"device `{report.get('device')}`. Metrics in percent, mean ± std over episodes.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    methods: list[str] = []
    for per in report["results"].values():
        methods.extend(m for m in per if m not in methods)
    for m in methods:
        for shots, per in report["results"].items():
            if m not in per:
                continue
            row = per[m]
            cells = [m, shots, *[_pm(row, k) for k, _ in COLUMNS],
                     _num(row.get("support_ms_per_image")), _num(row.get("query_ms_per_image")),
                     _num(row.get("peak_memory_mb"), 0)]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "- mAP50-95 / mAP50: paper protocol (ultralytics matching + `ap_per_class`, instances present in the query "
        "ground truth, score = coarse confidence).",
        "- strict mAP50-95: COCO-style over all enrolled instances, score = coarse confidence × instance probability "
        "(instances only ever predicted falsely count as 0).",
        "- top-1 acc: per query image and instance k in its ground truth, the highest-scoring box labelled k has "
        "IoU ≥ 0.5 with k's box.",
        "- time per image after warm-up, letterboxed image already in memory; query = detect + embed. Peak memory: "
        "process RSS (CPU, includes every loaded model) or CUDA peak allocated (GPU).",
    ]
    return "\n".join(lines) + "\n"


def _num(v: Any, digits: int = 1) -> str:
    return f"{v:.{digits}f}" if isinstance(v, int | float) and math.isfinite(v) else "n/a"


def write_run(ev: Any, report: dict[str, Any], run: Path) -> Path:
    """Write the run folder `run` atomically (replacing it); returns its path."""
    cfg = ev.cfg
    with atomic_dir(run) as tmp:
        (tmp / "report.json").write_text(json.dumps(_clean({**report, "run_dir": str(run)}), indent=2) + "\n")
        (tmp / "report.md").write_text(markdown(report))
        (tmp / "config.json").write_text(json.dumps(_clean(cfg.to_json()), indent=2, default=str) + "\n")
        if cfg.plots:
            from mocha.evaluate.plots import write_plots

            write_plots(ev, report, tmp / "plots")
    return run
