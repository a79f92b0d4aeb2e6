"""CPU time per episode of the episode metrics, this checkout against another revision, on one synthetic episode.

    python scripts/time_episode_metrics.py 1b00f4e

260 query images with 1-3 ground-truth boxes and 3-14 predictions each, 39 instances (the size of a demo
episode); both versions get the same inputs, and the script checks they return the same numbers. Process time,
not wall time: the machine is shared.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mocha.core.metrics as current


def episode(seed: int = 0) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    preds, truths = [], []
    for _ in range(260):
        m = int(rng.integers(1, 4))
        xy = rng.uniform(0, 200, (m, 2))
        gb = np.concatenate([xy, xy + rng.uniform(20, 50, (m, 2))], 1).astype(np.float32)
        n = int(rng.integers(3, 15))
        pb = (gb[rng.integers(0, m, n)] + rng.normal(0, 5, (n, 4))).astype(np.float32)
        preds.append(current.ImagePreds(pb, rng.uniform(0.1, 1, n).astype(np.float32),
                                        rng.uniform(0, 1, n).astype(np.float32), rng.integers(-1, 39, n)))
        truths.append(current.ImageTruth(gb, rng.integers(0, 39, m)))
    return preds, truths


def load_revision(rev: str) -> object:
    src = subprocess.run(["git", "show", f"{rev}:src/mocha/core/metrics.py"], check=True, capture_output=True,
                         text=True).stdout
    path = Path(tempfile.mkdtemp()) / "metrics_then.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("metrics_then", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(rev: str) -> None:
    torch.set_num_threads(1)
    then = load_revision(rev)
    preds, truths = episode()
    print(f"| metric | {rev} ms CPU | this checkout ms CPU | same result |")
    print("|---|---|---|---|")
    for name in ("paper_map", "strict_map", "top1_accuracy"):
        args = (preds, truths, list(range(39))) if name == "strict_map" else (preds, truths)
        row = []
        for module in (then, current):
            fn = getattr(module, name)
            result = fn(*args)  # warm-up (imports)
            t = time.process_time()
            for _ in range(5):
                fn(*args)
            row.append((result, 1000 * (time.process_time() - t) / 5))
        print(f"| {name} | {row[0][1]:.0f} | {row[1][1]:.0f} | {row[0][0] == row[1][0]} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "HEAD")
