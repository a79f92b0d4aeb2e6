"""mocha.evaluate — stage 3: few-shot learners and the episodic benchmark.

Public face:
- learners: re-exported from `mocha.core.learners` (shared with `mocha.personalize`)
- evaluator: `EvalConfig`, `MethodSpec`, `evaluate(config) -> report dict` (writes runs/evaluate/<name>/)
- metrics: `paper_map`, `strict_map`, `top1_accuracy` (mocha.core.metrics)
- CLI: `mocha evaluate`; benchmarks `mocha bench episodes|prototypes` (mocha.evaluate.bench)
"""

from mocha.core.learners import (
    ConditionalLearner,
    FlatLearner,
    PrototypeLearner,
    SimpleShotLearner,
    create_learner,
)

__all__ = [
    "ConditionalLearner",
    "EvalConfig",
    "FlatLearner",
    "MethodSpec",
    "PrototypeLearner",
    "SimpleShotLearner",
    "create_learner",
    "evaluate",
]


def __getattr__(name: str):  # the evaluator imports the data layer; load it only when asked
    if name in ("EvalConfig", "evaluate"):
        from mocha.evaluate import episodic

        return getattr(episodic, name)
    if name == "MethodSpec":
        from mocha.evaluate.methods import MethodSpec

        return MethodSpec
    raise AttributeError(name)
