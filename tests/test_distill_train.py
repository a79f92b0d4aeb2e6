"""Stage-2 training loop: schedule, run folder, exact resume, non-finite handling, torchrun (gloo)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mocha.data.dataset import load_dataset
from mocha.data.loader import DetectionDataset
from mocha.data.records import read_split
from mocha.distill import schedule
from mocha.distill.config import DistillConfig
from mocha.distill.data import epoch_plan, make_split
from mocha.distill.train import train
from mocha.distill.trainer import NonFiniteLoss
from mocha.models.detector import Student
from tests.fixtures_datasets import COARSE, make_mocha_dataset

D_T = 16


def synthetic_targets(records, seed=0):
    """Fixed per-box targets (a stand-in for PCA-reduced teacher embeddings)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(len(r.boxes), D_T, generator=g) for r in records]


def splits(root: Path, n_images=8, imgsz=64, build=True):
    spec = load_dataset(make_mocha_dataset(root, n_images=n_images) if build else root / "data.yaml")
    out = []
    for name, seed in (("base_train", 0), ("base_val", 1)):
        recs = read_split(spec, name)
        out.append(make_split(DetectionDataset(recs, imgsz), synthetic_targets(recs, seed)))
    return out


def student():
    torch.manual_seed(0)
    return Student.create("yolov8n.yaml", names=COARSE)


def config(tmp: Path, name: str, **kw) -> DistillConfig:
    """A config for `train` on prepared splits (no input paths: `train` gets the data and student as objects)."""
    base = dict(
        project=tmp / "runs",
        name=name,
        epochs=3,
        det_every=2,
        batch=4,
        imgsz=64,
        warmup_iters=2,
        progress=False,
        tensorboard=False,
        val_images=4,
    )
    return DistillConfig(**(base | kw))


def tensors(bundle: Path) -> dict[str, torch.Tensor]:
    out = {f"s.{k}": v for k, v in load_file(str(bundle / "student.safetensors")).items()}
    out |= {f"t.{k}": v for k, v in load_file(str(bundle / "translator.safetensors")).items()}
    return out


