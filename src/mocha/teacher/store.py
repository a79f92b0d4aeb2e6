"""The embedding store: teacher vectors of ground-truth regions, computed once and read by training.

Layout of a store folder (`format: mocha-store/1`):

    store.json                         teacher name, teacher key (digest of its settings), dim, settings
    chunks/<run>-r<rank>-<seq>.safetensors   `keys` uint8 (n, 16) and `vectors` float16 (n, dim)
    splits/<split>.safetensors         the region keys of a dataset split, in record order (+ its metadata)

An entry key is a 128-bit digest of (image content sha256, normalized box, label, teacher key), so the
same region of the same image file always maps to the same entry, whatever its path.

Crash safety: writers only ever add whole chunk files by atomic rename, so a killed run leaves complete
chunks and at most a hidden temp file (ignored). A rerun skips every key already present; `compact()`
merges the chunks into one file (readers tolerate the duplicates a kill during compaction may leave and
keep the first copy). Ranks of a `torchrun` job write their own chunks; readers see one merged store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from mocha.errors import ConfigError
from mocha.io import atomic_path, write_json

FORMAT = "mocha-store/1"
KEY_BYTES = 16
_digest_cache: dict[tuple[str, int, int], str] = {}


def image_digest(path: str | Path) -> str:
    """sha256 of the image file's bytes (cached per path, size and mtime within the process)."""
    p = Path(path)
    st = p.stat()
    ck = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if ck not in _digest_cache:
        _digest_cache[ck] = hashlib.sha256(p.read_bytes()).hexdigest()
    return _digest_cache[ck]


def region_key(image_sha: str, box_cxcywh: Sequence[float], label: str, teacher_key: str) -> bytes:
    """128-bit entry key; the box is the normalized cx,cy,w,h of the label file (6 decimals)."""
    box = " ".join(f"{float(v):.6f}" for v in box_cxcywh)
    return hashlib.blake2b(f"{image_sha}|{box}|{label}|{teacher_key}".encode(), digest_size=KEY_BYTES).digest()


def _as_key(k: bytes | str) -> bytes:
    return bytes.fromhex(k) if isinstance(k, str) else bytes(k)


def _keys_tensor(keys: Sequence[bytes]) -> Tensor:
    arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
    return torch.from_numpy(arr.copy())


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Any failure to parse one of the store's files becomes one ConfigError naming it."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt files
        raise ConfigError(f"{path}: unreadable store file ({type(exc).__name__}: {exc}); corrupt or foreign") from None


def _check_keys(t: Tensor, path: Path) -> Tensor:
    if t.dtype != torch.uint8 or t.ndim != 2 or t.shape[1] != KEY_BYTES:
        raise ConfigError(f"{path}: keys are {t.dtype} {tuple(t.shape)}, expected uint8 (n, {KEY_BYTES})")
    return t


def _keys_list(t: Tensor) -> list[bytes]:
    flat = t.numpy().astype(np.uint8).tobytes()
    return [flat[i:i + KEY_BYTES] for i in range(0, len(flat), KEY_BYTES)]


