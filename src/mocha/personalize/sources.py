"""The one input pipeline of `Personalizer.predict` and `mocha detect`: whatever the user gives → frames.

A source is one image (path, RGB array or PIL image), a folder (its images and videos, sorted), a glob
pattern (`photos/*.jpg`), a video file, a webcam index (`0`, or the text "0" when no such file exists), or a
list of any of these. `Source(source)` expands it once (missing
files and empty folders fail here, before any model runs) and iterates `Frame(image, path, frame)` items:
`frame` is the index inside a video, None for a still image.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mocha.errors import DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class Frame:
    """One image to detect on: RGB uint8 pixels, the file it came from (None for arrays / PIL images) and the
    frame index inside a video (None for stills)."""

    image: np.ndarray
    path: str | None
    frame: int | None = None


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_webcam(source: Any) -> bool:
    """A camera index: an int, or digits naming no existing file (`mocha track source=0`)."""
    if isinstance(source, bool):
        return False
    if isinstance(source, int | np.integer):
        return True
    return isinstance(source, str) and source.isdigit() and not Path(source).exists()


@dataclass(frozen=True)
class Webcam:
    """A live camera by index; frames are read until it stops delivering them."""

    index: int


def is_image_like(obj: Any) -> bool:
    """An in-memory image (array or PIL image) rather than a path or a list."""
    return isinstance(obj, np.ndarray) or (hasattr(obj, "convert") and hasattr(obj, "size"))


def read_image(image: Any, digest: bool = True) -> tuple[np.ndarray, str, str]:
    """(RGB uint8 image, source label, sha256 of the file or pixels; "" unless `digest`) from a path, an array
    or a PIL image. Float arrays in [0, 1] are scaled to 0..255."""
    from mocha.data.images import load_image
    from mocha.io import file_sha256

    if isinstance(image, str | Path):
        path = Path(image)
        return load_image(path), str(path), file_sha256(path) if digest else ""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL image
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise DataError(f"<array>: expected an (H, W, 3) RGB image, got shape {image.shape}")
        if image.dtype != np.uint8:
            if np.issubdtype(image.dtype, np.floating) and np.nanmax(image) <= 1.0:
                image = (image * 255.0).round()
            image = np.clip(image, 0, 255).astype(np.uint8)
        image = np.ascontiguousarray(image)
        return image, "<array>", hashlib.sha256(image.tobytes()).hexdigest() if digest else ""
    raise DataError(f"cannot read an image from {type(image).__name__}; give a path, an RGB array or a PIL image")


def expand_path(source: str | Path) -> list[Path]:
    """The files of one path-like source: an image or video, a folder's images and videos, a glob's files."""
    from mocha.data.images import IMAGE_SUFFIXES

    text = str(source)
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        if not files:
            raise DataError(f"{path}: folder has no images or videos")
        return files
    if not path.exists() and any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"source {text!r}: the pattern matches no files")
        return files
    if not path.exists():
        raise DataError(f"{path}: source not found")
    return [path]


class Source:
    """An expanded source: `items` are files (Path) or in-memory images, in order; iterate for `Frame`s."""

    def __init__(self, source: Any) -> None:
        self.items: list[Any] = []
        if isinstance(source, Source):
            self.items = list(source.items)
            return
        single = isinstance(source, str | Path) or is_image_like(source) or is_webcam(source)
        todo = [source] if single else list(source)
        if not todo:
            raise DataError("source: nothing to detect on (empty list)")
        for s in todo:
            if is_webcam(s):
                self.items.append(Webcam(int(s)))
            elif isinstance(s, str | Path):
                self.items.extend(expand_path(s))
            elif is_image_like(s):
                self.items.append(s)
            else:
                raise DataError(f"source: cannot read {type(s).__name__}; give image paths, folders, globs, "
                                "videos, RGB arrays or PIL images")

    def __len__(self) -> int:
        """Number of frames (a video counts its frames, as its container reports them; a webcam counts 0)."""
        return sum(video_frames(i) if isinstance(i, Path) and is_video(i) else 0 if isinstance(i, Webcam) else 1
                   for i in self.items)

    def __iter__(self) -> Iterator[Frame]:
        for item in self.items:
            if isinstance(item, Webcam):
                yield from read_webcam(item.index)
            elif isinstance(item, Path) and is_video(item):
                yield from read_video(item)
            else:
                img, label, _ = read_image(item, digest=False)
                yield Frame(img, None if label == "<array>" else label)


def video_frames(path: Path) -> int:
    """Frame count reported by the container (0 when unknown)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        cap.release()


def read_video(path: Path) -> Iterator[Frame]:
    """RGB frames of a video; DataError when not even the first frame decodes."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(f"{path}: cannot decode video (opencv cannot open it: not a video, or an unsupported "
                            "codec)")
        ok, frame = cap.read()
        if not ok:
            raise DataError(f"{path}: cannot decode video (no readable frame: the video is empty or corrupt)")
        i = 0
        while ok:
            yield Frame(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), str(path), i)
            i += 1
            ok, frame = cap.read()
    finally:
        cap.release()


def read_webcam(index: int) -> Iterator[Frame]:
    """RGB frames of camera `index` (path label `webcam:<index>`) until it stops; DataError when it cannot be
    opened or delivers no frame."""
    import cv2

    cap = cv2.VideoCapture(int(index))
    try:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            raise DataError(f"webcam {index}: cannot open the camera (none attached at this index, or in use)")
        i = 0
        while ok:
            yield Frame(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), f"webcam:{index}", i)
            i += 1
            ok, frame = cap.read()
    finally:
        cap.release()
