"""Files shipped inside the package (`src/mocha/assets/`), found through `importlib.resources`.

Looking them up relative to the installed package (never `parents[n]` of a source file) is what makes a
wheel or `pip install git+...` find the same files as a checkout. A new shipped file goes under
`src/mocha/assets/` (pyproject's package-data takes everything there); tests/test_wheel.py checks that it
reaches the wheel.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# Names of what mocha ships, accepted wherever a path to one is (kept here, import-light, for the config modules):
# `bundle=coco` (src/mocha/assets/bundles/coco), `student=nanodet-g` (src/mocha/assets/students/nanodet-g).
SHIPPED_BUNDLES = ("coco",)
SHIPPED_STUDENTS = ("nanodet-g",)
SHIPPED_MODELS = SHIPPED_BUNDLES + SHIPPED_STUDENTS


def asset_path(*parts: str) -> Path:
    """The path of a shipped file or folder, e.g. `asset_path("students")`.

    mocha installs as plain files (a checkout, an editable install or an unpacked wheel), so the resource
    is a real path on disk; a zipped install is refused here rather than failing later on a missing file.
    """
    res = files("mocha").joinpath("assets", *parts)
    if not isinstance(res, Path):  # e.g. zipfile.Path: torch and safetensors need a real file
        raise RuntimeError(f"mocha's shipped files are not on the file system ({res!r}); install mocha unzipped")
    return res


def students_dir() -> Path:
    """The folder of shipped stage-1 students (`<name>.safetensors` + `<name>.json` with its sha256)."""
    return asset_path("students")
