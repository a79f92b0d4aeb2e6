"""Stage-2 checkpoints: a bundle (student + translator + PCA reference + config), plus for `latest/` the optimizer
state and training counters that make resuming reproduce an uninterrupted run exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mocha.errors import ConfigError
from mocha.models.bundle import load_bundle, save_bundle
from mocha.models.detector import Student
from mocha.models.translator import Translator

STATE_JSON = "train_state.json"
STATE_TENSORS = "train_state.safetensors"


def optimizer_state(optimizer: torch.optim.Optimizer, counters: dict[str, Any]) -> tuple[dict[str, Tensor], dict]:
    """(tensors, json) of the optimizer state and the training counters (flat names for safetensors)."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = torch.as_tensor(v)
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, **counters}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any],
                         device: torch.device) -> dict[str, Any]:
    """Restore the optimizer from `optimizer_state`'s output; returns the training counters."""
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v.to(device) if name != "step" else v
    groups = meta["param_groups"]
    for g in groups:
        g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return {k: v for k, v in meta.items() if k != "param_groups"}


def save_checkpoint(path: Path, student: Student, translator: Translator, pca: Any, config: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, counters: dict[str, Any] | None = None) -> Path:
    """The bundle at `path`; with `optimizer`, also its state and `counters` (a resumable `latest/`)."""
    tensors, meta = optimizer_state(optimizer, counters or {}) if optimizer is not None else (None, None)
    return save_bundle(path, student, translator, pca, config, extra_tensors=tensors, extra_json=meta)


def load_checkpoint(path: Path, student: Student, translator: Translator, optimizer: torch.optim.Optimizer,
                    device: torch.device) -> dict[str, Any]:
    """Load a `latest/` bundle into the given modules and optimizer; returns its training counters."""
    from safetensors.torch import load_file

    bundle = load_bundle(path)
    if bundle.student.architecture() != student.architecture():
        raise ConfigError(f"{path}: the checkpoint's student architecture differs from student=")
    state_json = path / STATE_JSON
    if not state_json.exists():
        raise ConfigError(f"{path}: no {STATE_JSON}; only `latest/` bundles can be resumed")
    student.load_state_dict(bundle.student.state_dict())
    translator.load_state_dict(bundle.translator.state_dict())
    tensors = load_file(str(path / STATE_TENSORS)) if (path / STATE_TENSORS).exists() else {}
    return load_optimizer_state(optimizer, tensors, json.loads(state_json.read_text()), device)
