"""How often the detector's coarse class is wrong on the personal objects of a world (docs/ablations.md,
*Coarse-robust identification*).

    python scripts/coarse_errors.py <world yaml> <student weights> [imgsz]

For every ground-truth box of the personal split: the detector's most confident box at IoU >= 0.5 (conf 0.1, NMS
IoU 0.6, as the evaluation) has the right coarse class, or the wrong one (and then whether some box of the right
class overlaps it too), or there is none (missed).
"""

from __future__ import annotations

import sys

import torch
from torchvision.ops import box_iou

from mocha.data.images import letterbox
from mocha.demo.probe import probe_split
from mocha.models.detector import Student


@torch.inference_mode()
def main(data: str, weights: str, imgsz: int = 256) -> None:
    torch.set_num_threads(1)
    student = Student.load(weights).eval()
    records, images, boxes, _, _ = probe_split(data, "personal")
    n = right = wrong = duplicate = missed = 0
    for record, image, gt_px in zip(records, images, boxes, strict=True):
        lb_img, lb = letterbox(image, imgsz)
        _, raw = student(torch.from_numpy(lb_img).permute(2, 0, 1).float()[None] / 255)
        det = student.postprocess(raw, conf=0.1, iou=0.6)[0]
        gt = torch.from_numpy(lb.to_letterbox(gt_px)).float()
        iou = box_iou(gt, det[:, :4]) if len(det) else torch.zeros(len(gt), 0)
        for j in range(len(gt)):
            n += 1
            hits = (iou[j] >= 0.5).nonzero().flatten() if iou.shape[1] else torch.zeros(0, dtype=torch.long)
            if not len(hits):
                missed += 1
                continue
            cls = det[hits, 5].long()
            if int(cls[det[hits, 4].argmax()]) == int(record.coarse[j]):
                right += 1
            else:
                wrong += 1
                duplicate += int(bool((cls == int(record.coarse[j])).any()))

    def pct(k: int) -> str:
        return f"{k} ({100 * k / max(n, 1):.1f} %)"

    print(f"{n} personal objects: right class {pct(right)}, wrong class {pct(wrong)} (a right-class box overlaps "
          f"{duplicate} of them), missed {pct(missed)}; no right-class box at all: {pct(wrong - duplicate + missed)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
