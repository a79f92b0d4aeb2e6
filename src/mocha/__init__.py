"""MOCHA: few-shot personalized object detection by distilling a vision-language teacher into YOLO.

Public face: the `mocha` CLI (`mocha.cli`) and the Python API `from mocha import Personalizer` (also
`Results`, `Boxes`, `Gallery`, from `mocha.personalize`). Heavy modules (torch, ultralytics, transformers) are
imported lazily by the code that needs them, so `import mocha` stays fast: the names below resolve on first use.
"""

from __future__ import annotations

import importlib

from mocha._env import set_offline_env

__version__ = "0.1.0"

set_offline_env()

# Lazy public names → their package. Looked up by name (not a static import) so this face adds no import edge:
# modules below read `mocha.__version__`, and `mocha.personalize` keeps its own face.
_LAZY = {"Personalizer": "mocha.personalize", "Results": "mocha.personalize", "Boxes": "mocha.personalize",
         "Gallery": "mocha.personalize"}

__all__ = ["__version__", "set_offline_env", *_LAZY]


def __getattr__(name: str) -> object:  # not typing.Any: importing typing would cost ~10 ms here
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mocha' has no attribute {name!r}")
