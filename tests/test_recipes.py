"""Named stage-2 recipes: values from one place, explicit options win, the demo uses the same recipe object."""

from __future__ import annotations

import pytest

from mocha.distill.config import DistillConfig
from mocha.distill.recipes import PAPER, RECIPE_FIELDS, TUNED, get_recipe, list_recipes
from mocha.errors import ConfigError


def governed(cfg: DistillConfig) -> dict:
    """The recipe-governed options of a config, list options as the recipe's tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k in RECIPE_FIELDS for v in [getattr(cfg, k)]}


def test_the_recipes_hold_specs_schedule_and_the_demos():
    assert list_recipes() == ["paper", "tuned"]
    # SPEC "Distillation schedule (reference defaults)" and "Losses"
    assert (PAPER.epochs, PAPER.det_every, PAPER.batch) == (50, 4, 16)
    assert (PAPER.lambda_det, PAPER.lambda_dist, PAPER.lambda_emb, PAPER.temperature) == (1.0, 1.0, 1.0, 1.0)
    assert (PAPER.lr_translator, PAPER.wd_translator, PAPER.lr_student, PAPER.wd_student, PAPER.wd_head) == (
        1e-3, 1e-4, 1e-4, 1e-5, 0.0)
    assert (PAPER.betas, PAPER.warmup_iters, PAPER.warmup_start) == ((0.937, 0.999), 1000, 1e-6)
    # the demo's tuned schedule (README numbers): the paper's with seven changes
    changed = {k: v for k, v in TUNED.values().items() if PAPER.values()[k] != v}
    assert changed == {"epochs": 4, "det_every": 1, "lambda_dist": 20.0, "lr_student": 5e-3, "zoom_out": (0.5,),
                       "hflip": True, "translator_init": "ridge"}
    assert PAPER.hflip is False
    assert PAPER.translator_init == "random"


@pytest.mark.parametrize("recipe", [PAPER, TUNED])
def test_config_takes_every_governed_option_from_the_recipe(recipe):
    cfg = DistillConfig(recipe=recipe.name)
    assert governed(cfg) == recipe.values()
    assert cfg.to_dict()["recipe"] == recipe.name


def test_default_recipe_is_the_paper():
    assert governed(DistillConfig()) == PAPER.values()


def test_explicit_values_win_and_survive_a_change_of_recipe():
    cfg = DistillConfig(recipe="tuned", epochs="3", lambda_emb=0.25)  # CLI strings are coerced
    assert (cfg.epochs, cfg.lambda_emb, cfg.lambda_dist, cfg.det_every) == (3, 0.25, TUNED.lambda_dist, 1)
    assert cfg.from_recipe == set(RECIPE_FIELDS) - {"epochs", "lambda_emb"}
    paper = cfg.replace(recipe="paper")
    assert (paper.epochs, paper.lambda_emb) == (3, 0.25)  # given explicitly: kept
    assert (paper.lambda_dist, paper.det_every, paper.lr_student) == (1.0, 4, PAPER.lr_student)  # from the recipe
    assert cfg.replace(seed=1).lambda_dist == TUNED.lambda_dist


def test_unknown_recipe_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"recipe: unknown recipe 'tunde'; did you mean 'tuned'\?"):
        DistillConfig(recipe="tunde")
    with pytest.raises(ConfigError, match="did you mean 'paper'"):
        get_recipe("papr")


def test_the_demo_builds_stage_2_from_the_tuned_recipe():
    from mocha.demo.config import RECIPE, DemoConfig

    assert RECIPE is TUNED
    demo = DemoConfig()
    assert (demo.epochs, demo.det_every, demo.lambda_dist, demo.lr_student, demo.lambda_emb) == (
        TUNED.epochs, TUNED.det_every, TUNED.lambda_dist, TUNED.lr_student, TUNED.lambda_emb)
    stage2 = DistillConfig(recipe=RECIPE.name, **demo.distill_overrides())
    assert governed(stage2) == TUNED.values()
    # a demo option still overrides the recipe in stage 2
    assert DistillConfig(recipe=RECIPE.name, **DemoConfig(epochs=2).distill_overrides()).epochs == 2
