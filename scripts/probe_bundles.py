"""The neural-collapse probe of `mocha demo` on any dataset, for one or more bundles (docs/coco_bundle.md).

Within-category nearest-prototype accuracy on the ground-truth boxes of a split (`mocha.demo.probe.collapse_probe`):
a colour histogram of the crop, the teacher's stored embeddings, the raw student's pooled features and each
bundle's translated embeddings. On the real pedestrian set:

    python scripts/probe_bundles.py runs/coco/data/media.yaml runs/coco/store nanodet-g coco runs/coco/distill/best
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from mocha.demo.probe import collapse_probe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="dataset YAML")
    ap.add_argument("store", type=Path, help="the teacher's embedding store of that dataset")
    ap.add_argument("student", help="the raw student (weights, or a shipped name: nanodet-g)")
    ap.add_argument("bundles", nargs="+", help="bundles to probe (folders or shipped names)")
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--split", default="personal")
    a = ap.parse_args()
    rows = {}
    for i, bundle in enumerate(a.bundles):
        out = collapse_probe(a.data, split=a.split, episodes=a.episodes, store=a.store if i == 0 else None,
                             student=a.student if i == 0 else None, bundle=bundle, imgsz=a.imgsz)
        for shots, row in out.items():
            base = rows.setdefault(shots, {k: v for k, v in row.items() if k != "mocha"})
            base[f"mocha {bundle}"] = row["mocha"]
    for shots, row in rows.items():
        print(f"{shots}-shot: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
