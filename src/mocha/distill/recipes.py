"""Named stage-2 recipes: the schedule and optimisation numbers of `mocha distill recipe=<name>`, as data.

`paper` is SPEC's reference schedule; `tuned` is the schedule the demo uses on the small world. A
`DistillConfig` field listed in `RECIPE_FIELDS` defaults to None ("from the recipe") and is filled from the
chosen recipe before validation, so an explicit value always wins: `DistillConfig(recipe="tuned", epochs=3)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mocha.core.registry import Registry


@dataclass(frozen=True)
class Recipe:
    """Every recipe-governed option of stage 2 (field names = `DistillConfig` option names)."""

    name: str
    help: str
    epochs: int
    det_every: int  # every N-th epoch is a detection epoch (whole student, L_det); 0 = never
    batch: int  # images per process and step
    lr_translator: float
    wd_translator: float
    lr_student: float
    wd_student: float
    wd_head: float
    betas: tuple[float, float]
    warmup_iters: int
    warmup_max_frac: float  # ours, not SPEC's: a short run warms up over at most this fraction of it
    warmup_start: float
    lambda_det: float
    lambda_dist: float
    lambda_emb: float
    temperature: float
    emb_relative: bool  # ours, not SPEC's: T × the group's mean target distance (losses.emb_loss)
    zoom_out: tuple[float, ...]  # ours, not SPEC's: shrunk training views keeping their targets (data.zoomed_views)
    hflip: bool  # ours, not SPEC's: mirrored training views keeping their targets (data.mirrored_views)
    translator_init: str  # ours, not SPEC's: "ridge" starts the translator from the closed form (distill.ridge)

    def values(self) -> dict[str, object]:
        """The option values (name and help left out)."""
        return {k: getattr(self, k) for k in RECIPE_FIELDS}


RECIPE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Recipe) if f.name not in ("name", "help"))

# SPEC "Distillation schedule (reference defaults)" and "Losses".
PAPER = Recipe(
    name="paper",
    help="SPEC's reference schedule: 50 epochs, every 4th a detection epoch, all λ 1",
    epochs=50,
    det_every=4,
    batch=16,
    lr_translator=1e-3,
    wd_translator=1e-4,
    lr_student=1e-4,
    wd_student=1e-5,
    wd_head=0.0,
    betas=(0.937, 0.999),
    warmup_iters=1000,
    warmup_max_frac=0.1,
    warmup_start=1e-6,
    lambda_det=1.0,
    lambda_dist=1.0,
    lambda_emb=1.0,
    temperature=1.0,
    emb_relative=False,
    zoom_out=(),
    hflip=False,
    translator_init="random",
)

# Tuned on the small world (README): every epoch a detection epoch with a strong pull on the student. SPEC's
# 1-in-4 schedule at λ_dist 1 left the student's features almost unchanged there (1-shot mAP50-95 5.0;
# λ_dist/lr_student 5/1e-3: 6.2; 10/2e-3: 7.5; 20/5e-3: 8.7). The zoomed views won the ablation study
# (docs/ablations.md: 1-shot mocha 18.3 → 23.8 on the default world, 14.8 → 18.4 held out); 6 epochs of them keep
# the demo inside its 15 minutes. The ridge start of the translator (with the 150-epoch student, 1-shot mocha
# 36.6 → 37.2 default, 31.1 → 33.9 held out; probe 67.1 → 68.7 / 64.3 → 70.1; docs/ablations.md) costs seconds.
# Every view also mirrored, over 4 epochs (a third more steps than 6 without): 37.2 → 38.6 / 33.9 → 35.5 (seed 42),
# 36.3 → 38.8 / 32.6 → 35.5 (seed 43); stage 2 271 → 372 s on the idle 2-core machine.
TUNED = dataclasses.replace(
    PAPER,
    name="tuned",
    help="the demo's: 4 epochs, each a detection epoch, λ_dist 20, lr_student 5e-3, each image also shrunk to 0.5 "
         "and every view mirrored, the translator started from the ridge fit",
    epochs=4,
    det_every=1,
    lambda_dist=20.0,
    lr_student=5e-3,
    zoom_out=(0.5,),
    hflip=True,
    translator_init="ridge",
)

RECIPES: Registry[Recipe] = Registry("recipe", option="recipe")  # type: ignore[type-var]
for _r in (PAPER, TUNED):
    RECIPES.register(_r.name, _r, help=_r.help)

DEFAULT_RECIPE = PAPER.name


def list_recipes() -> list[str]:
    """Names `mocha distill recipe=` accepts."""
    return RECIPES.names()


def get_recipe(name: str) -> Recipe:
    """The recipe called `name` (ConfigError naming the closest one when unknown)."""
    return RECIPES.get(name)


def recipe_default_text(field: str) -> str:
    """What `--help` shows as the default of a recipe-governed option, e.g. `paper 50, tuned 8`."""
    return ", ".join(f"{n} {_fmt(getattr(RECIPES.get(n), field))}" for n in RECIPES.names())


def _fmt(v: object) -> str:
    if isinstance(v, tuple):
        return ",".join(map(_fmt, v)) if v else "none"
    return f"{v:g}" if isinstance(v, float) else str(v)
