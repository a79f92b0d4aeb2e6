"""Teacher targets u' for distillation: embedding store → PCA artifact, per image of a split.

The teacher is never loaded when the store covers the split; missing regions are an error naming
their count (or, with `--extract-missing`, the teacher runs for exactly those regions first).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from mocha.errors import ConfigError

if TYPE_CHECKING:
    from mocha.distill.config import DistillConfig

log = logging.getLogger(__name__)


def open_pca(path: str | Path) -> Any:
    """The PCA artifact (ConfigError when missing or unreadable)."""
    from mocha.teacher.pca import PCAArtifact

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--pca {path}: not found; fit one with `mocha teacher pca`")
    return PCAArtifact.load(path)


def open_store(path: str | Path) -> Any:
    from mocha.teacher.store import EmbeddingStore

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--store {path}: not found; fill one with `mocha teacher extract`")
    return EmbeddingStore.open(path)


def _missing(store: Any, keys: list[list[bytes]]) -> list[tuple[int, int]]:
    return [(i, j) for i, ks in enumerate(keys) for j, k in enumerate(ks) if not store.has(k)]


def load_split_targets(
    cfg: DistillConfig, spec: Any, split: str, records: list[Any], pca: Any, required: bool = True
) -> list[Tensor] | None:
    """u' (n_i, d_t) per record; None when not `required` and the store lacks some of the split."""
    store = open_store(cfg.store)
    pca_key = getattr(pca, "teacher_key", "")
    if pca_key and pca_key != store.teacher_key:
        raise ConfigError(
            f"--pca {cfg.pca} was fitted on embeddings of teacher key {pca_key}, but --store {cfg.store} holds "
            f"teacher {store.teacher_name!r} (key {store.teacher_key}); fit the PCA on this store"
        )
    if int(pca.teacher_dim) != store.dim:
        raise ConfigError(
            f"--pca {cfg.pca} expects {pca.teacher_dim}-d teacher vectors; "
            f"--store {cfg.store} is {store.dim}-d"
        )
    keys = store.region_keys(records, spec.names)
    missing = _missing(store, keys)
    if missing and cfg.extract_missing:
        from mocha.teacher.extract import extract_split

        log.info("extracting %d missing teacher embeddings of split %r", len(missing), split)
        extract_split(spec, split, cfg.store, teacher=cfg.teacher, records=records, progress=cfg.progress)
        store = open_store(cfg.store)
        missing = _missing(store, keys)
    if missing:
        if not required:
            return None
        i, j = missing[0]
        total = sum(len(k) for k in keys)
        raise ConfigError(
            f"--store {cfg.store}: {len(missing)} of {total} regions of split {split!r} have no teacher embedding "
            f"(first: {records[i].image} box {j}); run `mocha teacher extract split={split}` or pass --extract-missing"
        )
    flat = [k for ks in keys for k in ks]
    dim = int(pca.dim)
    if not flat:
        return [torch.zeros(0, dim) for _ in records]
    u = store.get(flat).float()
    target = pca.transform(u).float()
    if target.shape != (len(flat), dim):
        raise ConfigError(f"PCA {cfg.pca} gave targets of shape {tuple(target.shape)}, expected ({len(flat)}, {dim})")
    return list(target.split([len(ks) for ks in keys]))
