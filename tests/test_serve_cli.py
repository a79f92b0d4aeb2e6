"""`mocha serve` options: generated from ServeConfig, localhost by default, one error naming a bad option."""

from __future__ import annotations

import contextlib

import pytest

from mocha.cli import main
from mocha.errors import ConfigError
from mocha.serve.verb import ServeConfig


def test_serve_config_defaults_and_errors(tmp_path):
    cfg = ServeConfig(gallery=tmp_path / "g.gallery", bundle=tmp_path)
    assert (cfg.host, cfg.port, cfg.max_upload_bytes) == ("127.0.0.1", 8000, 20 * 1024 * 1024)
    with pytest.raises(ConfigError, match="gallery does not exist; give bundle="):
        ServeConfig(gallery=tmp_path / "missing.gallery")
    with pytest.raises(ConfigError, match="port"):
        ServeConfig(gallery=tmp_path / "g.gallery", bundle=tmp_path, port="70000")
    with pytest.raises(ConfigError, match="max_upload_mb"):
        ServeConfig(gallery=tmp_path / "g.gallery", bundle=tmp_path, max_upload_mb="0")
    with pytest.raises(ConfigError, match="backend=onnx needs onnx="):
        ServeConfig(gallery=tmp_path / "g.gallery", bundle=tmp_path, backend="onnx")


def test_serve_verb_on_the_cli(tmp_path, capsys):
    with contextlib.suppress(SystemExit):  # click may end --help with exit code 0
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "Serve a web page and a REST API" in out and "--host" in out and "127.0.0.1" in out
    with pytest.raises(SystemExit) as exc:
        main(["serve", f"gallery={tmp_path / 'g.gallery'}", "hots=0.0.0.0"])
    assert exc.value.code == 2 and "host" in capsys.readouterr().err
