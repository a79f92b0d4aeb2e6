"""One content hash for model tensors: what bundle digests and shipped-weight references compare."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import Tensor


def tensors_digest(states: list[dict[str, Tensor]], extra: Any = None) -> str:
    """sha256 over tensor names, dtypes, shapes and bytes (in sorted order) plus canonical JSON of `extra`."""
    h = hashlib.sha256()
    for state in states:
        for key in sorted(state):
            t = state[key].detach().cpu().contiguous()
            h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()
