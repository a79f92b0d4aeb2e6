"""Instance thumbnails for the page: a small JPEG of an instance's first support box, as a data: URL.

The gallery keeps embeddings, not pixels, so a thumbnail is made from the uploaded image at enrolment (kept in
memory for the server's life) or, for instances enrolled elsewhere, from the support's source file when it
still exists with the recorded sha256. Nothing is written to disk."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np

THUMB_PX = 96


def thumbnail(image: np.ndarray, box: list[float]) -> str:
    """data:image/jpeg URL of `box` (xyxy original pixels) cut out of `image`, at most THUMB_PX a side."""
    from PIL import Image

    h, w = image.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, max(x1 + 1, int(round(box[2])))), min(h, max(y1 + 1, int(round(box[3]))))
    crop = Image.fromarray(np.ascontiguousarray(image[y1:y2, x1:x2]))
    crop.thumbnail((THUMB_PX, THUMB_PX))
    buf = io.BytesIO()
    crop.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def from_supports(supports: list[Any]) -> str | None:
    """A thumbnail from the first support whose source file is still there unchanged; None when none is."""
    from mocha.data.images import load_image
    from mocha.errors import MochaError
    from mocha.io import file_sha256

    for s in supports:
        path = Path(s.source)
        if not path.is_file():  # "<array>" (an upload) or a file moved away
            continue
        try:
            if file_sha256(path) == s.sha256:
                return thumbnail(load_image(path), s.box)
        except (OSError, MochaError):
            continue
    return None
