"""Checking what a request sends: image uploads, instance names, boxes. Each problem is an `InputError`
carrying the HTTP status and a message that starts with the form field at fault."""

from __future__ import annotations

import io
import json
import re
import unicodedata
from typing import Any

import numpy as np

MAX_NAME_CHARS = 64
MAX_PIXELS = 64_000_000  # ~8000×8000; larger images are refused before they are decoded
_FORBIDDEN_IN_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


class InputError(Exception):
    """A bad request: `status` (400, 404, 409, 413, 415) and `detail` = "field: what is wrong"."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def upload_label(filename: str | None) -> str:
    """A display label for an uploaded file: its base name only, printable, short (never used as a path)."""
    base = re.split(r"[/\\]", filename or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable())[:100]
    return base or "upload"


def decode_image(data: bytes, content_type: str | None, field: str) -> np.ndarray:
    """RGB uint8 pixels of an uploaded image (EXIF orientation applied), fully decoded.

    415 when the declared type is not an image; 400 when the bytes are empty, not an image, truncated or too
    large to decode."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith("image/") and ctype != "application/octet-stream":
        raise InputError(415, f"{field}: content type {ctype!r} is not an image (send image/jpeg, image/png, ...)")
    if not data:
        raise InputError(400, f"{field}: the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise InputError(400, f"{field}: image of {im.width}×{im.height} pixels is larger than the "
                                      f"{MAX_PIXELS} pixels accepted")
            im.load()  # full decode: a truncated file fails here
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, ImportError):  # ultralytics' patched Image.open tries pi_heif on unknown bytes
        # declared as an image but is not one: a bad request; declared as nothing in particular: wrong type
        raise InputError(400 if ctype.startswith("image/") else 415,
                         f"{field}: not an image file (cannot identify its format)") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise InputError(400, f"{field}: cannot decode the image ({exc})") from None


def normal_name(name: str | None) -> str:
    """The stored form of a name: Unicode NFC, surrounding blanks removed, inner runs of blanks one space."""
    return " ".join(unicodedata.normalize("NFC", name or "").split())


def clean_name(name: str | None) -> str:
    """An instance name as stored: Unicode NFC, surrounding blanks removed, inner runs of blanks made one space.
    400 when empty, longer than MAX_NAME_CHARS, or holding a slash, a backslash or a control character."""
    text = normal_name(name)
    if not text:
        raise InputError(400, "name: the instance name is empty")
    if len(text) > MAX_NAME_CHARS:
        raise InputError(400, f"name: {len(text)} characters; at most {MAX_NAME_CHARS}")
    if _FORBIDDEN_IN_NAME.search(text):
        raise InputError(400, f"name: {text!r} holds a slash, a backslash or a control character")
    return text


def parse_boxes(text: str | None, n: int) -> list[list[float] | None] | None:
    """The `boxes` form field: JSON, one entry per image, each [x1, y1, x2, y2] (original pixels) or null
    (the detector's best box); a single box is accepted for a single image. None when absent or blank."""
    if text is None or not text.strip():
        return None
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(400, f"boxes: malformed JSON ({exc.msg} at character {exc.pos})") from None
    if isinstance(value, list) and len(value) == 4 and all(_is_num(v) for v in value) and n == 1:
        value = [value]
    if not isinstance(value, list) or len(value) != n:
        raise InputError(400, f"boxes: give a JSON list with one entry per image ({n}), each [x1, y1, x2, y2] or "
                              "null")
    out: list[list[float] | None] = []
    for i, box in enumerate(value):
        if box is None:
            out.append(None)
        elif isinstance(box, list) and len(box) == 4 and all(_is_num(v) for v in box):
            out.append([float(v) for v in box])
        else:
            raise InputError(400, f"boxes[{i}]: {json.dumps(box)} is not [x1, y1, x2, y2] or null")
    return out


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
