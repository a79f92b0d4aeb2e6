"""`DemoConfig`: every option of `mocha demo` (`mocha demo k=v` == `run_demo(DemoConfig(k=v))`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mocha.core.config import Config, option
from mocha.data.world.generate import SIZES
from mocha.data.world.textures import PHOTO_SETS, photo_set
from mocha.distill.config import TRANSLATOR_INITS, DistillConfig
from mocha.distill.recipes import PAPER, TUNED
from mocha.errors import ConfigError
from mocha.evaluate.config import KINDS, learner_names
from mocha.personalize.matching import DEFAULT_COARSE_PENALTY

# stage 2 runs the tuned recipe; these options are the ones the demo exposes (the rest come from the recipe)
RECIPE = TUNED


# recipe fields added after demo stage keys existed (absent from a key while at SPEC's value)
_LATER_RECIPE_FIELDS = ("zoom_out", "translator_init", "hflip")


def _plain(v: Any) -> Any:
    """A recipe value as the demo passes it (tuples as lists)."""
    return list(v) if isinstance(v, tuple) else v


_DISTILL_SEED = next(f.default for f in fields(DistillConfig) if f.name == "seed")


@dataclass(kw_only=True)
class DemoConfig(Config):
    """The whole MOCHA recipe on the embedded default world: world → stage 1 → teacher store → PCA → stage 2 →
    stage 3 (student / mocha / teacher / teacher-gt) → neural-collapse probe; then the same student and bundle
    on the personal split of a held-out world (another seed, disjoint photos; nothing is tuned on it).

    Finished stages are reused (content-keyed, under <out>/stages/); writes <out>/report.md, report.json and plots/.
    """

    size: str = option("small", help="world size: " + " | ".join(SIZES), choices=list(SIZES))
    seed: int = option(0, help="world seed")
    imgsz: int = option(256, help="input size", ge=32, multiple_of=32)
    distill_imgsz: int | None = option(None, help="letterbox size of stages 2 and 3 (the stage-1 student is "
                                       "convolutional)", ge=32, multiple_of=32, default_text="imgsz")
    pretrain_epochs: int = option(200, help="stage-1 epochs (the default world's 200-, 150-, 100- and 60-epoch "
                                  "students are shipped, and a 250-epoch one whose last 50 saw the wide photo set; "
                                  "fresh=true retrains, 200 as 100 + 50 + 50)", ge=1)
    teacher: str = option("builtin", help="teacher for the store and the teacher methods")
    # d_t: on the small world (1.7k train regions) 16-32 beat 128; SPEC's 512 suits ~1e5 regions
    dim: int = option(32, help="d_t: PCA components (distillation target dimension)", ge=1)
    epochs: int = option(RECIPE.epochs, help=f"stage-2 distillation epochs ({RECIPE.name} recipe)", ge=1)
    det_every: int = option(RECIPE.det_every, help="every N-th distillation epoch trains the whole student "
                            f"(SPEC reference: {PAPER.det_every}; 0 = never)", ge=0)
    lambda_dist: float = option(RECIPE.lambda_dist, help=f"weight of L_dist (SPEC reference: {PAPER.lambda_dist:g})",
                                ge=0)
    lr_student: float = option(RECIPE.lr_student, help="student learning rate in detection epochs "
                               f"(SPEC reference: {PAPER.lr_student:g})", gt=0)
    lambda_det: float = option(RECIPE.lambda_det, help="weight of L_det in detection epochs (higher keeps more of the "
                               "student's detection quality; SPEC reference: 1)", ge=0)
    lambda_emb: float = option(RECIPE.lambda_emb, help="weight of the relational loss L_emb", ge=0)
    temperature: float = option(RECIPE.temperature, help="L_emb temperature T", gt=0)
    emb_relative: bool = option(RECIPE.emb_relative, help="L_emb temperature = T × the group's mean target distance")
    zoom_out: list[float] = option(list(RECIPE.zoom_out), help="stage 2 also trains on each image shrunk by these "
                                   "factors (same teacher targets; empty: none)", gt=0, lt=1)
    distill_seed: int = option(_DISTILL_SEED, help="stage-2 seed (translator init, batch order)")
    hflip: bool = option(RECIPE.hflip, help="stage 2 also trains on each view mirrored (same teacher targets)")
    translator_init: str = option(RECIPE.translator_init, help="stage-2 translator start: random | ridge (closed "
                                  "form from the stage-1 student's features)", choices=list(TRANSLATOR_INITS))
    pool_bins: int = option(1, help="region features: the box mean (1) or also a b×b grid of the box", ge=1, le=8)
    # P3 alone: the stride-32 maps sit at chance in the within-class probe, and L_dist no longer pulls on the maps
    # the head reads for large objects (docs/ablations.md: mocha as deployed +4.5 / +3.9, seed 43 +5.3 / +6.4, with the
    # conditional learner, +1.4 / +2.5 with the coarse prior; within the noise on the stage-1 boxes)
    pool_strides: list[int] = option([8], help="stage 2 pools regions from the student's maps of these strides only "
                                      "(8: P3 alone; none: all three)", ge=1)
    method: list[str] = option(list(KINDS), help="methods evaluated (comma list of " + " | ".join(KINDS) + ")",
                               choices=list(KINDS))
    # prior: what `mocha detect` deploys; a box the detector put in the wrong coarse class keeps its identity
    # (docs/ablations.md: 1-shot mocha 38.4 → 45.0 default, 35.9 → 41.3 held out; the teacher, prompted with the
    # detected class, unchanged). SPEC's conditional learner: learner=conditional.
    learner: str = option("prior", help="prototype learner: prior (mocha detect's coarse prior) | conditional "
                          "(SPEC's) | flat | simpleshot", choices=learner_names)
    fallback: str = option("drop", help="conditional learner, box of a class without prototypes: drop | all",
                           choices=("drop", "all"))
    coarse_penalty: float = option(DEFAULT_COARSE_PENALTY, help="prior learner: similarity taken off instances of "
                                   "another coarse class than the box's", ge=0)
    episodes: int = option(100, help="episodes per shot count", ge=1)
    probe_episodes: int = option(100, help="episodes of the neural-collapse probe", ge=1)
    shots: list[int] = option([1, 5], help="comma-separated shot counts", ge=1)
    heldout: bool = option(True, help="also evaluate on a held-out world (personal split only: another seed, "
                           "texture/background photos disjoint from the default world's)")
    heldout_seed: int | None = option(None, help="held-out world seed (must differ from seed)",
                                      default_text="seed + 1")
    heldout_photos: str = option("heldout", help=f"held-out photo set: {' | '.join(PHOTO_SETS)} or a comma list "
                                 "(must share no photo with the default world's)")
    out: Path = option(Path("runs/demo"), help="demo folder (its stage cache is reused by later runs)")
    fresh: bool = option(False, help="rerun every stage (and retrain the stage-1 student)")
    progress: bool = option(True, help="progress bars (a line every few seconds when not a terminal)")

    # the default world always draws from the default photo set: the shipped student was trained on it
    photos = "default"

    @property
    def stage2_imgsz(self) -> int:
        """Letterbox size of distillation, evaluation and the probes."""
        return self.imgsz if self.distill_imgsz is None else self.distill_imgsz

    @property
    def heldout_world_seed(self) -> int:
        return self.seed + 1 if self.heldout_seed is None else self.heldout_seed

    def validate(self) -> None:
        """A held-out world that shares the seed or any photo with the default world is refused."""
        super().validate()
        if not self.heldout:
            return
        if self.heldout_world_seed == self.seed:
            raise ConfigError(f"heldout_seed={self.heldout_seed}: the held-out world needs another seed than the "
                              f"default world's (seed={self.seed})")
        shared = sorted(set(photo_set(self.heldout_photos)) & set(photo_set(self.photos)))
        if shared:
            raise ConfigError(f"heldout_photos={self.heldout_photos}: shares {', '.join(shared)} with the default "
                              f"world's photos; give a set disjoint from {self.photos!r} (e.g. heldout)")

    def distill_overrides(self) -> dict[str, Any]:
        """The stage-2 options the demo sets on top of its recipe."""
        d: dict[str, Any] = {"epochs": self.epochs, "det_every": self.det_every, "lambda_dist": self.lambda_dist,
                             "lr_student": self.lr_student, "lambda_emb": self.lambda_emb,
                             "temperature": self.temperature, "emb_relative": self.emb_relative,
                             "imgsz": self.stage2_imgsz, "zoom_out": list(self.zoom_out),
                             "translator_init": self.translator_init, "hflip": self.hflip}
        # only when set: the stage key (recipe values + these) of a run without them stays as it was
        if self.pool_bins != 1:
            d["pool_bins"] = self.pool_bins
        if self.pool_strides:
            d["pool_strides"] = sorted(self.pool_strides)
        if self.lambda_det != RECIPE.lambda_det:
            d["lambda_det"] = self.lambda_det
        if self.distill_seed != _DISTILL_SEED:
            d["seed"] = self.distill_seed
        return d

    def distill_key(self) -> dict[str, Any]:
        """Every stage-2 number of the distill stage's key: the recipe's, then the demo's own options over them."""
        key = {**RECIPE.values(), **self.distill_overrides()}
        for k in _LATER_RECIPE_FIELDS:  # at SPEC's value, a run keeps the key it had before the field existed
            if key[k] == _plain(getattr(PAPER, k)):
                del key[k]
        return key

    def eval_overrides(self) -> dict[str, Any]:
        """The evaluation options that differ from a default demo (part of the evaluation stages' keys)."""
        d: dict[str, Any] = {}
        if list(self.method) != list(KINDS):
            d["method"] = list(self.method)
        if self.learner != "conditional":
            d["learner"] = self.learner
        if self.fallback != "drop":
            d["fallback"] = self.fallback
        if self.learner == "prior":
            d["coarse_penalty"] = self.coarse_penalty
        return d
