"""Measure close-up enrolment (`support_scale`, docs/personalize.md): each personal instance of a dataset is
enrolled from a close-up crop of its first photo (its box plus a 15 % margin, so the object fills the image), then
searched in every other photo it appears in; top-1 = the highest-similarity box named as it overlaps its true box
at IoU >= 0.5. One line per support_scale.

    python scripts/closeup_enrolment.py runs/demo/bundle runs/demo/stages/world-*/world/mochaworld.yaml 0,0.5,0.3
"""

from __future__ import annotations

import collections
import sys

import numpy as np
from PIL import Image

from mocha.data.dataset import load_dataset
from mocha.data.images import norm_cxcywh_to_xyxy
from mocha.data.records import read_split
from mocha.personalize.boxes import iou_one
from mocha.personalize.personalizer import Personalizer


def main(bundle: str, data: str, scales: list[float], split: str = "personal", margin: float = 0.15) -> None:
    recs = read_split(load_dataset(data), split)
    where = collections.defaultdict(list)  # instance → [(record index, box index)]
    for ri, rec in enumerate(recs):
        for k, inst in enumerate(rec.instance):
            where[int(inst)].append((ri, k))

    def box(ri: int, k: int) -> np.ndarray:
        w, h = Image.open(recs[ri].image).size
        return norm_cxcywh_to_xyxy(recs[ri].boxes[k : k + 1], w, h)[0]

    supports = {}
    for inst, ((ri, k), *_) in sorted(where.items()):
        img = np.asarray(Image.open(recs[ri].image).convert("RGB"))
        b = box(ri, k)
        pad = margin * (b[2:] - b[:2])
        x1, y1 = np.maximum(b[:2] - pad, 0).astype(int)
        x2, y2 = np.minimum(b[2:] + pad, img.shape[1::-1]).astype(int)
        supports[inst] = (np.ascontiguousarray(img[y1:y2, x1:x2]), [b[0] - x1, b[1] - y1, b[2] - x1, b[3] - y1],
                          int(recs[ri].coarse[k]))
    queries = [(inst, ri, k) for inst, occ in where.items() for ri, k in occ[1:]]
    for scale in scales:
        p = Personalizer.load(bundle, support_scale=scale, min_similarity=-1)
        for inst, (crop, b, coarse) in supports.items():
            p.enroll(f"i{inst}", [crop], boxes=[b], coarse=coarse)
        hits = 0
        for inst, ri, k in queries:
            r = p.detect(recs[ri].image)
            mine = [j for j, name in enumerate(r.labels) if name == f"i{inst}"]
            if mine:
                j = max(mine, key=lambda j: r.boxes.similarity[j])
                hits += bool(iou_one(box(ri, k), r.boxes.xyxy[j : j + 1])[0] >= 0.5)
        print(f"support_scale {scale:g}: top-1 {100 * hits / len(queries):.1f} % of {len(queries)} queries, "
              f"{len(supports)} instances", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], [float(x) for x in sys.argv[3].split(",")])
