"""The YOLO student: an ultralytics DetectionModel that also exposes the maps feeding its Detect head.

All ultralytics calls of the project's student go through this module, so its API churn stays here.
Checkpoints are one `.safetensors` file whose metadata holds the model YAML and class names; an
ultralytics `.pt` (e.g. a COCO `yolov8n.pt`) loads too. A NanoDet checkpoint (mocha.models.nanodet, told
apart by its metadata) loads as a `NanoDetStudent`, which offers the same interface.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mocha.core.registry import Registry
from mocha.errors import ConfigError
from mocha.models import nanodet
from mocha.models.region_detector import RegionDetector
from mocha.resources import SHIPPED_STUDENTS

DEFAULT_CFG = "yolov8n.yaml"


def _loss_hyperparameters() -> Any:
    from ultralytics.cfg import get_cfg

    return get_cfg()  # box/cls/dfl gains the detection loss reads from model.args


class Student(RegionDetector):
    """YOLO detector + multi-scale region features. Images: (B,3,S,S) RGB in [0,1], S a multiple of 32."""

    has_detection_loss = True

    def __init__(self, model: nn.Module, names: list[str], cfg: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.cfg = cfg
        self.model.names = dict(enumerate(self.names))
        self.model.args = _loss_hyperparameters()
        self.strides, self.feature_dims = self._head_maps()
        self.levels: tuple[int, ...] | None = None  # the head's maps regions pool (None: all of them)

    def _head_maps(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(strides, channels) of every map feeding the detection head."""
        head = self.model.model[-1]
        return tuple(int(s) for s in head.stride.tolist()), tuple(int(m[0].conv.in_channels) for m in head.cv2)

    def pool_levels(self, strides: list[int] | tuple[int, ...]) -> None:
        """Pool regions from the maps of these strides only (a subset of the head's, e.g. (8,): P3 alone). The
        detector is unchanged; `forward` returns the chosen maps, so training, evaluation and the export pool
        them. Why: the coarser maps carry the class more than the instance (docs/ablations.md)."""
        every, dims = self._head_maps()
        want = tuple(sorted({int(s) for s in strides}))
        if not want or any(s not in every for s in want):
            raise ConfigError(f"pool_strides={','.join(map(str, strides))}: choose among this student's map strides "
                              f"{','.join(map(str, every))}")
        self.levels = None if want == every else tuple(every.index(s) for s in want)
        self.strides = want
        self.feature_dims = tuple(dims[every.index(s)] for s in want)

    # ----------------------------------------------------------------- construction / persistence
    @classmethod
    def create(cls, cfg: str | dict = DEFAULT_CFG, names: list[str] | None = None) -> Student:
        """A freshly initialised student from an ultralytics model YAML (name or dict) with len(names) classes."""
        from ultralytics.nn.tasks import DetectionModel

        if not names:
            raise ConfigError("Student.create needs the coarse class names (names=[...])")
        model = DetectionModel(cfg, nc=len(names), verbose=False)
        return cls(model, names, dict(model.yaml))

    @classmethod
    def load(cls, path: str | Path) -> Student | nanodet.NanoDetStudent:
        """Load our `.safetensors` checkpoint (YOLO or NanoDet), an ultralytics `.pt`, or build from a `*.yaml`."""
        path = Path(path)
        if not path.exists() and str(path) in SHIPPED:  # a shipped student by name: `student=nanodet-g`
            return SHIPPED[str(path)]()
        if path.suffix in (".yaml", ".yml") and not path.exists():
            raise ConfigError(f"{path}: a model YAML needs class names; use Student.create(cfg, names)")
        if not path.exists():
            raise ConfigError(
                f"student weights not found: {path}. Give a path to a mocha student (.safetensors, from "
                "`mocha pretrain`), a mocha bundle folder, or an ultralytics .pt you downloaded yourself "
                "(e.g. yolov8n.pt); nothing is downloaded automatically."
            )
        if path.is_dir():
            inner = path / "student.safetensors"
            if not inner.exists() and (path / "bundle.json").exists():  # a bundle referring to a shipped student
                return cls._load_referenced(path)
            if not inner.exists():
                raise ConfigError(f"{path}: folder has no student.safetensors")
            path = inner
        if path.suffix == ".pt":
            return cls._load_ultralytics(path)
        if nanodet.is_nanodet_checkpoint(path):
            return nanodet.NanoDetStudent.load(path)
        return cls._load_safetensors(path)

    @staticmethod
    def _load_referenced(folder: Path) -> nanodet.NanoDetStudent:
        """The shipped student a bundle refers to (`student_ref`), pooled as recorded in its bundle.json."""
        try:
            meta = json.loads((folder / "bundle.json").read_text())
            ref, arch = meta.get("student_ref"), meta.get("student") or {}
        except (OSError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{folder}/bundle.json: unreadable ({exc})") from None
        if ref not in SHIPPED or not isinstance(arch, dict):
            raise ConfigError(f"{folder}: folder has no student.safetensors and its bundle.json refers to no shipped "
                              f"student ({ref!r})")
        return load_referenced(ref, arch)

    @classmethod
    def _load_safetensors(cls, path: Path) -> Student:
        from ultralytics.nn.tasks import DetectionModel

        from mocha.io import read_safetensors

        state, meta = read_safetensors(path, "student checkpoint")
        if "mocha_student" not in meta:
            raise ConfigError(f"{path}: safetensors file has no mocha student metadata")
        try:  # metadata edited or corrupted outside mocha: one error naming the file, not the parser's
            info = json.loads(meta["mocha_student"])
            names = [str(n) for n in info["names"]]
            if not isinstance(info["cfg"], dict) or not names:
                raise TypeError("cfg must be a model YAML mapping and names a non-empty list")
            model = DetectionModel(info["cfg"], nc=len(names), verbose=False)
        except Exception as exc:  # noqa: BLE001 - ultralytics' model builder raises many types on a bad cfg
            raise ConfigError(f"{path}: corrupt mocha student metadata ({type(exc).__name__}: {exc})") from None
        student = cls(model, names, info["cfg"])
        if info.get("pool_strides"):
            student.pool_levels(info["pool_strides"])
        try:
            missing, unexpected = student.model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # tensors of the wrong shape
            raise ConfigError(f"{path}: checkpoint does not match its architecture ({exc})") from None
        if missing or unexpected:
            raise ConfigError(
                f"{path}: checkpoint does not match its architecture "
                f"({len(missing)} missing, {len(unexpected)} unexpected tensors)"
            )
        return student

    @classmethod
    def _load_ultralytics(cls, path: Path) -> Student:
        from ultralytics.nn.tasks import load_checkpoint

        try:
            model, _ = load_checkpoint(str(path), device="cpu", fuse=False)
        except Exception as exc:
            raise ConfigError(f"{path}: cannot load ultralytics checkpoint ({exc})") from None
        model = model.float()
        for p in model.parameters():
            p.requires_grad_(True)
        names = model.names
        names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
        return cls(model, names, dict(model.yaml))

    def save(self, path: str | Path) -> Path:
        """Atomically write a `.safetensors` checkpoint carrying the model YAML and names."""
        from safetensors.torch import save_file

        from mocha.io import atomic_path

        path = Path(path)
        state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        info: dict[str, Any] = {"cfg": self.cfg, "names": self.names}
        if self.levels is not None:
            info["pool_strides"] = list(self.strides)
        meta = {"mocha_student": json.dumps(info), "format": "mocha-student/1"}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
        return path

    def architecture(self) -> dict[str, Any]:
        """What must match between a checkpoint and the code using it."""
        arch = {"cfg": self.cfg, "nc": len(self.names), "feature_dims": list(self.feature_dims)}
        return arch if self.levels is None else {**arch, "pool_strides": list(self.strides)}

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.model.model[-1].parameters())

    def weights_state(self) -> dict[str, Tensor]:
        return self.model.state_dict()  # without the wrapper's `model.` prefix: digests of earlier bundles hold

    def export_predictions(self, raw: Any, size: tuple[int, int]) -> Tensor:
        return raw[0] if isinstance(raw, tuple) else raw  # the Detect head decodes in pixels already

    def dense_outputs(self, raw: Any) -> tuple[Tensor, Tensor]:
        """Train-mode head output (ultralytics' dict of `boxes` (B, 4·reg_max, N) and `scores` (B, C, N))."""
        out = raw[1] if isinstance(raw, tuple) else raw
        if not isinstance(out, dict) or "boxes" not in out or "scores" not in out:
            raise ConfigError("this ultralytics version's Detect head output has no boxes/scores: "
                              "det_loss=self is not available for this student")
        return out["scores"].transpose(1, 2), out["boxes"].transpose(1, 2)

    # ----------------------------------------------------------------- inference
    def forward(self, images: Tensor) -> tuple[list[Tensor], Any]:
        """Run the detector; return the P3/P4/P5 maps feeding the head (those of `pool_levels`) and the raw head
        output."""
        raw = self.model(images)
        out = raw[1] if isinstance(raw, tuple) else raw
        feats = list(out["feats"])
        return (feats if self.levels is None else [feats[i] for i in self.levels]), raw

    def postprocess(self, raw: Any, size: tuple[int, int] | None = None, conf: float = 0.1, iou: float = 0.6,
                    max_det: int = 300) -> list[Tensor]:
        """NMS over the head output → per image (n,6) xyxy, conf, cls in letterboxed pixels (the head decodes in
        pixels already, so `size` is not needed)."""
        from ultralytics.utils.nms import non_max_suppression

        pred = raw[0] if isinstance(raw, tuple) else raw
        if isinstance(pred, dict):  # train-mode output: decode with the head itself
            head = self.model.model[-1]
            pred = head._inference(pred) if hasattr(head, "_inference") else head(pred["feats"])[0]
        return non_max_suppression(pred, conf_thres=conf, iou_thres=iou, max_det=max_det)

    # ----------------------------------------------------------------- training
    def detection_loss(self, raw: Any, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """ultralytics' detection loss: batch needs `batch_idx`, `cls` (n,1), `bboxes` (n,4) normalized xywh."""
        loss, items = self.model.loss(batch, raw)
        if isinstance(items, dict):
            items = torch.stack([torch.as_tensor(v).float().reshape(()) for v in items.values()])
        return loss.sum() if loss.dim() else loss, items



# Student architectures by name → factory(names) -> student: the YOLOs start from random init (stage 1 trains
# them); nanodet-g comes with its shipped COCO-80 weights (names must be those 80, or empty).
STUDENTS: Registry[Any] = Registry("student", option="model")
for _arch, _about in (("yolov8n", "YOLOv8 nano (3.2 M parameters, the default)"), ("yolov8s", "YOLOv8 small"),
                      ("yolo11n", "YOLO11 nano")):
    STUDENTS.register(_arch, lambda names, _cfg=f"{_arch}.yaml": Student.create(_cfg, names=names), help=_about)
STUDENTS.register(nanodet.ARCHITECTURE, nanodet.load_shipped,
                  help="NanoDet-g with real COCO-80 weights (3.8 M parameters, shipped; docs/nanodet.md)")


# Students that come with weights, loadable by name wherever a checkpoint path is accepted (`student=nanodet-g`).
SHIPPED = {nanodet.ARCHITECTURE: nanodet.load_shipped}


def load_referenced(ref: str, arch: dict[str, Any]) -> nanodet.NanoDetStudent:
    """The shipped student `ref` (hash-checked), pooling the maps a bundle's `student` record names: the weights
    are the shipped file's whichever maps a bundle pools."""
    student = SHIPPED[ref]()
    student.set_pooling(arch)
    return student
assert tuple(SHIPPED) == SHIPPED_STUDENTS  # the import-light list the config modules check names against


def list_students() -> list[str]:
    """Architecture names `create_student` (and `mocha pretrain model=<name>`) accepts."""
    return STUDENTS.names()


def create_student(name: str, names: list[str]) -> Student | nanodet.NanoDetStudent:
    """A student of a registered architecture: a fresh YOLO with these coarse names, or the shipped NanoDet-g."""
    return STUDENTS.get(name.removesuffix(".yaml"))(names)
