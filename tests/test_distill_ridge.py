"""translator_init=ridge: the closed-form translator start (mocha.distill.ridge) and its place in the trainer."""

from __future__ import annotations

import json

import pytest
import torch

from mocha.distill.config import DistillConfig
from mocha.distill.ridge import fit_ridge, load_ridge
from mocha.distill.train import train
from mocha.errors import ConfigError
from mocha.models.translator import Translator
from tests.test_distill_train import D_T, config, splits, student


def _linear_data(n=300, d=48, out=16, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.linspace(0.2, 5.0, d) + 3.0
    w = torch.randn(out, d, generator=g) / d**0.5
    return x, x @ w.T + 2.0 + noise * torch.randn(n, out, generator=g)


def test_ridge_recovers_a_linear_map_and_the_translator_computes_it_exactly():
    x, y = _linear_data()
    fit = fit_ridge(x[:200], y[:200], x[200:], y[200:], (0.01, 100.0, 10000.0))
    assert fit.alpha == 0.01  # a nearly noise-free map: the smallest penalty validates best
    assert fit.val_dist[0.01] < fit.val_dist[100.0] < fit.val_dist[10000.0]
    assert (fit.predict(x[200:]).float() - y[200:]).abs().mean() < 0.1  # the intercept (2.0) included
    t = Translator(48, 16, heads=4)
    load_ridge(t, fit)
    with torch.no_grad():
        got = t.eval()(x[200:])
    assert (got - fit.predict(x[200:]).float()).abs().max() < 1e-4


def test_ridge_penalty_is_chosen_on_validation_not_training():
    x, y = _linear_data(n=60, noise=2.0)  # few, noisy regions: the least penalty fits train best, not val
    xv, yv = _linear_data(n=400, noise=2.0, seed=0)
    fit = fit_ridge(x, y, xv[60:], yv[60:], (1e-3, 30.0))
    assert fit.alpha == 30.0, fit.val_dist
    assert fit_ridge(x, y, alphas=(5.0, 1e-3)).alpha == 5.0  # without validation: the first


def test_ridge_bad_input():
    x, y = _linear_data(n=40)
    with pytest.raises(ConfigError, match="ridge_alpha"):
        fit_ridge(x, y, alphas=(0.0,))
    x, y = _linear_data(n=10)
    with pytest.raises(ConfigError, match="more training regions than target dimensions"):
        fit_ridge(x, y)  # 10 regions, 16 dimensions
    with pytest.raises(ConfigError, match="epochs=0"):
        DistillConfig(epochs=0)
    with pytest.raises(ConfigError, match="ridge_alpha"):
        DistillConfig(translator_init="ridge", ridge_alpha=[-1.0])


def test_a_narrow_region_vector_carries_a_centred_fit_exactly_and_warns_when_the_intercept_is_lost(caplog):
    # stride4_only: 64-d regions, 128-d targets; the projection's output spans only in_dim directions
    x, y = _linear_data(n=300, d=8)
    y = y - y.mean(0)  # targets of a PCA fitted on the training split: zero mean
    fit = fit_ridge(x, y, alphas=(0.01,))
    t = Translator(8, 16, heads=2)
    with caplog.at_level("WARNING", logger="mocha.distill.ridge"):
        load_ridge(t, fit)
    assert not caplog.records
    with torch.no_grad():
        assert (t.eval()(x) - fit.predict(x).float()).abs().max() < 1e-4
    shifted = fit_ridge(x, y + 2.0, alphas=(0.01,))  # a mean the 8 directions cannot carry
    with caplog.at_level("WARNING", logger="mocha.distill.ridge"):
        load_ridge(t, shifted)
    assert "carries the intercept only up to" in caplog.text


def test_ridge_start_in_the_trainer_is_epoch_zero_and_is_not_refit_on_resume(tmp_path):
    from mocha.models.bundle import load_bundle

    tr, va = splits(tmp_path / "data", n_images=24)
    assert sum(tr.counts) > D_T
    best = train(config(tmp_path, "r0", epochs=0, det_every=0, translator_init="ridge", ridge_alpha=[1.0, 100.0]),
                 student(), tr, va)
    rows = [json.loads(x) for x in (best.parent / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["kind"]) for r in rows] == [(0, "ridge")]
    assert rows[0]["ridge_alpha"] in (1.0, 100.0) and set(rows[0]["ridge_val_dist"]) == {"1", "100"}
    assert rows[0]["best_epoch"] == 0
    # best/ is the ridge fit itself: its translator maps the frozen student's box features to the fit
    b = load_bundle(best)
    s = b.student.eval()
    i = tr.with_regions[0]
    with torch.no_grad():
        feats, _ = s(tr.image(i)[None])
        f = s.region_features(feats, [tr.boxes[i]])
        x_all = torch.cat([s.region_features(s(tr.image(j)[None])[0], [tr.boxes[j]]) for j in tr.with_regions])
        y_all = torch.cat([tr.targets[j] for j in tr.with_regions])
    fit = fit_ridge(x_all, y_all, alphas=(rows[0]["ridge_alpha"],))
    assert torch.allclose(b.translator.eval()(f), fit.predict(f).float(), atol=1e-3)
    assert b.translator.out_dim == D_T

    # then SGD epochs go on from it; a resumed run does not fit again (its epoch-0 row stays the only one)
    class Stop(Exception):
        pass

    def stop(epoch, row):
        if epoch == 1:
            raise Stop

    kw = dict(epochs=2, det_every=0, batch=2, lr_translator=1e-3, translator_init="ridge", ridge_alpha=[1.0])
    with pytest.raises(Stop):
        train(config(tmp_path, "r2", **kw), student(), tr, va, callback=stop)
    train(config(tmp_path, "r2", resume=True, **kw), student(), tr, va)
    rows = [json.loads(x) for x in (tmp_path / "runs/r2/metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["ridge", "translator", "translator"]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
