"""The three stages wired through the CLI with the real built-in teacher, store and PCA on the tiny world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mocha.cli import main
from mocha.data.world import generate_world
from mocha.models.bundle import load_bundle
from mocha.models.detector import Student
from mocha.teacher.pca import PCAArtifact
from mocha.teacher.store import EmbeddingStore

NAMES = ["mug", "bottle", "ball", "book"]
pytestmark = pytest.mark.timeout(900)  # the first test also builds the world; torchrun runs may take 10 min


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    world = generate_world(root / "world", size="tiny", seed=2, progress=False)
    torch.manual_seed(0)
    student = Student.create("yolov8n.yaml", names=NAMES).save(root / "student.safetensors")
    return {"root": root, "world": world, "student": student, "store": root / "store"}


def _partial_store(world: Path, store: Path, pca: Path, dim: int) -> None:
    """A store holding only base_val, its key list filed (deliberately) as base_train, and a PCA fitted on it."""
    main(["teacher", "extract", f"data={world}", f"out={store}", "split=base_val", "progress=false"])
    (store / "splits" / "base_val.safetensors").rename(store / "splits" / "base_train.safetensors")
    main(["teacher", "pca", f"store={store}", f"dim={dim}", f"out={pca}"])


def _torchrun(args: list[str], port: int) -> None:
    """`torchrun --nproc_per_node=2 -m mocha.cli ARGS` (one thread per rank); fails with the ranks' stderr."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", "-m",
           "mocha.cli", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_extract_pca_distill_evaluate(stage: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    root, world, store = stage["root"], stage["world"], stage["store"]
    main(["teacher", "extract", f"data={world}", f"out={store}", "split=base_train,base_val", "progress=false"])
    out = capsys.readouterr().out
    assert "base_train:" in out and "0 reused" in out
    main(["teacher", "pca", f"store={store}", "dim=16"])
    pca = PCAArtifact.load(store / "pca-16.safetensors")
    assert pca.teacher_dim == 1664 and pca.teacher_key == EmbeddingStore.open(store).teacher_key
    main(["distill", f"data={world}", f"store={store}", f"pca={store / 'pca-16.safetensors'}",
          f"student={stage['student']}", "epochs=2", "det_every=2", "imgsz=64", "batch=4",
          f"project={root / 'runs'}", "name=d", "--no-tensorboard"])
    capsys.readouterr()
    run = root / "runs" / "d"
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["val_source"].startswith("base_val")  # the store covers the validation split
    bundle = load_bundle(run)
    assert bundle.dim == 16 and bundle.pca is not None and bundle.pca.digest == pca.digest
    main(["evaluate", f"data={world}", "method=student,mocha,teacher,teacher-gt", f"detector={stage['student']}",
          f"bundle={run / 'best'}", "teacher=builtin", "shots=1", "episodes=2", "imgsz=64", "conf=0.001",
          "max_det=10", "time_images=1", f"project={root / 'runs'}", "name=ev", "--no-plots", "--no-cache"])
    rep = json.loads((root / "runs" / "ev" / "report.json").read_text())
    assert set(rep["results"]["1"]) == {"student", "mocha", "teacher", "teacher-gt"}
    # the built-in teacher on ground-truth crops identifies instances far above chance (2 per class → 50%)
    assert rep["results"]["1"]["teacher-gt"]["accuracy"] > 60


def test_distill_needs_the_store_to_cover_the_split(stage: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    world = stage["world"]
    store = tmp_path / "partial"
    _partial_store(world, store, tmp_path / "pca", dim=4)
    capsys.readouterr()
    args = ["distill", f"data={world}", f"store={store}", f"pca={tmp_path / 'pca'}", f"student={stage['student']}",
            "epochs=1", "det_every=0", "imgsz=64", "batch=4", f"project={tmp_path / 'runs'}", "--no-tensorboard"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "name=a"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "regions of split 'base_train' have no teacher embedding" in err and "--extract-missing" in err
    main([*args, "name=b", "--extract-missing"])  # the store's own teacher fills the gap, then training runs
    assert len(EmbeddingStore.open(store)) > 13
    # a PCA fitted on another teacher's store is refused
    other = PCAArtifact.load(tmp_path / "pca")
    other.teacher_key = "somethingelse"
    other.save(tmp_path / "pca2")
    with pytest.raises(SystemExit):
        main([*args[:3], f"pca={tmp_path / 'pca2'}", *args[4:], "name=c"])
    assert "fitted on embeddings of teacher key somethingelse" in capsys.readouterr().err


def test_distill_under_torchrun_with_the_real_store(stage: dict[str, Path], tmp_path: Path, free_port: int) -> None:
    world, store = stage["world"], stage["store"]
    if not (store / "store.json").exists():  # run alone: fill the store first
        main(["teacher", "extract", f"data={world}", f"out={store}", "split=base_train,base_val", "progress=false"])
    pca = tmp_path / "pca"
    main(["teacher", "pca", f"store={store}", "dim=8", f"out={pca}"])
    _torchrun(["distill", f"data={world}", f"store={store}", f"pca={pca}", f"student={stage['student']}",
               "epochs=2", "det_every=2", "imgsz=64", "batch=2", f"project={tmp_path / 'runs'}", "name=ddp",
               "--no-tensorboard"], port=free_port)
    run = tmp_path / "runs" / "ddp"
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["translator", "detection"]
    assert all(r["replica_diff"] == 0.0 for r in rows)  # replicas stay identical in both epoch kinds
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert load_bundle(run).dim == 8


def test_extract_missing_under_torchrun(stage: dict[str, Path], tmp_path: Path, free_port: int) -> None:
    """Both ranks extract their shard of the missing regions into one store, then train on it."""
    world = stage["world"]
    store = tmp_path / "partial"
    _partial_store(world, store, tmp_path / "pca", dim=4)
    before = len(EmbeddingStore.open(store))
    _torchrun(["distill", f"data={world}", f"store={store}", f"pca={tmp_path / 'pca'}", f"student={stage['student']}",
               "epochs=1", "det_every=1", "imgsz=64", "batch=2", f"project={tmp_path / 'runs'}", "name=ddp",
               "--no-tensorboard", "--extract-missing"], port=free_port)
    filled = EmbeddingStore.open(store)
    assert len(filled) > before and filled.duplicates == 0
    keys, _ = filled.split_keys("base_train")
    assert all(k in filled for k in keys)  # every training region now has its embedding
    rows = [json.loads(r) for r in (tmp_path / "runs" / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1] and rows[0]["replica_diff"] == 0.0
