"""Benchmark registry and the JSON/table writer shared by every benchmark."""

from __future__ import annotations

import importlib
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mocha.core.config import Config, option
from mocha.core.registry import Registry
from mocha.errors import ConfigError
from mocha.io import write_json

# name -> "module:function"; the function takes (out_dir: Path, quick: bool) and returns BenchResult; one that
# also takes `student: str` accepts `mocha bench <name> student=...`.
BENCHMARKS: Registry[str] = Registry("benchmark")
BENCHMARKS.register("translator", "mocha.distill.bench:run", help="translator batched vs one region per call")
BENCHMARKS.register("extract", "mocha.teacher.bench:run", help="teacher extraction pipeline vs forward only")
BENCHMARKS.register("episodes", "mocha.evaluate.bench:run_episodes", help="100 vs 1 episode evaluation cost")
BENCHMARKS.register("prototypes", "mocha.evaluate.bench:run_prototypes", help="prototype matching, 1000 instances")
BENCHMARKS.register("latency", "mocha.personalize.bench:run",
                    help="plain vs personalized detection: PyTorch, ONNX (ultralytics plain, fp32, int8)")
BENCHMARKS.register("peers", "mocha.bench.peers:run",
                    help="MOCHA vs YOLOv8n, YOLOE, OWL-ViT, OWLv2 and the teacher (CPU)")
BENCHMARKS.register("int8", "mocha.bench.int8:run",
                    help="accuracy cost of the int8 export: 1-shot mAP50-95 / top-1, PyTorch vs ONNX fp32 vs int8")
BENCHMARKS.register("serve", "mocha.serve.bench:run", help="REST detect latency vs Personalizer, 1 and 8 clients")
BENCHMARKS.register("track", "mocha.track.bench:run", help="per-frame vs track-level identity on generated clips")
BENCHMARKS.register("ablations", "mocha.demo.ablations:run",
                    help="one demo lever at a time (schedule, L_emb, d_t, views, learner) on both worlds")
BENCHMARKS.register("faults", "mocha.bench.faults:run", help="fuzzed bad input, kills at random points, disk full")


def list_benchmarks() -> list[str]:
    """Names `mocha bench` accepts."""
    return BENCHMARKS.names()


@dataclass(kw_only=True)
class BenchConfig(Config):
    """Run a speed/memory benchmark; print a table and write runs/bench/<name>.json."""

    name: str = option(help="benchmark: " + " | ".join(BENCHMARKS.names()), choices=BENCHMARKS.names(),
                       positional=True)
    out: Path = option(Path("runs/bench"), help="folder for <name>.json")
    quick: bool = option(False, help="fewer repetitions (for smoke tests)")
    student: str = option("", help="the student to benchmark (latency: nanodet-g); writes <name>-<student>.json",
                          default_text="the benchmark's own")


@dataclass
class BenchResult:
    """Rows for the printed table plus the headline keys written at the top level of the JSON."""

    name: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    targets: dict[str, str] = field(default_factory=dict)  # key -> e.g. ">= 10"
    notes: str = ""


def _machine() -> dict[str, Any]:
    import os

    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
    }


def _check(value: Any, target: str) -> bool | None:
    op, _, num = target.partition(" ")
    try:
        v, n = float(value), float(num)
    except (TypeError, ValueError):
        return None
    return {"<=": v <= n, ">=": v >= n, "<": v < n, ">": v > n}.get(op)


def bench(cfg: BenchConfig) -> dict[str, Any]:
    """`mocha bench` as a function: `bench(BenchConfig(name="latency"))`."""
    return run_benchmark(cfg.name, cfg.out, quick=cfg.quick, student=cfg.student)


def run_benchmark(name: str, out_dir: Path = Path("runs/bench"), quick: bool = False,
                  student: str = "") -> dict[str, Any]:
    """Run benchmark `name`, print its table and write `out_dir/<name>.json` (`<name>-<student>.json` for a
    `student`); return the JSON object."""
    import inspect

    module, _, func = BENCHMARKS.get(name).partition(":")
    fn = getattr(importlib.import_module(module), func)
    kw: dict[str, Any] = {}
    if student:
        if "student" not in inspect.signature(fn).parameters:
            raise ConfigError(f"student={student}: `mocha bench {name}` does not take a student")
        kw["student"] = student
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    result: BenchResult = fn(out_dir=out_dir, quick=quick, **kw)
    obj: dict[str, Any] = dict(result.summary)
    obj["targets"] = {k: {"target": t, "met": _check(result.summary.get(k), t)} for k, t in result.targets.items()}
    obj["rows"] = result.rows
    obj["notes"] = result.notes
    obj["machine"] = _machine()
    obj["wall_seconds"] = round(time.perf_counter() - t0, 2)
    obj["command"] = f"mocha bench {name}" + (f" student={student}" if student else "") + (" --quick" if quick else "")
    write_json(out_dir / (f"{name}-{student}.json" if student else f"{name}.json"), obj)
    _print_table(result)
    return obj


def _print_table(result: BenchResult) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"mocha bench {result.name}")
    cols: list[str] = []
    for row in result.rows:
        cols.extend(k for k in row if k not in cols)
    for c in cols:
        table.add_column(c)
    for row in result.rows:
        table.add_row(*[_fmt(row.get(c, "")) for c in cols])
    console = Console()
    console.print(table)
    for k, v in result.summary.items():
        tgt = result.targets.get(k)
        console.print(f"{k} = {_fmt(v)}" + (f"  (target {tgt})" if tgt else ""))


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
