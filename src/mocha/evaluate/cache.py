"""On-disk feature cache of `mocha evaluate`, in chunks of images, so an interrupted run resumes.

Each entry is keyed by what determines it: the split's records (paths, sizes, mtimes, labels), the letterbox
size and detector settings, the box source's weights, and the method's weights or teacher name + settings.
A method whose identity cannot be stated (a teacher object without `name`/`settings`) is not cached.
Timing passes never read the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

CHUNK = 64  # images per cache file


def file_stamp(path: str | Path | None) -> Any:
    """(path, size, mtime) of a weights file, or of every file of a folder (bundles); None for None."""
    if path is None:
        return None
    p = Path(path).resolve()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.exists()]


def source_stamp(path: str | Path | None) -> Any:
    """`file_stamp` of a bundle or weights path, a shipped name (`coco`, `nanodet-g`) stamped by its files: the name
    alone would keep serving a cache made with the files of another package version. A bundle that refers to the
    shipped student (`student_ref`) is stamped with that file too."""
    from mocha.models.bundle import resolve_bundle
    from mocha.models.nanodet import ARCHITECTURE, shipped_path

    if path is None:
        return None
    resolved = resolve_bundle(path)
    if not resolved.exists() and str(path) == ARCHITECTURE:
        resolved = shipped_path()
    stamp = file_stamp(resolved)
    meta = resolved / "bundle.json"
    if meta.is_file() and json.loads(meta.read_text()).get("student_ref") == ARCHITECTURE:
        stamp += file_stamp(shipped_path())  # a bundle that refers to the shipped student: its file counts too
    return stamp


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def records_digest(records: Sequence[Any]) -> str:
    """Hash of image files (path, size, mtime) and their labels."""
    h = hashlib.sha256()
    for r in records:
        p = Path(r.image)
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|".encode())
        for a in (r.boxes, r.coarse, r.instance):
            h.update(a.tobytes())
    return h.hexdigest()[:20]


def pack(tensors: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Variable-length rows → (concatenation, lengths)."""
    counts = torch.tensor([len(t) for t in tensors], dtype=torch.long)
    cat = torch.cat([t if t.dim() == 2 else t.reshape(-1, 1) for t in tensors]) if tensors else torch.zeros(0)
    return cat.contiguous(), counts


def unpack(cat: Tensor, counts: Tensor) -> list[Tensor]:
    return list(cat.split(counts.tolist())) if len(counts) else []


class FeatureCache:
    """Chunk files `<root>/<key>/<first image index>.safetensors`; `root=None` disables caching."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def _path(self, key: str, chunk: int) -> Path:
        return self.root / key / f"{chunk:07d}.safetensors"

    def load(self, key: str | None, chunk: int) -> dict[str, Tensor] | None:
        if self.root is None or key is None or not self._path(key, chunk).exists():
            return None
        from safetensors.torch import load_file

        try:
            return load_file(str(self._path(key, chunk)))
        except Exception:  # a corrupt chunk is recomputed
            return None

    def save(self, key: str | None, chunk: int, tensors: dict[str, Tensor]) -> None:
        if self.root is None or key is None:
            return
        from safetensors.torch import save_file

        from mocha.io import atomic_path

        with atomic_path(self._path(key, chunk)) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
