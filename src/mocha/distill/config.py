"""`DistillConfig`: every option of stage 2 (`mocha distill k=v` == `distill(DistillConfig(k=v))`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mocha.core.config import Config, option
from mocha.distill.recipes import DEFAULT_RECIPE, RECIPE_FIELDS, get_recipe, list_recipes
from mocha.distill.recipes import recipe_default_text as _rt
from mocha.errors import ConfigError
from mocha.resources import SHIPPED_STUDENTS

# L_det of detection epochs (mocha.distill.self_distill.resolve_det_loss)
DET_LOSSES = ("auto", "labels", "self", "none")

# How the translator starts (mocha.distill.ridge), and the ridge penalties tried (on standardised features)
TRANSLATOR_INITS = ("random", "ridge")
RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)

# Options that may differ when resuming: they do not change the weights (kept out of the bundle's config).
RUNTIME_FIELDS = frozenset({"resume", "exist_ok", "device", "progress", "tensorboard", "extract_missing", "teacher"})


@dataclass(kw_only=True)
class DistillConfig(Config):
    """Stage 2: distill teacher embeddings into the student + translator (SPEC schedule).

    Writes <project>/<name>/: config.json, latest/ (every epoch, resumable), best/ (lowest validation loss),
    metrics.jsonl and tb/. Prints the best bundle's path.

    An existing run folder gives the next free name (<name>2, ...); exist_ok=true starts over in it; resume=true
    continues it exactly.

    Schedule options default to the recipe's values (recipe=paper: SPEC's reference; recipe=tuned: the demo's).

    Under `torchrun --nproc_per_node=N -m mocha.cli distill ...` it runs on N processes.
    """

    data: Path | None = option(None, help="dataset YAML (required unless resume)", exists=True)
    store: Path | None = option(None, help="teacher embedding store (from `mocha teacher extract`)")
    pca: Path | None = option(None, help="PCA artifact (from `mocha teacher pca`); its dim is d_t")
    student: Path | None = option(None, help="stage-1 student (.safetensors, bundle folder or ultralytics .pt), "
                                  "or a shipped one by name (nanodet-g)", exists=SHIPPED_STUDENTS)
    recipe: str = option(DEFAULT_RECIPE, help="named schedule: " + " | ".join(list_recipes()),
                         choices=list_recipes())
    # --- recipe-governed (None = the recipe's value)
    epochs: int | None = option(None, help="epochs (SPEC: 50, or 20 from an already-distilled student; 0 with "
                                "translator_init=ridge: the closed-form translator alone)", ge=0,
                                default_text=_rt("epochs"))
    det_every: int | None = option(None, help="every N-th epoch trains the whole student with L_det (0 = never)",
                                   ge=0, default_text=_rt("det_every"))
    batch: int | None = option(None, help="images per process and step", ge=1, default_text=_rt("batch"))
    lr_translator: float | None = option(None, help="translator learning rate", gt=0,
                                         default_text=_rt("lr_translator"))
    wd_translator: float | None = option(None, help="translator weight decay", ge=0,
                                         default_text=_rt("wd_translator"))
    lr_student: float | None = option(None, help="student learning rate (detection epochs)", gt=0,
                                      default_text=_rt("lr_student"))
    wd_student: float | None = option(None, help="student weight decay (all but the detection head)", ge=0,
                                      default_text=_rt("wd_student"))
    wd_head: float | None = option(None, help="detection-head weight decay", ge=0, default_text=_rt("wd_head"))
    betas: tuple[float, float] | None = option(None, help="Adam betas, comma-separated", ge=0, lt=1,
                                               default_text=_rt("betas"))
    warmup_iters: int | None = option(None, help="linear warm-up iterations", ge=0,
                                      default_text=_rt("warmup_iters"))
    warmup_max_frac: float | None = option(None, help="a short run warms up over at most this fraction of it",
                                           ge=0, le=1, default_text=_rt("warmup_max_frac"))
    warmup_start: float | None = option(None, help="warm-up starts at this multiple of the lr", ge=0, le=1,
                                        default_text=_rt("warmup_start"))
    lambda_det: float | None = option(None, help="weight of L_det", ge=0, default_text=_rt("lambda_det"))
    lambda_dist: float | None = option(None, help="weight of L_dist", ge=0, default_text=_rt("lambda_dist"))
    lambda_emb: float | None = option(None, help="weight of L_emb", ge=0, default_text=_rt("lambda_emb"))
    temperature: float | None = option(None, help="L_emb temperature T", gt=0, default_text=_rt("temperature"))
    emb_relative: bool | None = option(None, help="L_emb temperature = T × the group's mean target distance",
                                       default_text=_rt("emb_relative"))
    # --- data and model
    imgsz: int = option(256, help="square letterbox size", ge=32, multiple_of=32)
    train_split: str = option("base_train", help="split to distill on")
    val_split: str = option("base_val", help="split whose first val_images images choose best/")
    val_images: int = option(200, help="size of the fixed validation subset (first N images, sorted by path)", ge=1)
    zoom_out: list[float] | None = option(None, help="also train on each image shrunk by these factors inside the "
                                          "letterbox, with the same teacher targets (e.g. 0.5,0.3: close-ups and wide "
                                          "shots alike)", gt=0, lt=1, default_text=_rt("zoom_out"))
    hflip: bool | None = option(None, help="also train on each image mirrored left-right, with the same teacher "
                                "targets (after zoom_out: its views are mirrored too)", default_text=_rt("hflip"))
    pool_bins: int = option(1, help="region features: the box mean (1, SPEC) or also means over a b×b grid of "
                            "the box, which the translator attends to", ge=1, le=8)
    heads: int | None = option(None, help="translator attention heads (must divide the student's token dim)", ge=1,
                               default_text="token dim / 32: 14 for YOLOv8n, 12 for NanoDet-g")
    det_loss: str = option("auto", help="L_det of detection epochs: labels (the student's own loss on the boxes) | "
                           "self (distil its frozen outputs, keeping its detections) | none | auto (labels when the "
                           "student has that loss, else self; none with branch=, whose detector is frozen)",
                           choices=DET_LOSSES)
    branch: int = option(0, help="nanodet-g: pool regions from an embedding branch, a trainable copy of the last N "
                         "CSP stages and the neck, while the detector stays exactly as loaded (0: its own maps)",
                         ge=0, le=4)
    branch_light: bool = option(False, help="with branch=: copy less (the first copied stage keeps the detector's "
                                "strided input conv; the neck only at the levels the branch changes, added to the "
                                "detector's maps) — a cheaper second pass")
    stride4: bool = option(False, help="nanodet-g: also pool regions from its first CSP stage (64 channels at "
                           "stride 4, which keep colour and texture): a 448-d region vector")
    pool_strides: list[int] | None = option(None, help="YOLO students: pool regions from the head's maps of these "
                                            "strides only (e.g. 8: P3 alone); default all", ge=1,
                                            default_text="all (8,16,32)")
    stride4_only: bool = option(False, help="nanodet-g: pool regions from that stride-4 map alone, not the PAN "
                                "(a 64-d region vector; implies stride4)")
    translator_init: str | None = option(None, help="translator start: random (SPEC) | ridge (closed-form ridge "
                                         "regression from the frozen student's region features to the targets; "
                                         "mocha.distill.ridge)", choices=TRANSLATOR_INITS,
                                         default_text=_rt("translator_init"))
    ridge_alpha: list[float] = option(list(RIDGE_ALPHAS), help="ridge penalties tried by translator_init=ridge "
                                      "(standardised features); the lowest validation L_dist wins", gt=0)
    emb_group: int = option(0, help="images per L_emb group; 0 = the per-process batch", ge=0)
    seed: int = option(42, help="random seed")
    # --- run folder
    project: Path = option(Path("runs/distill"), help="parent folder of runs")
    name: str = option("distill", help="run name: <project>/<name>/")
    exist_ok: bool = option(False, help="start over in an existing <project>/<name>/ (else: the next free name)")
    resume: bool = option(False, help="continue the run in <project>/<name>/ exactly (from latest/, with the "
                          "settings its config.json recorded)")
    # --- runtime
    extract_missing: bool = option(False, help="run the teacher for regions missing from the store (else: error)")
    teacher: str | None = option(None, help="teacher for extract_missing (default: the store's)")
    skip_nonfinite: bool = option(False, help="skip (and count/log) batches with a NaN/inf loss instead of stopping")
    device: str | None = option(None, help="'' = cuda:<LOCAL_RANK> if present, else cpu")
    progress: bool = option(True, help="progress bars (a line every few seconds when not a terminal)")
    tensorboard: bool = option(True, help="write TensorBoard scalars to <run>/tb")

    verb = "distill"

    def __post_init__(self) -> None:
        # fill the recipe's values before coercion and validation, remembering which came from it
        recipe = get_recipe(str(self.recipe))
        filled = frozenset(k for k in RECIPE_FIELDS if getattr(self, k) is None)
        for k in filled:
            object.__setattr__(self, k, getattr(recipe, k))
        object.__setattr__(self, "recipe", recipe.name)
        self._from_recipe = filled
        super().__post_init__()

    @property
    def from_recipe(self) -> frozenset[str]:
        """The options this config took from its recipe (not given explicitly)."""
        return self._from_recipe

    def validate(self) -> None:
        super().validate()
        if self.betas is not None and len(self.betas) != 2:
            raise ConfigError(f"betas={','.join(map(str, self.betas))}: expected two numbers (beta1,beta2)")
        if self.epochs == 0 and self.translator_init != "ridge":
            raise ConfigError("epochs=0: nothing would be trained; give epochs >= 1, or translator_init=ridge for "
                              "the closed-form translator alone")
        if self.resume and self.exist_ok:
            raise ConfigError("exist_ok=true: conflicts with resume=true (start over or continue, not both)")

    def check_inputs(self) -> None:
        """The four inputs `distill` reads. Checked once the run's saved settings are known (resume=true takes them
        from config.json), so a config for `train` on prepared splits, or for a resume, may leave them out."""
        for key in ("data", "store", "pca", "student"):
            if getattr(self, key) is None:
                raise ConfigError(f"{key}: required (unless resume=true continues a run that recorded it)")

    def replace(self, **changes: Any) -> DistillConfig:
        """A copy with some options changed; a new `recipe` also re-fills the options taken from the old one."""
        if "recipe" in changes:
            changes = {**{k: None for k in self.from_recipe}, **changes}
        return super().replace(**changes)

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> DistillConfig:
        """The config a run recorded in its config.json (extra keys such as world_size are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})