class EmbeddingStore:
    """A store folder; `open` reads the manifest and indexes every chunk's keys (vectors load on first read)."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.teacher_name: str = manifest["teacher"]
        self.teacher_key: str = manifest["teacher_key"]
        self.dim: int = int(manifest["dim"])
        self._index: dict[bytes, int] = {}
        self._files: list[Path] = []
        self._offsets: list[int] = []
        self._vectors: Tensor | None = None
        self.duplicates = 0
        self.refresh()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path) -> EmbeddingStore:
        path = Path(path)
        man = path / "store.json"
        if not man.is_file():
            raise ConfigError(
                f"--store {path}: not an embedding store (no store.json); fill one with `mocha teacher extract`"
            )
        try:
            manifest = json.loads(man.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{man}: unreadable store manifest ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise ConfigError(f"{man}: format {found!r}, expected {FORMAT!r}")
        dim = manifest.get("dim")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1 or not all(
                isinstance(manifest.get(k), str) for k in ("teacher", "teacher_key")):
            raise ConfigError(f"{man}: store manifest needs `teacher`, `teacher_key` (strings) and `dim` (an integer "
                              "≥ 1); corrupt or edited file")
        return cls(path, manifest)

    @classmethod
    def create_or_open(cls, path: str | Path, teacher_name: str, teacher_key: str, dim: int,
                       settings: dict[str, Any]) -> EmbeddingStore:
        """Open the store at `path`, or create it for this teacher; refuse a store of another teacher/settings."""
        path = Path(path)
        if (path / "store.json").is_file():
            store = cls.open(path)
            store.check_teacher(teacher_name, teacher_key, settings)
            return store
        if path.exists() and any(p for p in path.iterdir() if not p.name.startswith(".")):
            raise ConfigError(f"--out {path}: exists and is not an embedding store; choose a new folder")
        (path / "chunks").mkdir(parents=True, exist_ok=True)
        (path / "splits").mkdir(exist_ok=True)
        write_json(path / "store.json", {"format": FORMAT, "teacher": teacher_name, "teacher_key": teacher_key,
                                         "dim": int(dim), "settings": settings,
                                         "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        return cls.open(path)

    def check_teacher(self, teacher_name: str, teacher_key: str, settings: dict[str, Any] | None = None) -> None:
        if teacher_name != self.teacher_name or teacher_key != self.teacher_key:
            diff = ""
            if settings is not None:
                mine = self.manifest.get("settings", {})
                keys = sorted(k for k in set(mine) | set(settings) if mine.get(k) != settings.get(k))
                diff = f"; differing settings: {', '.join(keys)}" if keys else ""
            raise ConfigError(
                f"--store {self.path}: holds embeddings of teacher {self.teacher_name!r} (key {self.teacher_key}), "
                f"not of {teacher_name!r} (key {teacher_key}){diff}; refusing to mix — use another store folder")

    def refresh(self) -> None:
        """Re-index the chunk files (after writers added some)."""
        self._index, self._files, self._offsets, self._vectors = {}, [], [], None
        self.duplicates = 0
        row = 0
        for f in self.chunk_files():
            with _reading(f):
                with safe_open(str(f), framework="pt") as sf:
                    keys = _keys_list(_check_keys(sf.get_tensor("keys"), f))
                    n_dim = sf.get_slice("vectors").get_shape()
            if len(n_dim) != 2 or n_dim[1] != self.dim or n_dim[0] != len(keys):
                raise ConfigError(f"{f}: chunk of shape {n_dim} in a {self.dim}-d store (corrupt or foreign file)")
            self._files.append(f)
            self._offsets.append(row)
            for j, k in enumerate(keys):
                if k in self._index:
                    self.duplicates += 1
                else:
                    self._index[k] = row + j
            row += len(keys)

    def chunk_files(self) -> list[Path]:
        d = self.path / "chunks"
        return sorted(p for p in d.glob("*.safetensors") if not p.name.startswith(".")) if d.is_dir() else []

    # ------------------------------------------------------------------ keys
    def region_keys(self, records: Iterable[Any], names: Sequence[str]) -> list[list[bytes]]:
        """Entry keys of every ground-truth box of each record (label = coarse class name)."""
        return record_keys(records, names, self.teacher_key)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: bytes | str) -> bool:
        return _as_key(key) in self._index

    def has(self, key: bytes | str) -> bool:
        return _as_key(key) in self._index

    def keys(self) -> list[bytes]:
        return list(self._index)

    # ------------------------------------------------------------------ reads
    def _all_vectors(self) -> Tensor:
        if self._vectors is None:
            parts = []
            for f in self._files:
                with _reading(f), safe_open(str(f), framework="pt") as sf:
                    v = sf.get_tensor("vectors")
                if not v.is_floating_point() or not torch.isfinite(v).all():
                    raise ConfigError(f"{f}: chunk vectors are {v.dtype} with non-finite or non-float values "
                                      "(corrupt or foreign file)")
                parts.append(v.to(torch.float16))
            self._vectors = torch.cat(parts) if parts else torch.zeros(0, self.dim, dtype=torch.float16)
        return self._vectors

    def get(self, keys: Sequence[bytes | str]) -> Tensor:
        """(n, dim) float16 vectors of `keys`, in order (one gather; KeyError names the first missing key)."""
        rows = []
        for k in keys:
            kb = _as_key(k)
            if kb not in self._index:
                raise KeyError(f"{self.path}: no entry {kb.hex()}")
            rows.append(self._index[kb])
        return self._all_vectors()[torch.as_tensor(rows, dtype=torch.long)] if rows else \
            torch.zeros(0, self.dim, dtype=torch.float16)

    def digest(self, keys: Sequence[bytes | str] | None = None, vectors: Tensor | None = None) -> str:
        """sha256 over the sorted keys and their vectors (all entries, or `keys`): what a PCA was fitted on.

        `vectors`: `get(keys)` when the caller already holds it (distinct `keys`), saving a second gather.
        """
        given = [_as_key(k) for k in (self._index if keys is None else keys)]
        if vectors is None:
            given = list(dict.fromkeys(given))
            vectors = self.get(given)
        elif len(set(given)) != len(given) or len(given) != len(vectors):
            raise ValueError("digest(vectors=...) needs distinct keys, one vector each")
        order = sorted(range(len(given)), key=given.__getitem__)
        ks, vecs = [given[i] for i in order], vectors[order]
        h = hashlib.sha256(f"{self.teacher_key}|{self.dim}|{len(ks)}".encode())
        h.update(b"".join(ks))
        h.update(vecs.numpy().tobytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ writes
    def writer(self, rank: int = 0, flush_every: int = 256) -> StoreWriter:
        return StoreWriter(self, rank, flush_every)

    def compact(self) -> int:
        """Merge all chunks into one file (dropping duplicates); returns the number of entries."""
        files = self.chunk_files()
        if len(files) <= 1 and self.duplicates == 0:
            return len(self)
        keys = list(self._index)
        vecs = self.get(keys)
        name = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}-compact-000000.safetensors"
        with atomic_path(self.path / "chunks" / name) as tmp:
            save_file({"keys": _keys_tensor(keys), "vectors": vecs.contiguous()}, str(tmp))
        for f in files:
            f.unlink(missing_ok=True)
        self.refresh()
        return len(self)

    # ------------------------------------------------------------------ split lists
    def write_split(self, split: str, keys: Sequence[bytes], meta: dict[str, Any]) -> None:
        """Record which entries make up a dataset split (the PCA is fitted on the train split's list)."""
        t = _keys_tensor(list(keys)) if keys else torch.zeros(0, KEY_BYTES, dtype=torch.uint8)
        with atomic_path(self.path / "splits" / f"{split}.safetensors") as tmp:
            save_file({"keys": t}, str(tmp), metadata={"meta": json.dumps(meta)})

    def splits(self) -> list[str]:
        d = self.path / "splits"
        return sorted(p.stem for p in d.glob("*.safetensors") if not p.name.startswith(".")) if d.is_dir() else []

    def split_keys(self, split: str) -> tuple[list[bytes], dict[str, Any]]:
        f = self.path / "splits" / f"{split}.safetensors"
        if not f.is_file():
            have = ", ".join(self.splits()) or "none"
            raise ConfigError(f"--store {self.path}: no key list for split {split!r} (extracted splits: {have}); "
                              f"run `mocha teacher extract split={split}` or pass split=")
        with _reading(f), safe_open(str(f), framework="pt") as sf:
            keys = _keys_list(_check_keys(sf.get_tensor("keys"), f))
            meta = json.loads((sf.metadata() or {}).get("meta", "{}"))
        if not isinstance(meta, dict):
            raise ConfigError(f"{f}: split metadata is not a JSON object (corrupt or edited file)")
        return keys, meta


class StoreWriter:
    """Buffers (key, vector) pairs and adds them to the store as atomically renamed chunk files."""

    def __init__(self, store: EmbeddingStore, rank: int, flush_every: int) -> None:
        self.store, self.rank, self.flush_every = store, int(rank), max(1, int(flush_every))
        self.run = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.seq = 0
        self.keys: list[bytes] = []
        self.vecs: list[Tensor] = []
        self.written = 0

    def add(self, keys: Sequence[bytes], vectors: Tensor) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.store.dim or len(keys) != len(vectors):
            raise ConfigError(f"store {self.store.path}: got vectors {tuple(vectors.shape)} for {len(keys)} keys; "
                              f"the store is {self.store.dim}-d")
        if not torch.isfinite(vectors).all():
            raise ConfigError(f"store {self.store.path}: the teacher returned non-finite vectors; nothing written")
        self.keys.extend(_as_key(k) for k in keys)
        self.vecs.append(vectors.detach().to("cpu", torch.float16))
        if len(self.keys) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self.keys:
            return
        name = f"{self.run}-r{self.rank:03d}-{self.seq:06d}.safetensors"
        try:
            with atomic_path(self.store.path / "chunks" / name) as tmp:
                save_file({"keys": _keys_tensor(self.keys), "vectors": torch.cat(self.vecs).contiguous()}, str(tmp))
                with open(tmp, "rb+") as fh:  # durable before it becomes visible
                    os.fsync(fh.fileno())
        except OSError as exc:  # disk full, quota, read-only: the half-written temp file is already removed
            raise ConfigError(f"store {self.store.path}: could not write a chunk ({exc}); the {self.written} entries "
                              "written before are intact — free space and rerun to continue") from None
        self.written += len(self.keys)
        self.seq += 1
        self.keys, self.vecs = [], []


def record_keys(records: Iterable[Any], names: Sequence[str], teacher_key: str) -> list[list[bytes]]:
    """Entry keys of each record's boxes (normalized cx,cy,w,h; label = coarse class name)."""
    out = []
    for rec in records:
        if len(rec.boxes) == 0:
            out.append([])
            continue
        sha = image_digest(rec.image)
        pairs = zip(rec.boxes, rec.coarse, strict=True)
        out.append([region_key(sha, box, names[int(c)], teacher_key) for box, c in pairs])
    return out
