"""Content-keyed stage cache for multi-stage jobs (the demo).

A stage's key is a hash of its config and of its inputs' keys, so changing anything upstream reruns
everything downstream. A stage runs in a temporary folder that is renamed into place only when it
finished, with `stage.json` (key, inputs, result, seconds) written last; an interrupted stage leaves
nothing that a rerun would reuse.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mocha.io import write_json


def content_key(obj: Any) -> str:
    """Stable short hash of a JSON-able object."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class StageResult:
    name: str
    key: str
    dir: Path
    result: dict[str, Any]
    seconds: float
    cached: bool


def run_stage(
    root: Path, name: str, inputs: dict[str, Any], fn: Callable[[Path], dict[str, Any]], fresh: bool = False
) -> StageResult:
    """Run `fn(work_dir) -> result` unless a finished stage with the same key exists under `root`."""
    key = content_key({"stage": name, **inputs})
    final = Path(root) / "stages" / f"{name}-{key}"
    marker = final / "stage.json"
    if marker.exists() and not fresh:
        info = json.loads(marker.read_text())
        return StageResult(name, key, final, info["result"], float(info["seconds"]), True)
    work = final.with_name(f".{final.name}.partial")
    if work.exists():  # left by an interrupted run: never reused
        shutil.rmtree(work)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    result = fn(work)
    seconds = time.perf_counter() - t0
    write_json(work / "stage.json", {"stage": name, "key": key, "inputs": inputs, "result": result, "seconds": seconds})
    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)
    return StageResult(name, key, final, result, seconds, False)
