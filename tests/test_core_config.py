"""The config core: coercion, declarative validation, key suggestions, the registry, run folders, progress lines."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from mocha.core.config import Config, option
from mocha.core.progress import LineProgress, progress
from mocha.core.registry import Registry
from mocha.core.runs import resolve_artifact, run_dir
from mocha.errors import ConfigError


@dataclass(kw_only=True)
class ToyConfig(Config):
    """A toy verb."""

    data: Path = option(help="input", exists=True)
    epochs: int = option(3, help="epochs", ge=1)
    lr: float = option(1e-3, help="learning rate", gt=0)
    imgsz: int = option(64, help="size", multiple_of=32)
    mode: str = option("fast", help="mode", choices=("fast", "slow"))
    shots: list[int] = option([1], help="shot counts", ge=1)
    out: Path | None = option(None, help="output")
    save: bool = option(True, help="save")


def test_cli_strings_are_coerced_once(tmp_path):
    cfg = ToyConfig.from_kwargs(data=str(tmp_path), epochs="5", lr="0.5", shots="1,5", out="none", save="false")
    assert cfg.data == tmp_path and cfg.epochs == 5 and cfg.lr == 0.5 and cfg.shots == [1, 5]
    assert cfg.out is None and cfg.save is False
    assert ToyConfig(data=tmp_path, shots=(2, 3)).shots == [2, 3]
    assert ToyConfig.from_kwargs(data=str(tmp_path), shots="none").shots == []  # how --help shows an empty list
    assert ToyConfig(data=tmp_path).to_dict() == {"data": str(tmp_path), "epochs": 3, "lr": 1e-3, "imgsz": 64,
                                                  "mode": "fast", "shots": [1], "out": None, "save": True}


@pytest.mark.parametrize("kw, message", [
    ({"epochs": "0"}, "epochs=0: must be >= 1"),
    ({"epochs": "2.5"}, "epochs='2.5': expected an integer"),
    ({"lr": "0"}, "lr=0.0: must be > 0"),
    ({"lr": "fast"}, "lr='fast': expected a number"),
    ({"imgsz": "100"}, "imgsz=100: must be a multiple of 32"),
    ({"mode": "slw"}, "unknown mode 'slw'; did you mean 'slow'?"),
    ({"shots": "1,0"}, "shots=0: must be >= 1"),
    ({"save": "perhaps"}, "save='perhaps': expected true or false"),
    ({"epoch": "3"}, "unknown option 'epoch'; did you mean 'epochs'?"),
])
def test_bad_values_name_the_option(tmp_path, kw, message):
    with pytest.raises(ConfigError) as exc:
        ToyConfig.from_kwargs(data=tmp_path, **kw)
    assert message in str(exc.value)


def test_missing_and_nonexistent_paths(tmp_path):
    with pytest.raises(ConfigError, match=r"data=\.\.\. is required"):
        ToyConfig.from_kwargs(epochs=2)
    with pytest.raises(ConfigError, match="nope: no such file or folder"):
        ToyConfig(data=tmp_path / "nope")


def test_replace_validates_again(tmp_path):
    cfg = ToyConfig(data=tmp_path)
    assert cfg.replace(epochs=7).epochs == 7
    with pytest.raises(ConfigError, match="epochs=0"):
        cfg.replace(epochs=0)
    with pytest.raises(ConfigError, match="unknown option 'epoch'"):
        cfg.replace(epoch=1)


def test_registry_lookup_and_listing():
    reg: Registry = Registry("widget", option="widget")
    reg.register("alpha", lambda: 1, help="the first")

    @reg.register("beta")
    def beta() -> int:
        """The second."""
        return 2

    assert reg.names() == ["alpha", "beta"] and reg.create("BETA") == 2 and "alpha" in reg
    assert reg.describe() == {"alpha": "the first", "beta": "The second."}
    with pytest.raises(ConfigError, match=r"widget: unknown widget 'alpa'; did you mean 'alpha'\? \(choose one of"):
        reg.get("alpa")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha", lambda: 3)


def test_every_registry_lists_its_names():
    from mocha.bench.core import list_benchmarks
    from mocha.core.learners import list_learners
    from mocha.evaluate.config import list_methods
    from mocha.models.detector import list_students
    from mocha.teacher.registry import list_teachers

    assert list_teachers() == ["builtin", "mobilenetv2", "llava", "clip", "llava+clip"]
    assert list_learners() == ["conditional", "flat", "simpleshot", "prior"]
    assert list_methods() == ["student", "mocha", "teacher", "teacher-gt"]
    assert {"translator", "extract", "episodes", "prototypes", "latency"} <= set(list_benchmarks())
    assert "yolov8n" in list_students()


def test_run_dir_increments_unless_exist_ok(tmp_path):
    assert run_dir(tmp_path, "exp") == tmp_path / "exp"
    (tmp_path / "exp").mkdir()
    assert run_dir(tmp_path, "exp") == tmp_path / "exp2"
    assert run_dir(tmp_path, "exp", exist_ok=True) == tmp_path / "exp"
    run_dir(tmp_path, "exp", mkdir=True)
    assert run_dir(tmp_path, "exp") == tmp_path / "exp3"


def test_resolve_artifact_finds_best(tmp_path):
    (tmp_path / "run" / "best").mkdir(parents=True)
    (tmp_path / "run" / "best" / "bundle.json").write_text("{}")
    assert resolve_artifact(tmp_path / "run", "bundle.json") == tmp_path / "run" / "best"
    assert resolve_artifact(tmp_path / "run" / "best" / "bundle.json", "bundle.json") == tmp_path / "run" / "best"
    assert resolve_artifact(tmp_path / "other", "bundle.json") == tmp_path / "other"


def test_progress_is_sparse_lines_off_a_terminal(monkeypatch):
    buf = io.StringIO()
    bar = LineProgress(total=1000, desc="stage", unit="img", file=buf, every=3600)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stage: 1000/1000 (100%)") and "done in" in lines[0]
    assert "\r" not in buf.getvalue()
    buf = io.StringIO()
    bar = LineProgress(total=3, desc="tick", file=buf, every=0)
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert len(buf.getvalue().splitlines()) == 4  # every update past the interval, then the closing line
    monkeypatch.setenv("MOCHA_PROGRESS_SECONDS", "5")
    assert isinstance(progress(range(3), desc="x", file=io.StringIO()), LineProgress)
    assert list(progress(range(3), desc="x", file=io.StringIO())) == [0, 1, 2]
