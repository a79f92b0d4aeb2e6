"""Which packaged files `mocha data media` builds from, and which it leaves out (docs/real_data.md).

Two kinds of source, both already on the machine at build time (nothing is downloaded here):

- Debian's `opencv-doc` examples (OpenCV's samples/data), fetched once by scripts/fetch_media.sh into
  `<media>/opencv-doc/`: every top-level image except the non-photos named in `OPENCV_SKIP` and images whose
  short side is under `MIN_SIDE`; the clips `vtest.avi` (pedestrians: base frames and the personal split) and
  `Megamind.avi` (base frames only).
- Sample photos inside installed Python packages (`PACKAGE_PHOTOS`, an allow-list: the other files of those
  folders are textures, microscopy, charts, logos or text). A package that is not installed is left out and
  recorded as such.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from mocha.data.images import IMAGE_SUFFIXES, image_size

OPENCV_DIR = "opencv-doc"
MIN_SIDE = 128  # px: thumbnails and icons (templ.png 100×130) carry no scene

# opencv-doc images that are not photos of scenes, by why (the explicit rule; everything else is used)
_SKIP_GROUPS: dict[str, tuple[str, ...]] = {
    "chessboard / calibration target": (
        "chessboard.png", "left.jpg", "right.jpg",
        *(f"{side}{i:02d}.jpg" for side in ("left", "right") for i in (*range(1, 10), 11, 12, 13, 14)),
    ),
    "drawing, chart or synthetic shapes": (
        "cards.png", "detect_blob.png", "ellipses.jpg", "gradient.png", "ml.png", "pca_test1.jpg",
        "pic1.png", "pic2.png", "pic3.png", "pic4.png", "pic5.png", "pic6.png", "HappyFish.jpg",
    ),
    "painting": ("starry_night.jpg",),
    "mask or ground-truth map": ("aloeGT.png", "mask.png", "templ.png", "tmpl.png"),
    "logo": ("LinuxLogo.jpg", "WindowsLogo.jpg", "opencv-logo.png", "opencv-logo-white.png"),
    # the real-photo enrol/detect check (issue 14 item 7) enrols box.png and finds it in box_in_scene.png
    "held out for the enrol/detect check": ("box.png", "box_in_scene.png"),
    "text or digits": (
        "digits.png", "imageTextN.png", "imageTextR.png", "notes.png", "sudoku.png", "text_defocus.jpg",
        "text_motion.jpg",
    ),
}
OPENCV_SKIP: dict[str, str] = {name: why for why, names in _SKIP_GROUPS.items() for name in names}

# opencv-doc photos that show the same scene twice (stereo / multi-view pairs): one group, so both land in
# the same split. Names ending in a digit or an upper-case L/R/A/B (aloeL/aloeR, graf1/graf3) pair up by rule.
_OPENCV_GROUPS = {"ela_original.jpg": "ela", "ela_modified.jpg": "ela"}
_PAIR_SUFFIX = re.compile(r"^(.*?)(\d+|[LRAB])$")

# (distribution to read the version of, import name, folder inside it, file, licence note from the package's own
# files). The notes are what those files say; docs/real_data.md quotes them.
PACKAGE_PHOTOS: tuple[tuple[str, str, str, str, str], ...] = (
    *(("scikit-image", "skimage", "data", f, n) for f, n in (
        ("astronaut.png", "public domain (NASA Great Images), per skimage.data.astronaut"),
        ("coffee.png", "CC0 (Rachel Michetti), per skimage.data.coffee"),
        ("chelsea.png", "CC0 (Stefan van der Walt), per skimage.data.chelsea"),
        ("rocket.jpg", "public domain (SpaceX), per skimage.data.rocket"),
        ("camera.png", "CC0 (Lav Varshney), per skimage.data.camera"),
        ("clock_motion.png", "public domain (Stefan van der Walt), per skimage.data.clock"),
        ("coins.png", "no known copyright restrictions, per skimage.data.coins"),
        ("motorcycle_left.png", "Middlebury 2014 stereo data; no licence stated in skimage.data.stereo_motorcycle"),
        ("motorcycle_right.png", "Middlebury 2014 stereo data; no licence stated in skimage.data.stereo_motorcycle"),
    )),
    ("ultralytics", "ultralytics", "assets", "bus.jpg", "shipped in ultralytics (AGPL-3.0)"),
    ("ultralytics", "ultralytics", "assets", "zidane.jpg", "shipped in ultralytics (AGPL-3.0)"),
    ("scikit-learn", "sklearn", "datasets/images", "china.jpg", "CC BY 2.0 (danielbuechele), per its README.txt"),
    ("scikit-learn", "sklearn", "datasets/images", "flower.jpg", "CC BY 2.0 (vultilion), per its README.txt"),
    ("matplotlib", "matplotlib", "mpl-data/sample_data", "grace_hopper.jpg",
     "matplotlib sample data (no separate notice in the package)"),
)
_PACKAGE_GROUPS = {"motorcycle_left.png": "motorcycle", "motorcycle_right.png": "motorcycle"}

OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause (opencv-doc's copyright file, Files: *)"
# clip name → its role: vtest.avi gives base frames before `split_frame` and the personal split from it on
VIDEOS = {"vtest.avi": "base+personal", "Megamind.avi": "base"}
PERSONAL_VIDEO = "vtest.avi"


@dataclass(frozen=True)
class Photo:
    """One source photo: `key` is its unique name in the dataset (`<origin>/<file>`), `group` keeps views of one
    scene in one split."""

    key: str
    path: Path
    origin: str
    group: str
    licence: str
    version: str = ""


@dataclass(frozen=True)
class Skipped:
    key: str
    reason: str


def opencv_dir(media: Path) -> Path:
    return Path(media) / OPENCV_DIR


def opencv_photos(media: Path) -> tuple[list[Photo], list[Skipped]]:
    """The opencv-doc photos under `<media>/opencv-doc/` that are used, and the skipped ones with the reason."""
    used, skipped = [], []
    for path in sorted(p for p in opencv_dir(media).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        key = f"{OPENCV_DIR}/{path.name}"
        if path.name in OPENCV_SKIP:
            skipped.append(Skipped(key, OPENCV_SKIP[path.name]))
            continue
        w, h = image_size(path)
        if min(w, h) < MIN_SIDE:
            skipped.append(Skipped(key, f"smaller than {MIN_SIDE} px ({w}×{h})"))
            continue
        used.append(Photo(key, path, OPENCV_DIR, f"{OPENCV_DIR}/{_group(path.name)}", OPENCV_LICENCE))
    return used, skipped


def _group(name: str) -> str:
    if name in _OPENCV_GROUPS:
        return _OPENCV_GROUPS[name]
    stem = Path(name).stem
    m = _PAIR_SUFFIX.match(stem)
    return m.group(1) if m and m.group(1) else stem


def package_photos() -> tuple[list[Photo], list[Skipped]]:
    """The allow-listed sample photos of the installed packages; a missing package or file is recorded, not fatal."""
    used, skipped = [], []
    for dist, module, folder, name, licence in PACKAGE_PHOTOS:
        key = f"{module}/{name}"
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            skipped.append(Skipped(key, f"package {dist} not installed"))
            continue
        path = Path(next(iter(spec.submodule_search_locations))) / folder / name
        if not path.is_file():
            skipped.append(Skipped(key, f"not in this {dist} installation"))
            continue
        group = f"{module}/{_PACKAGE_GROUPS.get(name, Path(name).stem)}"
        used.append(Photo(key, path, module, group, licence, importlib.metadata.version(dist)))
    return used, skipped


def videos(media: Path) -> dict[str, Path]:
    """The clips of `VIDEOS` found under `<media>/opencv-doc/` (name → path)."""
    return {name: opencv_dir(media) / name for name in VIDEOS if (opencv_dir(media) / name).is_file()}