def test_schedule_pieces():
    assert [e for e in range(1, 13) if schedule.is_detection_epoch(e, 4)] == [4, 8, 12]
    assert not schedule.is_detection_epoch(4, 0)
    assert schedule.lr_factor(0, 100, 10) == pytest.approx(1e-6, rel=1e-3)
    assert schedule.lr_factor(10, 100, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.1)))
    assert schedule.lr_factor(100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert schedule.warmup_iters(200, 1000, 0.1) == 20 and schedule.warmup_iters(20_000, 1000, 0.1) == 1000
    s = Student.create("yolov8n.yaml", names=COARSE)
    from mocha.models.translator import Translator

    groups = schedule.param_groups(s, Translator(448, 8), 1e-3, 1e-4, 1e-4, 1e-5, 0.0)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [
        ("translator", 1e-3, 1e-4),
        ("student_head", 1e-4, 0.0),
        ("student", 1e-4, 1e-5),
    ]
    n_student = sum(p.numel() for g in groups[1:] for p in g["params"])
    assert n_student == sum(p.numel() for p in s.parameters())
    # plans: a permutation of the indices per epoch, identical for any world size's global batch
    one = epoch_plan(list(range(10)), 3, 42, 4, 1)
    two = epoch_plan(list(range(10)), 3, 42, 2, 2)
    assert [sum(st, []) for st in one] == [sum(st, []) for st in two]
    assert sorted(sum(sum(one, []), [])) == list(range(10))
    assert epoch_plan(list(range(10)), 4, 42, 4, 1) != one


def test_run_folder_and_exact_resume(tmp_path):
    tr, va = splits(tmp_path / "data")
    best = train(config(tmp_path, "full", tensorboard=True), student(), tr, va)
    run = best.parent
    assert best == run / "best" and (run / "latest" / "train_state.json").exists()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["translator", "detection", "translator"]
    assert all(math.isfinite(r["val_loss"]) and r["regions_per_s"] > 0 for r in rows)
    assert rows[1]["loss_det"] > 0 and rows[0]["loss_det"] == 0
    assert rows[-1]["best"] == min(r["val_loss"] for r in rows)
    assert json.loads((run / "config.json").read_text())["det_every"] == 2
    assert list((run / "tb").glob("events.out.tfevents*"))

    class Stop(Exception):
        pass

    def stop_after_first(epoch, row):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train(config(tmp_path, "cut"), student(), tr, va, callback=stop_after_first)
    train(config(tmp_path, "cut", resume=True), student(), tr, va)
    a, b = tensors(run / "latest"), tensors(tmp_path / "runs" / "cut" / "latest")
    assert a.keys() == b.keys()
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff < 1e-6, diff
    cfg_a = json.loads((run / "latest" / "bundle.json").read_text())["config"]
    cfg_b = json.loads((tmp_path / "runs" / "cut" / "latest" / "bundle.json").read_text())["config"]
    assert {k for k in cfg_a if cfg_a[k] != cfg_b[k]} == {"name"}  # resume flags stay out
    rows_b = [json.loads(x) for x in (tmp_path / "runs" / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows_b] == [1, 2, 3]
    assert rows_b[-1]["val_loss"] == pytest.approx(rows[-1]["val_loss"], rel=1e-5)


def test_translator_epochs_learn_the_targets(tmp_path):
    tr, va = splits(tmp_path / "data")
    train(config(tmp_path, "learn", epochs=6, det_every=0, batch=2, lr_translator=3e-3), student(), tr, va)
    rows = [json.loads(x) for x in (tmp_path / "runs/learn/metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss_dist"] < 0.8 * rows[0]["loss_dist"], [r["loss_dist"] for r in rows]


def test_grid_pooled_distillation_learns_and_its_bundle_reads_the_grid(tmp_path):
    from mocha.models.bundle import load_bundle

    tr, va = splits(tmp_path / "data")
    best = train(config(tmp_path, "grid", epochs=6, det_every=0, batch=2, lr_translator=3e-3, pool_bins=2),
                 student(), tr, va)
    rows = [json.loads(x) for x in (tmp_path / "runs/grid/metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss_dist"] < 0.8 * rows[0]["loss_dist"], [r["loss_dist"] for r in rows]
    bundle = load_bundle(best)
    assert bundle.config["pool_bins"] == 2 and bundle.translator.tokens == 5
    assert bundle.student.region_dim == 5 * 448 and bundle.translator.in_dim == 448
    images = torch.stack([tr.image(i) for i in range(2)])
    boxes = [torch.tensor([[4.0, 4.0, 40.0, 30.0]]), torch.tensor([[10.0, 12.0, 60.0, 60.0]])]
    assert bundle.embed_boxes(images, boxes).shape == (2, D_T)


def test_run_folder_increment_exist_ok_and_resume_checks(tmp_path):
    from mocha.errors import ConfigError

    tr, va = splits(tmp_path / "data", n_images=4)
    runs = tmp_path / "runs"
    assert train(config(tmp_path, "r", epochs=1, det_every=0), student(), tr, va) == runs / "r" / "best"
    # the same name again: the next free folder, recording its real name; the first run is untouched
    first = (runs / "r" / "metrics.jsonl").read_text()
    assert train(config(tmp_path, "r", epochs=1, det_every=0), student(), tr, va) == runs / "r2" / "best"
    assert json.loads((runs / "r2" / "config.json").read_text())["name"] == "r2"
    assert (runs / "r" / "metrics.jsonl").read_text() == first
    # exist_ok: start over in it (the old run's files are gone, not mixed in)
    (runs / "r" / "skipped.log").write_text("from the old run\n")
    train(config(tmp_path, "r", epochs=2, det_every=0, exist_ok=True), student(), tr, va)
    assert [json.loads(x)["epoch"] for x in (runs / "r" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert not (runs / "r" / "skipped.log").exists() and not (runs / "r3").exists()
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(config(tmp_path, "none", resume=True), student(), tr, va)
    other = Student.create("yolov8s.yaml", names=COARSE)
    with pytest.raises(ConfigError, match="architecture"):
        train(config(tmp_path, "r", epochs=3, det_every=0, resume=True), other, tr, va)


def test_split_without_boxes_is_an_error(tmp_path):
    from mocha.errors import ConfigError

    tr, va = splits(tmp_path / "data", n_images=4)
    empty = dataclasses.replace(tr, boxes=[b[:0] for b in tr.boxes], targets=[t[:0] for t in tr.targets])
    with pytest.raises(ConfigError, match="has no boxes"):
        train(config(tmp_path, "empty", epochs=1), student(), empty, va)
    with pytest.raises(ConfigError, match="2 boxes but 0 teacher targets"):
        make_split(tr.dataset, [t[:0] for t in tr.targets])


def test_nonfinite_loss_stops_or_skips(tmp_path):
    tr, va = splits(tmp_path / "data", n_images=4)
    tr.targets[tr.with_regions[0]][0, 0] = float("nan")
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss at epoch 1 step \d+"):
        train(config(tmp_path, "nan", epochs=1, det_every=0), student(), tr, va)
    train(config(tmp_path, "skip", epochs=1, det_every=0, skip_nonfinite=True), student(), tr, va)
    run = tmp_path / "runs" / "skip"
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert row["skipped"] == 1 and "non-finite loss" in (run / "skipped.log").read_text()
    assert all(torch.isfinite(v).all() for v in tensors(run / "latest").values())


WORKER = """
import sys, json, torch
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.test_distill_train import splits, student, config
from mocha.distill.train import train
torch.set_num_threads(1)
tmp = Path({tmp!r})
tr, va = splits(tmp / "data", build=False)
train(config(tmp, {name!r}, batch={batch}, emb_group={group}, epochs={epochs}, det_every={det}), student(), tr, va)
import torch.distributed as d
"""


def run_worker(tmp: Path, name: str, nproc: int, batch: int, group: int, epochs: int, det: int) -> None:
    script = tmp / f"{name}.py"
    root = str(Path(__file__).resolve().parents[1])
    script.write_text(
        textwrap.dedent(
            WORKER.format(root=root, tmp=str(tmp), name=name, batch=batch, group=group, epochs=epochs, det=det)
        )
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = (
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone", str(script)]
        if nproc > 1
        else [sys.executable, str(script)]
    )
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.timeout(900)  # four training runs of up to 180 s each
def test_torchrun_two_processes_match_single_process(tmp_path):
    splits(tmp_path / "data")  # build the dataset once
    run_worker(tmp_path, "ddp", nproc=2, batch=2, group=0, epochs=2, det=2)
    run_worker(tmp_path, "single", nproc=1, batch=4, group=2, epochs=2, det=2)
    ddp = json.loads((tmp_path / "runs" / "ddp" / "config.json").read_text())
    assert ddp["world_size"] == 2
    # every epoch kind keeps the replicas bit-identical (checked across ranks after each epoch)
    assert all(
        json.loads(x)["replica_diff"] == 0.0 for x in (tmp_path / "runs/ddp/metrics.jsonl").read_text().splitlines()
    )
    a = [json.loads(x) for x in (tmp_path / "runs" / "ddp" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "runs" / "single" / "metrics.jsonl").read_text().splitlines()]
    # translator epoch: the same computation split over two processes
    assert a[0]["loss_dist"] == pytest.approx(b[0]["loss_dist"], rel=1e-5)
    assert a[0]["loss_emb"] == pytest.approx(b[0]["loss_emb"], rel=1e-5)
    assert a[0]["val_loss"] == pytest.approx(b[0]["val_loss"], rel=1e-5)
    # detection epoch: per-process BatchNorm statistics and ultralytics' per-batch loss normalisation make
    # it close, not identical (as in ultralytics' own DDP training)
    assert a[1]["loss_dist"] == pytest.approx(b[1]["loss_dist"], rel=0.1)
    assert a[1]["val_loss"] == pytest.approx(b[1]["val_loss"], rel=0.1)
    # the same name again under torchrun: rank 0 picks the next free folder and both ranks train in it
    run_worker(tmp_path, "ddp", nproc=2, batch=2, group=0, epochs=2, det=0)
    again = tmp_path / "runs" / "ddp2"
    assert json.loads((again / "config.json").read_text())["name"] == "ddp2"
    assert [json.loads(x)["replica_diff"] for x in (again / "metrics.jsonl").read_text().splitlines()] == [0.0, 0.0]
    assert not (tmp_path / "runs" / "ddp3").exists()
    # the FINAL weights of two translator epochs, 2 processes vs 1: the same math, summed in another order (each
    # rank's half-batch gradient, then one all-reduce, vs one backward over the whole batch), so float32 rounding
    # (~1e-7 relative per step) is the only difference: the translator as a whole within 1e-5 (relative norm).
    # AdamW divides each element's step by its own gradient RMS, which can enlarge the rounding of an element
    # whose gradient is tiny (seen: 1e-5), so single elements get 1e-4, still below one step (lr ~5e-4).
    run_worker(tmp_path, "single2", nproc=1, batch=4, group=2, epochs=2, det=0)
    a, b = tensors(again / "latest"), tensors(tmp_path / "runs" / "single2" / "latest")
    assert a.keys() == b.keys()
    init = {f"s.{k}": v for k, v in student().model.state_dict().items()}
    for k in (k for k in a if k.startswith("s.")):  # frozen in translator epochs: bit for bit the initial weights
        assert torch.equal(a[k], b[k]) and torch.equal(a[k], init[k]), k
    ta, tb = (torch.cat([t[k].double().reshape(-1) for k in sorted(a) if k.startswith("t.")]) for t in (a, b))
    assert len(ta) > 100_000 and (ta - tb).norm() <= 1e-5 * tb.norm(), float((ta - tb).norm() / tb.norm())
    assert (ta - tb).abs().max() <= 1e-4, float((ta - tb).abs().max())


def test_zoomed_views_keep_targets_and_move_boxes_with_the_pixels(tmp_path):
    from mocha.distill.data import zoomed_views

    tr, _ = splits(tmp_path / "data", n_images=4)
    out = zoomed_views(tr, [0.5])
    n = len(tr.with_regions)
    assert len(out.targets) == len(tr.targets) + n and out.counts[: len(tr.counts)] == tr.counts
    i, v = tr.with_regions[0], len(tr.targets)  # the first image with boxes and its view
    assert torch.equal(out.targets[v], tr.targets[i])
    assert torch.allclose(out.boxes[v], tr.boxes[i] * 0.5 + 16)  # 64 px letterbox: a 32 px view at offset 16
    x1, y1, x2, y2 = tr.boxes[i][0].round().int().tolist()
    orig = tr.image(i)[:, y1:y2, x1:x2].mean((1, 2))
    a1, b1, a2, b2 = out.boxes[v][0].round().int().tolist()
    view = out.image(v)[:, b1:b2, a1:a2].mean((1, 2))
    assert (orig - view).abs().max() < 0.08  # the same object's colour where the box now is
    assert out.image(v)[:, :8, :8].sub(114 / 255).abs().max() < 1e-6  # grey around the shrunk image
    assert zoomed_views(tr, []) is tr


def test_mirrored_views_keep_targets_and_mirror_boxes_with_the_pixels(tmp_path):
    from mocha.distill.data import mirrored_views
    from mocha.models.pooling import pool_regions

    tr, _ = splits(tmp_path / "data")
    out = mirrored_views(tr)
    n, keep = len(tr.dataset), tr.with_regions
    assert len(out.dataset) == n + len(keep) and out.targets[:n] == tr.targets
    for k, i in enumerate(keep):
        j = n + k
        assert torch.equal(out.targets[j], tr.targets[i]) and out.dataset.records[j] is tr.dataset.records[i]
        assert torch.equal(out.images[j], tr.images[i].flip(-1))
        # the mirrored box covers the mirrored pixels: the same per-channel mean of the image inside it
        a = pool_regions([tr.image(i)[None]], [tr.boxes[i]], (1,))
        b = pool_regions([out.image(j)[None]], [out.boxes[j]], (1,))
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        assert (out.boxes[j][:, 2] > out.boxes[j][:, 0]).all()
