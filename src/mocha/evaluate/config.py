"""Options of `mocha evaluate` and the methods it compares (light module: the CLI imports it at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mocha.core.config import Config, option
from mocha.core.registry import Registry
from mocha.errors import ConfigError
from mocha.personalize.matching import DEFAULT_COARSE_PENALTY
from mocha.resources import SHIPPED_BUNDLES, SHIPPED_MODELS

# method kind → "module:factory(spec, box_source, device) -> Method"; factories load their artifacts lazily.
METHODS: Registry[str] = Registry("method", option="method")
METHODS.register("student", "mocha.evaluate.methods:student_method", help="pooled f_A of an undistilled detector")
METHODS.register("mocha", "mocha.evaluate.methods:bundle_method", help="a distilled bundle's region embeddings")
METHODS.register("teacher", "mocha.evaluate.methods:teacher_method", help="the teacher on crops of detected boxes")
METHODS.register("teacher-gt", "mocha.evaluate.methods:teacher_method", help="the teacher on ground-truth boxes")
KINDS = tuple(METHODS.names())
AUTO_WORKERS_MIN_EPISODES = 200  # method × episode scorings below which worker processes do not pay off


def list_methods() -> list[str]:
    """Method kinds `mocha evaluate method=...` accepts."""
    return METHODS.names()


@dataclass
class MethodSpec:
    """One method of a run: kind, optional report name, and the artifact it needs (path or name/object)."""

    kind: str
    name: str | None = None
    detector: str | Path | None = None  # student weights (kind "student"; default: the box-source detector)
    bundle: str | Path | None = None  # distilled bundle (kind "mocha")
    teacher: Any = None  # teacher name for create_teacher, or a Teacher object (kinds "teacher", "teacher-gt")

    @property
    def label(self) -> str:
        return self.name or self.kind


def parse_method(token: str, defaults: dict[str, Any]) -> MethodSpec:
    """CLI token → MethodSpec: `student`, `mocha`, `teacher`, `teacher-gt`, or `<kind>:<path or name>`."""
    kind, _, arg = token.strip().partition(":")
    METHODS.get(kind)  # unknown kind → one error with the closest name
    key = {"student": "detector", "mocha": "bundle"}.get(kind, "teacher")
    value = arg or defaults.get(key)
    name = token.strip() if arg else None
    if kind == "mocha" and not value:
        raise ConfigError("method=mocha needs bundle=PATH (or method=mocha:PATH)")
    if kind.startswith("teacher") and not value:
        value = "builtin"
    return MethodSpec(kind, name=name, **{key: value})


def learner_names() -> list[str]:
    """Learner names, read lazily (the learners module imports torch; this one stays light)."""
    from mocha.core.learners import list_learners

    return list_learners()


def learner_options(learner: str, fallback: str, coarse_penalty: float) -> dict[str, Any]:
    """The keyword arguments of `create_learner(learner)` among the evaluation's learner options."""
    if learner == "conditional":
        return {"fallback": fallback}
    return {"coarse_penalty": coarse_penalty} if learner == "prior" else {}


@dataclass(kw_only=True)
class EvalConfig(Config):
    """Episodic few-shot evaluation of one or more methods on the same detector boxes.

    Writes <project>/<name>/report.md (one table), report.json, config.json and plots/; prints the table.
    `detector` is the box source for all methods.
    """

    data: Path = option(help="dataset YAML (ours or a paper layout's)", exists=True)
    method: list[str] = option(["student"], help="comma list of " + " | ".join(KINDS) + ", or kind:PATH/NAME for "
                               "more (e.g. mocha:runs/distill/a/best,teacher:builtin)")
    shots: list[int] = option([1], help="shot counts, e.g. 1,5", ge=1)
    episodes: int = option(100, help="episodes per shot count", ge=1)
    detector: Path | None = option(None, help="box source for all methods: student weights or a bundle folder "
                                   "(default: the first method's own detector); also the `student` method's weights",
                                   exists=SHIPPED_MODELS)
    bundle: Path | None = option(None, help="distilled bundle for the `mocha` method", exists=SHIPPED_BUNDLES)
    teacher: str = option("builtin", help="teacher name for `teacher` / `teacher-gt`")
    learner: str = option("conditional", help="prototype learner: conditional | flat | simpleshot | prior",
                          choices=learner_names)
    fallback: str = option("drop", help="conditional learner, box of a class without prototypes: drop | all",
                           choices=("drop", "all"))
    coarse_penalty: float = option(DEFAULT_COARSE_PENALTY, help="prior learner: similarity taken off instances of "
                                   "another coarse class than the box's (mocha detect's default)", ge=0)
    split: str | None = option(None, help="split to draw episodes from (default: the dataset's)")
    seed: int = option(0, help="episode seed")
    imgsz: int = option(640, help="letterbox size (paper: 672)", ge=32, multiple_of=32)
    conf: float = option(0.1, help="detector confidence threshold for query boxes", ge=0, le=1)
    iou: float = option(0.6, help="NMS IoU", ge=0, le=1)
    max_det: int = option(300, help="max query boxes per image", ge=1)
    time_images: int = option(20, help="images timed per method (after one warm-up image)", ge=0)
    name: str = option("exp", help="run name: <project>/<name>/")
    project: Path = option(Path("runs/evaluate"), help="parent folder of runs")
    exist_ok: bool = option(False, help="replace <project>/<name>/ instead of writing <name>2, <name>3, ...")
    device: str | None = option(None, help="None = CUDA if present else cpu")
    plots: bool = option(True, help="write plots/")
    progress: bool = option(True, help="progress bars / lines")
    cache: bool = option(True, help="keep per-image features under <project>/.cache (resume, reruns)")
    workers: int = option(0, help="processes scoring episodes (0 = auto: 2 with 2+ CPUs and "
                          f"{AUTO_WORKERS_MIN_EPISODES}+ method × episode scorings, else 1)", ge=0)
    threads: int = option(0, help="torch CPU threads (0 = torch default; 1 is fastest on a busy CPU)", ge=0)
    # Python callers may pass MethodSpec objects (e.g. a Teacher instance); otherwise parsed from `method`.
    methods: list[MethodSpec] | None = option(None, help="method objects (Python only)", cli=False)

    def validate(self) -> None:
        super().validate()
        if self.device == "":
            object.__setattr__(self, "device", None)
        if self.methods is None:
            defaults = {"detector": None, "bundle": self.bundle, "teacher": self.teacher}
            specs = [parse_method(t, defaults) for t in self.method if t.strip()]
            object.__setattr__(self, "methods", specs)
        if not self.methods:
            raise ConfigError("method: give at least one method")

    def to_json(self) -> dict[str, Any]:
        """JSON-safe copy (paths and teacher objects as strings)."""

        def plain(v: Any) -> Any:
            return v if v is None or isinstance(v, bool | int | float | str) else str(v)

        d = self.to_dict()
        d["methods"] = [{k: plain(getattr(m, k)) for k in ("kind", "name", "detector", "bundle", "teacher")}
                        for m in self.methods or []]
        return d
