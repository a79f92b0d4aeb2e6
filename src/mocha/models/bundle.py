"""The checkpoint bundle: student + translator + PCA reference + config, one atomic folder.

Layout (`mocha-bundle/1`):
    bundle.json              config, translator/student architecture, PCA reference, versions, digest
    student.safetensors      Student.save (model YAML + class names in its metadata); absent when the student is
                             a shipped one, unchanged (bundle.json `student_ref` names it: `nanodet-g`)
    translator.safetensors   translator weights (constructor arguments in bundle.json)
    pca/                     copy of the PCA artifact the targets came from (optional)
    train_state.*            optimizer/scheduler state of `latest/` bundles (only for --resume)
No pickles: tensors are safetensors, everything else JSON.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mocha.core.runs import resolve_artifact
from mocha.errors import ConfigError
from mocha.io import atomic_dir, read_manifest
from mocha.models.detector import SHIPPED as SHIPPED_STUDENTS
from mocha.models.detector import Student, load_referenced
from mocha.models.digest import tensors_digest
from mocha.models.translator import Translator
from mocha.resources import SHIPPED_BUNDLES, asset_path

FORMAT = "mocha-bundle/1"
log = logging.getLogger(__name__)

# Bundles ship inside the package (src/mocha/assets/bundles/<name>/, names in mocha.resources.SHIPPED_BUNDLES).
DEFAULT_BUNDLE = "coco"  # what `mocha enroll` / `Personalizer.load()` use for a new gallery when none is given


def resolve_bundle(path: str | Path) -> Path:
    """A shipped bundle's folder for its name (`coco`), else the path as given (a folder always wins)."""
    p = Path(path)
    if not p.exists() and str(path) in SHIPPED_BUNDLES:
        return asset_path("bundles", str(path))
    return p


def personalize_defaults(config: dict | None) -> dict[str, Any]:
    """The open-set settings a bundle ships with (its config's `personalize`: min_similarity, coarse_penalty,
    calibration, as tuned on the data it was built for); a gallery's own tuned settings override them."""
    found = (config or {}).get("personalize") or {}
    if not isinstance(found, dict):
        raise ConfigError(f"bundle config `personalize` must be a mapping, got {found!r}")
    return {k: found[k] for k in ("min_similarity", "coarse_penalty", "calibration") if k in found}


def shipped_name(path: str | Path | None) -> str | None:
    """The name of the shipped bundle at `path` (None for any other folder)."""
    if path is None:
        return None
    for name in SHIPPED_BUNDLES:
        if Path(path).resolve() == resolve_bundle(name).resolve():
            return name
    return None


def _attr(obj: Any, name: str) -> Any:
    value = getattr(obj, name)
    return value() if callable(value) else value


def versions() -> dict[str, str]:
    """Library versions recorded with every bundle."""
    import ultralytics

    import mocha

    return {
        "mocha": getattr(mocha, "__version__", "0"),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
    }


