"""mocha.personalize — enroll personal instances and detect them (docs/personalize.md).

Public face: `Personalizer.load(bundle=None, gallery=None, backend="torch"|"onnx", ...)` with `.enroll`,
`.remove`, `.instances`, `.detect(image) -> Results` (`.plot()`, `.to_json()`); `Gallery` (the SQLite file);
`tune_min_similarity` (open-set threshold + calibration); `DEFAULT_MIN_SIMILARITY`. Torch-heavy modules load
on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_MIN_SIMILARITY", "Gallery", "Personalizer", "Results", "tune_min_similarity"]

_WHERE = {
    "Personalizer": "personalizer",
    "DEFAULT_MIN_SIMILARITY": "personalizer",
    "Gallery": "gallery",
    "Results": "results",
    "tune_min_similarity": "personalizer",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"mocha.personalize.{_WHERE[name]}"), name)
    raise AttributeError(name)
