"""Offline loading helpers shared by the transformers teachers: model lookup, device, dtype, revision.

Nothing here downloads: a model is a local folder or a hub id already in the local Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from mocha.errors import ConfigError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json")
_CONFIG_SUFFIXES = (".json", ".jinja", ".txt", ".model")  # configs, tokenizer, chat template
_CONFIG_MAX_BYTES = 64 << 20


def _hub_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def resolve_model(model: str, kind: str) -> str:
    """The local folder holding `model`: a folder path as is, or a hub id's snapshot in the local cache.

    `kind` names the option in messages (e.g. "--model", "--clip-model"). Raises ConfigError when absent.
    """
    if not model or not str(model).strip():
        raise ConfigError(f"{kind}: empty model; pass a hub id (e.g. llava-hf/llava-1.5-7b-hf) "
                          "or model=/path/to/folder")
    model = str(model).strip()
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{kind} {model}: folder has no config.json; pass a folder saved by save_pretrained "
                              "or a Hugging Face hub snapshot")
        return str(path.resolve())
    if model.startswith((".", "/", "~")) or model.count("/") > 1:  # a path, not an "org/name" hub id
        raise ConfigError(f"{kind} {model}: no such folder; pass model=/path/to/folder (saved by save_pretrained) "
                          "or a hub id already in the Hugging Face cache")
    from huggingface_hub import snapshot_download

    try:
        snap = snapshot_download(model, local_files_only=True)
    except Exception as e:  # not cached (LocalEntryNotFoundError), not a valid repo id, or a partial download
        if type(e).__name__ == "IncompleteSnapshotError":
            raise ConfigError(f"{kind} {model}: {e}") from None
        snap = None
    if snap and (Path(snap) / "config.json").is_file():
        return str(Path(snap).resolve())
    raise ConfigError(
        f"{kind} {model}: not in the Hugging Face cache ({_hub_cache_dir()}) and not a local folder; "
        f"download it on a machine with internet (`huggingface-cli download {model}`) and copy the cache, "
        f"or pass model=/path/to/folder")


def model_revision(folder: str) -> str:
    """Which checkpoint: the snapshot commit for a hub-cache folder, else a digest of the folder's small config
    files (config, generation, processor, tokenizer) and the names, sizes and sampled bytes of its weight files."""
    path = Path(folder)
    if path.parent.name == "snapshots" and len(path.name) == 40:
        return path.name
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if not f.is_file():
            continue
        if f.name.endswith(_WEIGHT_SUFFIXES):
            h.update(f"{f.name}:{f.stat().st_size}:".encode() + _sample_digest(f))
        elif f.name.endswith(_CONFIG_SUFFIXES) and f.stat().st_size < _CONFIG_MAX_BYTES:
            h.update(f"{f.name}:".encode() + hashlib.sha256(f.read_bytes()).digest())
    return "sha256:" + h.hexdigest()[:16]


def _sample_digest(path: Path, chunk: int = 1 << 20) -> bytes:
    """Digest of three 1 MiB samples (start, middle, end): tells re-trained weights of one architecture apart
    without reading gigabytes."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with path.open("rb") as f:
        for at in sorted({0, max(0, size // 2 - chunk // 2), max(0, size - chunk)}):
            f.seek(at)
            h.update(f.read(chunk))
    return h.digest()



def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Parse "float32" / "float16" / "bfloat16" (also "fp16", "bf16"); default float16 on CUDA, float32 on CPU."""
    if dtype is None or str(dtype).strip() in ("", "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ConfigError(f"--dtype: unsupported {dtype}; choose one of {', '.join(DTYPES)}")
        return dtype
    key = str(dtype).strip().lower().removeprefix("torch.")
    key = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}.get(key, key)
    if key not in DTYPES:
        raise ConfigError(f"--dtype: unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_positive(value: Any, kind: str) -> int:
    """An integer option that must be >= 1."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{kind}: expected a positive integer, got {value!r}") from None
    if n < 1:
        raise ConfigError(f"{kind}: expected a positive integer, got {value!r}")
    return n


def json_safe(value: Any) -> Any:
    """Round-trip through JSON so settings() is plain data (tuples → lists, etc.)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def model_label(model: str, folder: str) -> str:
    """The model's name in settings(): the hub id, also for a hub-cache snapshot folder given as a path; "local"
    for any other folder, whose revision digest pins the content (renaming or moving it keeps the store key)."""
    path = Path(folder)
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return path.parent.parent.name.removeprefix("models--").replace("--", "/")
    return "local" if Path(str(model)).expanduser().is_dir() else str(model).strip()


def load_pretrained(loader: Any, folder: str, kind: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained(folder, local_files_only=True, **kwargs)`; a broken folder → ConfigError."""
    try:
        return loader.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{kind}: cannot load {loader.__name__} from {folder} ({type(e).__name__}: {e})") from None


def reject_unknown(unknown: dict[str, Any], teacher: str) -> None:
    """Options a teacher does not take (e.g. `text=` given to llava) → one ConfigError naming them."""
    if unknown:
        names = ", ".join("--" + k.replace("_", "-") for k in sorted(unknown))
        raise ConfigError(f"{names}: not an option of the {teacher} teacher")
