"""mocha.distill — stage 2: translator training against teacher targets (see docs/architecture.md).

Public face:
- `losses.dist_loss(pred, target)`, `losses.emb_loss(pred, target, temperature)`
- `train.DistillConfig`, `train.distill(config) -> Path` — the SPEC schedule, single process or torchrun
"""