@dataclass
class Bundle:
    """A distilled student ready to embed regions; `digest` ties galleries to the exact weights."""

    student: Student
    translator: Translator
    pca: Any | None  # mocha.teacher.pca.PCAArtifact
    config: dict
    path: Path | None = None
    pca_digest: str | None = None  # recorded digest when the PCA artifact itself was not loaded

    @property
    def digest(self) -> str:
        """Hash of all tensors + config (+ the PCA digest)."""
        pca_digest = str(_attr(self.pca, "digest")) if self.pca is not None else self.pca_digest
        return tensors_digest(
            [self.student.weights_state(), self.translator.state_dict()], {"config": self.config, "pca": pca_digest}
        )[:16]

    @property
    def dim(self) -> int:
        """Embedding dimension d_t."""
        return int(self.translator.out_dim)

    @property
    def device(self) -> torch.device:
        return next(self.translator.parameters()).device

    def to(self, device: str | torch.device) -> Bundle:
        self.student.to(device)
        self.translator.to(device)
        return self

    def eval(self) -> Bundle:
        self.student.eval()
        self.translator.eval()
        return self

    def embed_regions(self, feats: list[Tensor], boxes: list[Tensor]) -> Tensor:
        """(N, d_t) = translator(pool(feats, boxes)); boxes per image, xyxy letterboxed pixels."""
        return self.translator(self.student.region_features(feats, boxes))

    @torch.no_grad()
    def detect_and_embed(
        self, images: Tensor, conf: float = 0.1, iou: float = 0.6, max_det: int = 300
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: detections (n,6) xyxy,conf,cls in letterboxed pixels and their embeddings (n, d_t)."""
        self.eval()
        images = images.to(self.device)
        dets, feats = self.student.detect(images, conf=conf, iou=iou, max_det=max_det)
        emb = self.embed_regions(feats, [d[:, :4] for d in dets])
        return dets, list(emb.split([len(d) for d in dets]))

    @torch.no_grad()
    def embed_boxes(self, images: Tensor, boxes: list[Tensor]) -> Tensor:
        """(N, d_t) embeddings of given boxes (ground truth / user boxes, xyxy letterboxed pixels)."""
        if len(boxes) != images.shape[0]:
            raise ConfigError(f"embed_boxes: {images.shape[0]} images but {len(boxes)} box lists")
        self.eval()
        feats, _ = self.student(images.to(self.device))
        return self.embed_regions(feats, [b.to(self.device).float().reshape(-1, 4) for b in boxes])


def save_bundle(
    path: str | Path,
    student: Student,
    translator: Translator,
    pca: Any | None,
    config: dict,
    extra_tensors: dict[str, Tensor] | None = None,
    extra_json: dict | None = None,
    student_dtype: torch.dtype | None = None,
) -> Path:
    """Write the bundle folder atomically (replacing an existing one); returns its path.

    `student_dtype` (NanoDet-g students: e.g. torch.float16, the precision its shipped weights come in) stores a
    copied student in that type; its weights are rounded to it in place first, so the digest covers what is
    stored and what loads back."""

    path = Path(path)
    if student_dtype is not None:
        with torch.no_grad():
            for t in student.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.to(student_dtype).to(t.dtype))
    if translator.width != student.region_dim:
        raise ConfigError(f"translator input {translator.width} != student region dim {student.region_dim}")
    pca_info = None
    if pca is not None:
        pca_dim = int(_attr(pca, "dim"))
        if pca_dim != translator.out_dim:
            raise ConfigError(f"PCA dim {pca_dim} != translator output dim {translator.out_dim}")
        pca_info = {"digest": str(_attr(pca, "digest")), "dim": pca_dim, "source": config.get("pca")}
    try:
        _write_bundle(path, student, translator, pca, config, pca_info, extra_tensors, extra_json, student_dtype)
    except OSError as exc:  # disk full, quota, read-only: atomic_dir removed the half-written folder
        what = "the previous bundle there is intact" if path.exists() else "nothing was written"
        raise ConfigError(f"{path}: could not write the bundle ({exc}); {what}") from None
    return path


def _write_bundle(path: Path, student: Student, translator: Translator, pca: Any | None, config: dict,
                  pca_info: dict | None, extra_tensors: dict[str, Tensor] | None, extra_json: dict | None,
                  student_dtype: torch.dtype | None = None) -> None:
    from safetensors.torch import save_file

    ref = student.shipped_as[0] if student.shipped_as and student.weights_digest() == student.shipped_as[1] else None
    with atomic_dir(path) as tmp:
        if ref is None:
            student.save(tmp / "student.safetensors", **({"dtype": student_dtype} if student_dtype else {}))
        tstate = {k: v.detach().cpu().contiguous() for k, v in translator.state_dict().items()}
        save_file(tstate, str(tmp / "translator.safetensors"), metadata={"format": FORMAT})
        if pca is not None and hasattr(pca, "save"):
            try:
                pca.save(tmp / "pca")
                pca_info["file"] = "pca"
            except Exception as exc:  # a reference is enough to embed; the copy is a convenience
                log.warning("could not copy the PCA artifact into the bundle (%s); keeping its reference", exc)
        if extra_tensors:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in extra_tensors.items()},
                str(tmp / "train_state.safetensors"),
            )
        if extra_json is not None:
            (tmp / "train_state.json").write_text(json.dumps(extra_json, indent=1) + "\n")
        meta = {
            "format": FORMAT,
            "config": config,
            "translator": translator.config(),
            "student": student.architecture(),
            "student_ref": ref,
            "pca": pca_info,
            "versions": versions(),
            "digest": Bundle(student, translator, pca, config).digest,
        }
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")


def read_meta(path: str | Path) -> dict:
    """bundle.json of a bundle folder (ConfigError when absent or not a bundle)."""
    return read_manifest(path, "bundle.json", FORMAT, "mocha bundle")


def load_translator(path: Path, cfg: dict) -> Translator:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    keys = {"in_dim", "out_dim", "heads", "ffn_mult", "tokens"}
    if not isinstance(cfg, dict) or not set(cfg) <= keys or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1 << 16 for v in cfg.values()):
        raise ConfigError(f"{path.parent}: bundle.json `translator` must map {', '.join(sorted(keys))} to positive "
                          f"integers, got {cfg!r}")
    translator = Translator(**cfg)
    try:
        state = load_file(str(path))
        translator.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, SafetensorError) as exc:
        raise ConfigError(f"{path}: translator weights do not match {cfg} ({exc})") from None
    return translator


def _pool_bins(path: Path, config: dict) -> int:
    """The region grid the translator was trained on (bundle config `pool_bins`; 1 = SPEC's box mean)."""
    bins = config.get("pool_bins", 1)
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= 8:
        raise ConfigError(f"{path}: bundle.json config.pool_bins must be an integer 1-8, got {bins!r}")
    return bins


def load_bundle(path: str | Path, device: str | torch.device | None = None) -> Bundle:
    """Load and validate a bundle folder (or a distill run folder → its best/). ConfigError on bad input."""
    path = resolve_artifact(resolve_bundle(path), "bundle.json")
    meta = read_meta(path)
    kinds = {"student": dict, "pca": dict, "config": dict, "digest": str}
    bad = [k for k, t in kinds.items() if meta.get(k) is not None and not isinstance(meta[k], t)]
    info = meta.get("pca")
    dim = info.get("dim") if isinstance(info, dict) else 0
    if info and isinstance(info, dict) and (isinstance(dim, bool) or not isinstance(dim, int)
                                            or not isinstance(info.get("file") or "", str)):
        bad.append("pca.dim/file")
    if bad:
        raise ConfigError(f"{path}: bundle.json has entries of the wrong type ({', '.join(bad)}); corrupt or edited")
    ref = meta.get("student_ref")
    if ref is not None and (not isinstance(ref, str) or ref not in SHIPPED_STUDENTS):
        raise ConfigError(f"{path}: bundle.json `student_ref` {ref!r} is not a shipped student "
                          f"({', '.join(SHIPPED_STUDENTS)}); corrupt or edited")
    for name in ("translator.safetensors",) if ref else ("student.safetensors", "translator.safetensors"):
        if not (path / name).exists():
            raise ConfigError(f"{path}: bundle is missing {name}")
    # a reference: the shipped file, hash-checked, pooled as the bundle was trained
    student = load_referenced(ref, meta.get("student") or {}) if ref else Student.load(path / "student.safetensors")
    if meta.get("student") and student.architecture()["cfg"] != meta["student"].get("cfg"):
        raise ConfigError(f"{path}: student.safetensors architecture differs from the one recorded in bundle.json")
    translator = load_translator(path / "translator.safetensors", meta.get("translator"))
    config = dict(meta.get("config") or {})
    student.pool_bins = _pool_bins(path, config)
    if translator.width != student.region_dim:
        raise ConfigError(
            f"{path}: translator expects {translator.width}-d region features, the student gives {student.region_dim}"
        )
    pca = None
    if info:
        if int(info["dim"]) != translator.out_dim:
            raise ConfigError(f"{path}: PCA dim {info['dim']} != translator output dim {translator.out_dim}")
        if info.get("file") and (path / info["file"]).exists():
            from mocha.teacher.pca import PCAArtifact

            pca = PCAArtifact.load(path / info["file"])
            if int(_attr(pca, "dim")) != translator.out_dim:
                raise ConfigError(
                    f"{path}: PCA artifact dim {_attr(pca, 'dim')} != translator output {translator.out_dim}"
                )
    bundle = Bundle(student, translator, pca, config, path, info.get("digest") if info else None)
    if bundle.digest != meta.get("digest"):
        raise ConfigError(f"{path}: tensors do not match the digest recorded in bundle.json (corrupt or edited bundle)")
    if device is not None:
        bundle.to(device)
    return bundle.eval()
