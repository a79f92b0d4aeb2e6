"""PCA of teacher embeddings (SPEC "Dimensionality reduction"): u' = ((u − mean)·P[:d_t]ᵀ) / s.

s is the per-component standard deviation sqrt(explained_variance), so every target dimension has unit
variance on the training data. One safetensors artifact holds mean, components, scale, d_t, the teacher
key and the digest of the store entries it was fitted on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from mocha.errors import ConfigError
from mocha.io import atomic_path

FORMAT = "mocha-pca/1"


@dataclass
class PCAArtifact:
    mean: Tensor  # (D,)
    components: Tensor  # (d_t, D), rows orthonormal
    scale: Tensor  # (d_t,) sqrt(explained variance)
    source: str = ""  # digest of the store entries the PCA was fitted on
    teacher_key: str = ""
    meta: dict[str, Any] | None = None

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @property
    def teacher_dim(self) -> int:
        return int(self.components.shape[1])

    @property
    def digest(self) -> str:
        """Content digest of the artifact (bundles reference the PCA by it)."""
        h = hashlib.sha256()
        for t in (self.mean, self.components, self.scale):
            h.update(t.float().numpy().tobytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, x: Tensor | np.ndarray, dim: int, source: str = "", teacher_key: str = "", seed: int = 0,
            meta: dict[str, Any] | None = None) -> PCAArtifact:
        """Fit on the rows of x (n, D). dim must be ≤ min(n − 1, D) (ConfigError otherwise)."""
        from sklearn.decomposition import PCA

        x = np.asarray(torch.as_tensor(x).double().numpy())
        n, d = x.shape
        if dim < 1:
            raise ConfigError(f"--dim {dim}: must be ≥ 1")
        if dim > d:
            raise ConfigError(f"--dim {dim}: larger than the teacher dimension {d}")
        if dim > n - 1:
            raise ConfigError(f"--dim {dim}: a PCA of {n} vectors has at most {n - 1} informative components; "
                              f"lower dim or extract more regions")
        pca = PCA(n_components=dim, svd_solver="full" if min(n, d) <= 4096 else "randomized", random_state=seed)
        pca.fit(x)
        var = np.maximum(pca.explained_variance_, 1e-12)
        return cls(
            mean=torch.from_numpy(pca.mean_).float(),
            components=torch.from_numpy(pca.components_).float(),
            scale=torch.from_numpy(np.sqrt(var)).float(),
            source=source,
            teacher_key=teacher_key,
            meta={**(meta or {}), "vectors": int(n),
                  "explained_variance_ratio": float(pca.explained_variance_ratio_.sum())},
        )

    # ------------------------------------------------------------------ maps
    def _check(self, u: Tensor, what: str, width: int) -> Tensor:
        u = torch.as_tensor(u)
        if u.ndim != 2 or u.shape[1] != width:
            raise ConfigError(f"PCA ({self.teacher_dim}→{self.dim}): {what} has shape {tuple(u.shape)}, "
                              f"expected (n, {width})")
        return u.float()

    def transform(self, u: Tensor) -> Tensor:
        """Scale-normalized targets u' (n, d_t) of teacher vectors u (n, D)."""
        u = self._check(u, "teacher embeddings", self.teacher_dim)
        return ((u - self.mean) @ self.components.T) / self.scale

    def project(self, u: Tensor) -> Tensor:
        """Unscaled projection (u − mean)·Pᵀ."""
        u = self._check(u, "teacher embeddings", self.teacher_dim)
        return (u - self.mean) @ self.components.T

    def inverse(self, y: Tensor) -> Tensor:
        """Back to the teacher space from scale-normalized targets: (y·s)·P + mean."""
        y = self._check(y, "targets", self.dim)
        return (y * self.scale) @ self.components + self.mean

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        meta = {"format": FORMAT, "dim": str(self.dim), "teacher_dim": str(self.teacher_dim), "source": self.source,
                "teacher_key": self.teacher_key, "meta": json.dumps(self.meta or {})}
        with atomic_path(path) as tmp:
            save_file({"mean": self.mean.contiguous(), "components": self.components.contiguous(),
                       "scale": self.scale.contiguous()}, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PCAArtifact:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"--pca {path}: not found; fit one with `mocha teacher pca`")
        try:
            with safe_open(str(path), framework="pt") as sf:
                md = sf.metadata() or {}
                t = {k: sf.get_tensor(k) for k in ("mean", "components", "scale")}
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for foreign files
            raise ConfigError(f"--pca {path}: not a PCA artifact ({exc})") from None
        if md.get("format") != FORMAT:
            raise ConfigError(f"--pca {path}: format {md.get('format')!r}, expected {FORMAT!r}")
        bad = [k for k, v in t.items() if v.dtype != torch.float32 or not torch.isfinite(v).all()]
        if bad:
            raise ConfigError(f"--pca {path}: {', '.join(bad)} must be finite float32 tensors (corrupt or edited file)")
        try:
            meta = json.loads(md.get("meta", "{}"))
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            raise ConfigError(f"--pca {path}: its `meta` is not a JSON object (corrupt or edited file)")
        art = cls(t["mean"], t["components"], t["scale"], md.get("source", ""), md.get("teacher_key", ""), meta)
        if art.components.ndim != 2 or art.mean.shape != (art.teacher_dim,) or art.scale.shape != (art.dim,) \
                or art.dim < 1:
            raise ConfigError(f"--pca {path}: inconsistent shapes mean {tuple(art.mean.shape)}, "
                              f"components {tuple(art.components.shape)}, scale {tuple(art.scale.shape)}")
        if not bool((art.scale > 0).all()):
            raise ConfigError(f"--pca {path}: scale has zero or negative entries (corrupt or edited file)")
        return art


def fit_store_pca(store_path: str | Path, dim: int = 512, split: str = "base_train", seed: int = 0) -> PCAArtifact:
    """Fit the PCA on the store entries of `split` only (its key list, written by `mocha teacher extract`)."""
    from mocha.teacher.store import EmbeddingStore

    store = EmbeddingStore.open(store_path)
    keys, meta = store.split_keys(split)
    uniq = list(dict.fromkeys(keys))
    missing = sum(1 for k in uniq if k not in store)
    if missing:
        raise ConfigError(f"--store {store_path}: {missing} of {len(uniq)} regions of split {split!r} have no "
                          f"embedding; rerun `mocha teacher extract split={split}`")
    if dim > store.dim:
        raise ConfigError(f"--dim {dim}: larger than the teacher dimension {store.dim} of store {store_path}")
    stored = store.get(uniq)
    return PCAArtifact.fit(stored.float(), dim, source=store.digest(uniq, stored), teacher_key=store.teacher_key,
                           seed=seed, meta={"store": str(store_path), "split": split, "teacher": store.teacher_name,
                                 "data": meta.get("data")})
