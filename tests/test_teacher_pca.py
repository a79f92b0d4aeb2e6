"""PCA artifact: fit on the train split only, transform / scale / inverse, save/load, bad dimensions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mocha.errors import ConfigError
from mocha.teacher.pca import PCAArtifact, fit_store_pca
from mocha.teacher.store import EmbeddingStore


def _data(n: int = 200, d: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(6, d, generator=g)
    return (torch.randn(n, 6, generator=g) * torch.tensor([9.0, 5, 3, 2, 1, 0.5])) @ basis + 3.0


def test_transform_matches_numpy_svd_and_unit_variance() -> None:
    x = _data()
    art = PCAArtifact.fit(x, 4)
    xc = x.double().numpy() - x.double().numpy().mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    # same subspace, per-component (sign is arbitrary)
    for k in range(4):
        assert abs(abs(float(np.dot(art.components[k].double().numpy(), vt[k]))) - 1) < 1e-4
    np.testing.assert_allclose(art.scale.numpy(), s[:4] / np.sqrt(len(x) - 1), rtol=1e-4)
    y = art.transform(x)
    assert y.shape == (200, 4)
    np.testing.assert_allclose(y.std(0, unbiased=True).numpy(), np.ones(4), rtol=1e-3)
    np.testing.assert_allclose(y.mean(0).numpy(), np.zeros(4), atol=1e-3)


def test_inverse_reconstructs_within_the_kept_subspace() -> None:
    x = _data()
    art = PCAArtifact.fit(x, 6)  # the data has rank 6: lossless
    torch.testing.assert_close(art.inverse(art.transform(x)), x, atol=1e-3, rtol=1e-4)
    lossy = PCAArtifact.fit(x, 2)
    err = (lossy.inverse(lossy.transform(x)) - x).norm() / (x - x.mean(0)).norm()
    assert 0.05 < float(err) < 0.6


def test_save_load_roundtrip(tmp_path: Path) -> None:
    art = PCAArtifact.fit(_data(), 3, source="abc", teacher_key="k1")
    art.save(tmp_path / "p.safetensors")
    back = PCAArtifact.load(tmp_path / "p.safetensors")
    assert (back.dim, back.teacher_dim, back.source, back.teacher_key) == (3, 40, "abc", "k1")
    assert back.digest == art.digest
    torch.testing.assert_close(back.transform(_data(5, seed=1)), art.transform(_data(5, seed=1)))


def test_bad_dimensions(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="larger than the teacher dimension 40"):
        PCAArtifact.fit(_data(), 41)
    with pytest.raises(ConfigError, match="PCA of 10 vectors has at most 9"):
        PCAArtifact.fit(_data(10), 10)
    art = PCAArtifact.fit(_data(), 3)
    with pytest.raises(ConfigError, match=r"expected \(n, 40\)"):
        art.transform(torch.zeros(2, 39))
    (tmp_path / "junk.safetensors").write_bytes(b"not a pca")
    with pytest.raises(ConfigError, match="not a PCA artifact"):
        PCAArtifact.load(tmp_path / "junk.safetensors")
    with pytest.raises(ConfigError, match="not found"):
        PCAArtifact.load(tmp_path / "missing.safetensors")


def _store(path: Path, vecs: torch.Tensor, splits: dict[str, range]) -> EmbeddingStore:
    s = EmbeddingStore.create_or_open(path, "fake", "key0", vecs.shape[1], {})
    keys = [bytes([i % 256, i // 256]) * 8 for i in range(len(vecs))]
    w = s.writer(flush_every=64)
    w.add(keys, vecs)
    w.flush()
    for name, r in splits.items():
        s.write_split(name, [keys[i] for i in r], {"images": len(r)})
    s.refresh()
    return s


def test_fit_on_train_split_only(tmp_path: Path) -> None:
    x = torch.cat([_data(100), _data(50, seed=5) * 10])  # the "val" rows differ wildly
    _store(tmp_path / "s", x, {"base_train": range(100), "base_val": range(100, 150)})
    art = fit_store_pca(tmp_path / "s", dim=3, split="base_train")
    ref = PCAArtifact.fit(x[:100].half().float(), 3)
    torch.testing.assert_close(art.scale, ref.scale, rtol=1e-3, atol=1e-3)
    assert art.teacher_key == "key0" and art.meta["vectors"] == 100
    again = fit_store_pca(tmp_path / "s", dim=3, split="base_train")
    assert again.source == art.source
    with pytest.raises(ConfigError, match="no key list for split 'train'.*base_train, base_val"):
        fit_store_pca(tmp_path / "s", dim=3, split="train")
    with pytest.raises(ConfigError, match="larger than the teacher dimension 40"):
        fit_store_pca(tmp_path / "s", dim=64, split="base_train")


def test_cli_pca(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mocha.cli import app, rewrite_argv

    _store(tmp_path / "s", _data(), {"base_train": range(200)})
    r = CliRunner().invoke(app, rewrite_argv(["teacher", "pca", f"store={tmp_path / 's'}", "dim=4"]))
    assert r.exit_code == 0, r.output
    assert PCAArtifact.load(tmp_path / "s" / "pca-4.safetensors").dim == 4
    r = CliRunner().invoke(app, rewrite_argv(["teacher", "pca", f"store={tmp_path / 's'}", "dim=500"]))
    assert r.exit_code != 0 and "larger than the teacher dimension" in (r.output + str(r.exception))
