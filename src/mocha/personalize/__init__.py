"""mocha.personalize — enroll personal instances and detect them (docs/personalize.md).

Public face: `Personalizer.load(bundle=None, gallery=None, backend="torch"|"onnx", ...)` with `.enroll`,
`.remove`, `.instances`, `.detect(image) -> Results`, `.predict(source, stream=False)` / `p(source)` for an
image, a list, a folder, a glob or a video; `Results` / `Boxes` (ultralytics-style, `.to_supervision()`);
`Gallery` (the SQLite file); `tune_min_similarity`, `tune_on_dataset` (open-set threshold + calibration);
`DEFAULT_MIN_SIMILARITY`; `Source` (the input pipeline); `load_engine`. Torch-heavy modules load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name → the module that defines it (the one place each name lives)
_WHERE = {
    "Personalizer": "personalizer",
    "EnrollReport": "personalizer",
    "Results": "results",
    "Boxes": "results",
    "Gallery": "gallery",
    "Source": "sources",
    "load_engine": "engine",
    "TorchEngine": "engine",
    "DEFAULT_MIN_SIMILARITY": "matching",
    "DEFAULT_CALIBRATION": "matching",
    "tune_min_similarity": "tuning",
    "tune_on_dataset": "tuning",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"mocha.personalize.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'mocha.personalize' has no attribute {name!r}")
