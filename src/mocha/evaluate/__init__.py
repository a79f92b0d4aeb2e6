"""mocha.evaluate — stage 3: the episodic benchmark (the learners live in `mocha.core.learners`).

Public face:
- `config.EvalConfig`, `config.MethodSpec`, `config.list_methods()`; `episodic.evaluate(config) -> report dict`
  (writes runs/evaluate/<name>/)
- metrics: `paper_map`, `strict_map`, `top1_accuracy` (mocha.core.metrics, shared with personalize)
- CLI: `mocha evaluate`; benchmarks `mocha bench episodes|prototypes` (mocha.evaluate.bench)
"""

from typing import Any

__all__ = ["EvalConfig", "MethodSpec", "evaluate", "list_methods"]


def __getattr__(name: str) -> Any:  # the evaluator imports torch and the data layer; load it only when asked
    if name in ("EvalConfig", "MethodSpec", "list_methods"):
        from mocha.evaluate import config

        return getattr(config, name)
    if name == "evaluate":
        from mocha.evaluate.episodic import evaluate

        return evaluate
    raise AttributeError(name)
