"""mocha.distill — stage 2: translator training against teacher targets (see docs/architecture.md).

Public face:
- `config.DistillConfig` — every option of `mocha distill` (`mocha distill k=v` == `distill(DistillConfig(k=v))`)
- `recipes.list_recipes()`, `recipes.get_recipe(name)` — named schedules (`paper`: SPEC, `tuned`: the demo's)
- `train.distill(config) -> Path` — dataset + store + PCA → `<project>/<name>/best`, single process or torchrun
- `train.train(cfg, student, train, val)` — the same on prepared `data.SplitData`
- `losses.dist_loss(pred, target)`, `losses.emb_loss(pred, target, temperature)`
"""
