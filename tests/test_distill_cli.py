"""`mocha distill` verb end to end on a small dataset (targets supplied at the store/PCA seam)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import mocha.distill.targets as targets_mod
from mocha.cli import main
from mocha.models.bundle import load_bundle
from mocha.models.detector import Student
from tests.fixtures_datasets import COARSE, make_mocha_dataset

D_T = 8


@pytest.fixture
def setup(tmp_path, monkeypatch):
    data = make_mocha_dataset(tmp_path / "data", n_images=4)
    torch.manual_seed(0)
    student = Student.create("yolov8n.yaml", names=COARSE).save(tmp_path / "student.safetensors")
    store, pca = tmp_path / "store", tmp_path / "pca"
    store.mkdir()
    pca.write_text("stand-in file; targets come from the seam below")
    calls = []

    def fake_targets(cfg, spec, split, records, pca_obj, required=True):
        calls.append(split)
        if split == "base_val":
            return None  # as if the store held only the train split
        g = torch.Generator().manual_seed(len(records))
        return [torch.randn(len(r.boxes), D_T, generator=g) for r in records]

    monkeypatch.setattr(targets_mod, "load_split_targets", fake_targets)
    monkeypatch.setattr(targets_mod, "open_pca", lambda path: SimpleNamespace(dim=D_T, digest="pca123"))
    args = [f"data={data}", f"store={store}", f"pca={pca}", f"student={student}", "imgsz=64", "batch=2"]
    return tmp_path, args, calls


def test_cli_run_folder_bundle_and_resume(setup, capsys, caplog):
    tmp, args, calls = setup
    project = tmp / "runs"
    main(["distill", *args, "epochs=1", "det_every=2", f"project={project}", "name=demo", "--no-tensorboard"])
    run = project / "demo"
    assert capsys.readouterr().out.strip().endswith(str(run / "best"))
    assert {"config.json", "latest", "best", "metrics.jsonl"} <= {p.name for p in run.iterdir()}
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["val_source"].startswith("base_train[:") and cfg["pca_digest"] == "pca123"
    assert calls == ["base_train", "base_val"]
    b = load_bundle(run)
    assert b.dim == D_T and b.pca is None and b.pca_digest == "pca123" and b.path == run / "best"
    # resume with only the run's name: paths and settings come from its config.json; epochs can't grow
    main(["distill", f"project={project}", "name=demo", "resume=true", "--no-tensorboard"])
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1]
    assert not (project / "demo2").exists()  # resume continues the named folder, never the next free one
    with caplog.at_level("WARNING", logger="mocha.distill.rundir"):
        main(["distill", f"project={project}", "name=demo", "resume=true", "epochs=3", "--no-tensorboard"])
    assert "using the run's saved settings for epochs" in caplog.text
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_cli_bad_input(setup, capsys):
    tmp, args, _ = setup
    other = Student.create("yolov8n.yaml", names=["a", "b"]).save(tmp / "other.safetensors")
    bad = [a if not a.startswith("student=") else f"student={other}" for a in args]
    with pytest.raises(SystemExit) as exc:
        main(["distill", *bad, "epochs=1", f"project={tmp / 'runs'}"])
    assert exc.value.code == 2
    assert "student classes ['a', 'b'] differ from the dataset's" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distill", *args, "imgsz=100", f"project={tmp / 'runs'}"])
    assert "multiple of 32" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distill", "epochs=1"])
    assert "data: required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distill", *args, "lr_student=0"])
    assert "lr_student=0.0: must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distill", *args, "recipe=tund"])
    assert "unknown recipe 'tund'; did you mean 'tuned'?" in capsys.readouterr().err


def test_cli_equals_the_python_call(setup, capsys):
    """`mocha distill k=v ...` and `distill(DistillConfig(k=v, ...))` record the same config.json."""
    from mocha.distill.config import DistillConfig
    from mocha.distill.recipes import TUNED
    from mocha.distill.train import distill

    tmp, args, _ = setup
    project = tmp / "runs"
    opts = {"recipe": "tuned", "epochs": "1", "det_every": "0", "lambda_emb": "0.5", "betas": "0.9,0.99"}
    main(["distill", *args, *(f"{k}={v}" for k, v in opts.items()), f"project={project}", "name=cli",
          "tensorboard=false", "progress=false"])
    kw = dict(a.split("=", 1) for a in args)
    py = DistillConfig(data=Path(kw["data"]), store=Path(kw["store"]), pca=Path(kw["pca"]),
                       student=Path(kw["student"]), imgsz=64, batch=2, recipe="tuned", epochs=1, det_every=0,
                       lambda_emb=0.5, betas=(0.9, 0.99), project=project, name="py", tensorboard=False,
                       progress=False)
    distill(py)
    a = json.loads((project / "cli" / "config.json").read_text())
    b = json.loads((project / "py" / "config.json").read_text())
    assert {k for k in a if a[k] != b[k]} == {"name"}
    # explicit values won, the rest came from the tuned recipe
    assert (a["epochs"], a["det_every"], a["lambda_emb"], a["betas"]) == (1, 0, 0.5, [0.9, 0.99])
    assert (a["lambda_dist"], a["lr_student"], a["recipe"]) == (TUNED.lambda_dist, TUNED.lr_student, "tuned")


def test_help_shows_the_recipe_values(capsys, monkeypatch):
    from mocha.distill.recipes import PAPER, TUNED

    monkeypatch.setenv("COLUMNS", "250")  # one line per option
    main(["distill", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"paper {PAPER.epochs}, tuned {TUNED.epochs}" in text
    assert f"paper {PAPER.lambda_dist:g}, tuned {TUNED.lambda_dist:g}" in text
