"""Few-shot prototype learners: conditional coarse-to-fine (SPEC default), flat nearest prototype, SimpleShot, and
the coarse prior of `mocha detect` (the box's class a prior, not a filter).

Instances are keyed by any hashable id (int or str) and carry a coarse class id. Each instance's prototype is
the mean of its support vectors. `predict` labels every query *box* independently and is vectorized: queries
are sorted by coarse class, each class block is compared with its class's prototypes in one distance call,
and the ensemble/softmax/argmax run once over a padded (n, M) matrix (the only Python loop is over classes).

Probabilities: for a distance d over the candidates of a box, p = softmax(1 / (d + 1e-5)) (SPEC). The
conditional learner averages the p's of three distances (1 - cos, mean |.|, mean (.)^2); flat and SimpleShot
use the mean squared L2 distance only. The prior learner's probability is its penalised cosine similarity mapped
to [0, 1]. A box with no candidate gets id None and probability 0.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mocha.core.registry import Registry
from mocha.errors import ConfigError

EPS = 1e-5
FALLBACKS = ("drop", "all")


class PrototypeLearner:
    """Base class: stores support vectors per instance, builds prototypes lazily, predicts per box."""

    kind = "base"

    def __init__(self) -> None:
        self._vectors: dict[Hashable, torch.Tensor] = {}  # id -> (k, d) float32 support vectors
        self._coarse: dict[Hashable, int] = {}
        self._cache: dict[str, Any] | None = None

    # ---- enrolment -------------------------------------------------------------------------------------
    @property
    def dim(self) -> int | None:
        """Feature dimension, or None while nothing is enrolled."""
        for v in self._vectors.values():
            return int(v.shape[1])
        return None

    def add(self, instance: Hashable, coarse: int, vectors: torch.Tensor) -> None:
        """Enrol `instance` under coarse class `coarse` with (k, d) support vectors; adding again appends shots."""
        vectors = torch.as_tensor(vectors).detach().to("cpu", torch.float32)
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ConfigError(f"instance {instance!r}: support vectors must be (k, d) with k >= 1, got "
                              f"{tuple(vectors.shape)}")
        if not torch.isfinite(vectors).all():
            raise ConfigError(f"instance {instance!r}: support vectors contain NaN/inf")
        dim = self.dim
        if dim is not None and vectors.shape[1] != dim:
            raise ConfigError(f"instance {instance!r}: vectors have {vectors.shape[1]} dims, learner has {dim}")
        coarse = int(coarse)
        if instance in self._vectors:
            if self._coarse[instance] != coarse:
                raise ConfigError(f"instance {instance!r} is enrolled under coarse class {self._coarse[instance]}, "
                                  f"not {coarse}")
            self._vectors[instance] = torch.cat([self._vectors[instance], vectors])
        else:
            self._vectors[instance] = vectors.clone()
            self._coarse[instance] = coarse
        self._cache = None

    def remove(self, instance: Hashable) -> None:
        """Forget `instance` (ConfigError if it is not enrolled)."""
        if instance not in self._vectors:
            raise ConfigError(f"unknown instance {instance!r}; enrolled: {self._preview()}")
        del self._vectors[instance]
        del self._coarse[instance]
        self._cache = None

    def instances(self) -> list:
        """Enrolled instance ids in enrolment order."""
        return list(self._vectors)

    def coarse_of(self, instance: Hashable) -> int:
        """Coarse class of an enrolled instance."""
        if instance not in self._coarse:
            raise ConfigError(f"unknown instance {instance!r}; enrolled: {self._preview()}")
        return self._coarse[instance]

    def shots(self, instance: Hashable) -> int:
        """Number of support vectors of an enrolled instance."""
        return int(self._vectors[instance].shape[0]) if instance in self._vectors else 0

    def prototypes(self) -> torch.Tensor:
        """(K, d) prototypes in `instances()` order (in the learner's comparison space)."""
        return self._state()["protos_in_order"]

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, instance: object) -> bool:
        return instance in self._vectors

    def _preview(self) -> str:
        ids = list(self._vectors)
        return ", ".join(map(repr, ids[:10])) + (" ..." if len(ids) > 10 else "") if ids else "(none)"

    # ---- prediction --------------------------------------------------------------------------------------
    def predict(self, queries: torch.Tensor, coarse: torch.Tensor) -> tuple[list, torch.Tensor]:
        """Per query box: the instance id (None when dropped) and its probability, shape (n,)."""
        idx, prob = self.predict_index(queries, coarse)
        ids = self.instances()
        return [ids[i] if i >= 0 else None for i in idx.tolist()], prob

    def predict_index(self, queries: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `predict` but returns indices into `instances()` (-1 when dropped) as a LongTensor."""
        queries = torch.as_tensor(queries).detach().to("cpu", torch.float32)
        coarse = torch.as_tensor(coarse).detach().to("cpu").long().reshape(-1)
        n = queries.shape[0]
        if queries.ndim != 2 or coarse.shape[0] != n:
            raise ConfigError(f"predict: queries must be (n, d) with n coarse ids, got {tuple(queries.shape)} "
                              f"and {tuple(coarse.shape)}")
        if n == 0 or not self._vectors:
            return torch.full((n,), -1, dtype=torch.long), torch.zeros(n)
        if queries.shape[1] != self.dim:
            raise ConfigError(f"predict: queries have {queries.shape[1]} dims, learner has {self.dim}")
        return self._predict(queries, coarse)

    def _predict(self, queries: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    # ---- prototypes --------------------------------------------------------------------------------------
    def _space(self, x: torch.Tensor, center: torch.Tensor | None) -> torch.Tensor:
        """Map raw vectors into the comparison space (identity by default)."""
        return x

    def _center(self) -> torch.Tensor | None:
        return None

    def _state(self) -> dict[str, Any]:
        """Prototypes sorted by coarse class (contiguous blocks) plus the mapping back to enrolment order."""
        if self._cache is None:
            ids = list(self._vectors)
            center = self._center()
            protos = torch.stack([self._space(self._vectors[i], center).mean(0) for i in ids])
            coarse = torch.tensor([self._coarse[i] for i in ids], dtype=torch.long)
            order = torch.argsort(coarse, stable=True)
            classes, counts = torch.unique_consecutive(coarse[order], return_counts=True)
            starts = torch.cumsum(counts, 0) - counts
            self._cache = {
                "protos_in_order": protos,
                "coarse_in_order": coarse,
                "protos": protos[order].contiguous(),
                "pn2": protos[order].square().sum(1),  # squared norms, reused by every predict
                "order": order,  # sorted position -> enrolment index
                "blocks": {int(c): (int(s), int(k)) for c, s, k in zip(classes, starts, counts, strict=True)},
                "center": center,
            }
        return self._cache

    # ---- serialization -----------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments."""
        return {}

    def state_dict(self) -> dict:
        """Everything needed to rebuild the learner: kind, config, ids, coarse ids, shot counts, vectors."""
        ids = self.instances()
        d = self.dim or 0
        return {
            "kind": self.kind,
            "config": self.config(),
            "ids": ids,
            "coarse": torch.tensor([self._coarse[i] for i in ids], dtype=torch.long),
            "counts": torch.tensor([self.shots(i) for i in ids], dtype=torch.long),
            "vectors": torch.cat([self._vectors[i] for i in ids]) if ids else torch.zeros(0, d),
        }

    @classmethod
    def from_state_dict(cls, d: dict) -> PrototypeLearner:
        """Rebuild a learner saved with `state_dict` (dispatches on its kind)."""
        kind = d.get("kind")
        if kind not in LEARNERS:
            raise ConfigError(f"learner state has unknown kind {kind!r}; expected one of {', '.join(LEARNERS)}")
        learner = LEARNERS.get(kind)(**dict(d.get("config", {})))
        vectors = torch.as_tensor(d["vectors"], dtype=torch.float32)
        counts = [int(c) for c in torch.as_tensor(d["counts"]).tolist()]
        coarse = [int(c) for c in torch.as_tensor(d["coarse"]).tolist()]
        if not (len(d["ids"]) == len(counts) == len(coarse)) or sum(counts) != vectors.shape[0]:
            raise ConfigError("learner state is inconsistent: ids/coarse/counts/vectors do not match")
        for inst, c, chunk in zip(d["ids"], coarse, torch.split(vectors, counts), strict=True):
            learner.add(inst, c, chunk)
        return learner

    def save(self, path: str | Path) -> None:
        """Write the learner atomically as safetensors (tensors) with its ids/kind/config in the metadata."""
        from safetensors.torch import save_file

        from mocha.io import atomic_path

        sd = self.state_dict()
        meta = {"kind": sd["kind"], "config": json.dumps(sd["config"]), "ids": json.dumps(sd["ids"])}
        with atomic_path(path) as tmp:
            save_file({k: sd[k].contiguous() for k in ("coarse", "counts", "vectors")}, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> PrototypeLearner:
        """Read a learner written by `save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"learner file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
            d = {"kind": meta.get("kind"), "config": json.loads(meta.get("config", "{}")),
                 "ids": json.loads(meta.get("ids", "[]")), **tensors}
        except Exception as exc:  # safetensors raises its own error type for a corrupt header
            raise ConfigError(f"{path}: not a learner file ({exc})") from None
        return cls.from_state_dict(d)


def _inv_softmax(dist: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """p = softmax(1 / (d + eps)) over the valid candidates of each row (rows without any get zeros)."""
    logits = 1.0 / (dist.clamp_min(0) + EPS)
    logits = logits.masked_fill(~valid, float("-inf"))
    p = torch.softmax(logits, dim=1)
    return torch.nan_to_num(p, nan=0.0)


def _l1_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, budget: int = 1 << 22) -> None:
    """Sum of |a_i - b_j| into `out` (rows of a x rows of b); broadcasting beats cdist(p=1) ~2x on CPU.

    Rows are chunked so the (rows, m, d) temporary stays under `budget` elements.
    """
    step = max(1, budget // max(1, b.shape[0] * b.shape[1]))
    for i in range(0, a.shape[0], step):
        out[i:i + step] = (a[i:i + step, None, :] - b[None]).abs_().sum(-1)


class ConditionalLearner(PrototypeLearner):
    """Coarse-to-fine: a box is compared only with the instances of its detected coarse class (SPEC)."""

    kind = "conditional"

    def __init__(self, fallback: str = "drop") -> None:
        super().__init__()
        if fallback not in FALLBACKS:
            raise ConfigError(f"fallback must be one of {', '.join(FALLBACKS)}, got {fallback!r}")
        self.fallback = fallback

    def config(self) -> dict[str, Any]:
        return {"fallback": self.fallback}

    def _predict(self, queries: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        st = self._state()
        protos, blocks = st["protos"], st["blocks"]
        n, d = queries.shape
        qorder = torch.argsort(coarse, stable=True)
        q = queries[qorder]
        qclasses, qcounts = torch.unique_consecutive(coarse[qorder], return_counts=True)
        # (query rows, prototype slice) per block; rows of unknown classes go to all prototypes or are dropped.
        groups: list[tuple[int, int, int, int]] = []
        row, loose = 0, []
        for c, k in zip(qclasses.tolist(), qcounts.tolist(), strict=True):
            if c in blocks:
                groups.append((row, k, *blocks[c]))
            elif self.fallback == "all":
                loose.append((row, k))
            row += k
        groups += [(r, k, 0, protos.shape[0]) for r, k in loose]
        width = max((g[3] for g in groups), default=0)
        if width == 0:
            return torch.full((n,), -1, dtype=torch.long), torch.zeros(n)
        l1 = torch.zeros(n, width)
        dot = torch.zeros(n, width)
        base = torch.zeros(n, dtype=torch.long)  # sorted-prototype offset of each row's block
        valid = torch.zeros(n, width, dtype=torch.bool)
        pnorm2 = torch.zeros(n, width)
        pn2 = st["pn2"]
        for r, k, s, m in groups:
            a, b = q[r:r + k], protos[s:s + m]
            _l1_into(l1[r:r + k, :m], a, b)
            dot[r:r + k, :m] = a @ b.T
            pnorm2[r:r + k, :m] = pn2[s:s + m]
            valid[r:r + k, :m] = True
            base[r:r + k] = s
        qn2 = (q * q).sum(1, keepdim=True)
        l2 = (qn2 + pnorm2 - 2 * dot).clamp_min(0) / d
        cos = 1 - dot / (qn2.sqrt() * pnorm2.sqrt()).clamp_min(1e-12)
        p = (_inv_softmax(cos, valid) + _inv_softmax(l1 / d, valid) + _inv_softmax(l2, valid)) / 3
        prob, col = p.max(1)
        has = valid.any(1)
        sorted_idx = st["order"][(base + col).clamp_max(protos.shape[0] - 1)]
        idx_sorted = torch.where(has, sorted_idx, torch.full_like(sorted_idx, -1))
        idx = torch.empty_like(idx_sorted)
        out_p = torch.empty_like(prob)
        idx[qorder] = idx_sorted
        out_p[qorder] = torch.where(has, prob, torch.zeros_like(prob))
        return idx, out_p


class FlatLearner(PrototypeLearner):
    """Nearest prototype over all instances by (mean squared) L2 distance; the coarse class is ignored."""

    kind = "flat"

    def _predict(self, queries: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        st = self._state()
        q = self._space(queries, st["center"])
        protos = st["protos_in_order"]
        dist = torch.cdist(q, protos).pow(2) / q.shape[1]
        p = _inv_softmax(dist, torch.ones_like(dist, dtype=torch.bool))
        prob, idx = p.max(1)
        return idx, prob


class CoarsePriorLearner(PrototypeLearner):
    """The matching `mocha detect` deploys (mocha.personalize.matching): cosine similarity to every prototype, with
    `coarse_penalty` taken off the instances of another coarse class than the box's. The detector's class is a
    prior, not a filter, so a box whose class the detector got wrong can still be named; `coarse_penalty=inf`
    searches the box's own class only (the conditional learner's candidates, ranked by cosine alone)."""

    kind = "prior"

    def __init__(self, coarse_penalty: float) -> None:
        super().__init__()
        self.coarse_penalty = float(coarse_penalty)
        if not self.coarse_penalty >= 0:
            raise ConfigError(f"coarse_penalty={coarse_penalty}: must be >= 0 (inf: only the box's own class)")

    def config(self) -> dict[str, Any]:
        return {"coarse_penalty": self.coarse_penalty}

    def _predict(self, queries: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        st = self._state()
        sim = F.normalize(queries, dim=1) @ F.normalize(st["protos_in_order"], dim=1).T
        other = coarse[:, None] != st["coarse_in_order"][None, :]
        if self.coarse_penalty == float("inf"):
            sim = sim.masked_fill(other, float("-inf"))
        else:
            sim = sim - self.coarse_penalty * other.float()
        best, idx = sim.max(1)
        has = torch.isfinite(best)
        prob = ((best + 1) / 2).clamp(0, 1)  # cosine in [-1, 1] → [0, 1], a penalised one clipped at 0
        return torch.where(has, idx, torch.full_like(idx, -1)), torch.where(has, prob, torch.zeros_like(prob))


class SimpleShotLearner(FlatLearner):
    """SimpleShot: optionally subtract the mean support vector, L2-normalize, nearest prototype by L2."""

    kind = "simpleshot"

    def __init__(self, center: bool = True) -> None:
        super().__init__()
        self.center = bool(center)

    def config(self) -> dict[str, Any]:
        return {"center": self.center}

    def _center(self) -> torch.Tensor | None:
        if not self.center:
            return None
        return torch.cat(list(self._vectors.values())).mean(0)

    def _space(self, x: torch.Tensor, center: torch.Tensor | None) -> torch.Tensor:
        if center is not None:
            x = x - center
        return F.normalize(x, dim=1)


LEARNERS: Registry[type[PrototypeLearner]] = Registry("learner", option="learner")
LEARNERS.register("conditional", ConditionalLearner, help="SPEC's: prototypes searched within the box's coarse class")
LEARNERS.register("flat", FlatLearner, help="nearest prototype over all instances")
LEARNERS.register("simpleshot", SimpleShotLearner, help="SimpleShot: centred + L2-normalised nearest prototype")
LEARNERS.register("prior", CoarsePriorLearner, help="mocha detect's: cosine to every prototype, coarse_penalty off "
                  "those of another coarse class than the box's")


def list_learners() -> list[str]:
    """Names `create_learner` accepts."""
    return LEARNERS.names()


def create_learner(name: str, **kw: Any) -> PrototypeLearner:
    """Build a learner by name: "conditional" (fallback="drop"|"all"), "flat", "simpleshot" (center=True), "prior"
    (coarse_penalty, required: mocha.personalize.matching.DEFAULT_COARSE_PENALTY is mocha detect's)."""
    factory = LEARNERS.get(name)
    try:
        return factory(**kw)
    except TypeError as exc:
        raise ConfigError(f"learner {name!r}: bad option ({exc})") from None
