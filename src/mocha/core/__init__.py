"""mocha.core — building blocks shared by every stage and by deployment (see docs/architecture.md).

Public face:
- `learners` — prototype learners (conditional / flat / SimpleShot), used by `evaluate` and `personalize`
- `config` — config dataclasses as the one source of truth for options (CLI generated from them)
- `registry.Registry` — the small name → factory registry behind every `list_*()`
- `runs.run_dir` — the one run-folder policy (`project` / `name` / `exist_ok`)
- `progress.progress` — progress bars on terminals, sparse lines elsewhere
- `device` — device choice and torchrun process-group setup
"""
