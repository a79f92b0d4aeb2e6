"""Stage 1 through the CLI on a tiny fixture dataset: the run folder holds our checkpoint and metrics."""

from __future__ import annotations

import json

import pytest

from mocha.cli import main
from mocha.models.detector import Student
from tests.fixtures_datasets import make_mocha_dataset


def test_pretrain_cli_writes_run_folder(tmp_path):
    data = make_mocha_dataset(tmp_path / "ds", n_images=4)
    main(
        [
            "pretrain", f"data={data}", "epochs=1", "imgsz=64", "batch=4", "workers=0",
            f"project={tmp_path / 'runs'}", "name=t",
        ]
    )  # fmt: skip
    run = tmp_path / "runs" / "t"
    info = json.loads((run / "pretrain.json").read_text())
    assert info["config"]["epochs"] == 1 and len(info["sha256"]) == 64
    student = Student.load(run / "student.safetensors")
    assert student.names == ["mug", "ball", "can"]
    assert (run / "ultralytics" / "results.csv").exists()


def test_pretrain_on_instance_split_converts_to_coarse(tmp_path):
    from mocha.student.pretrain import PretrainConfig, pretrain

    data = make_mocha_dataset(tmp_path / "ds", n_images=2)
    out = pretrain(
        PretrainConfig(data=data, train_split="personal", val_split="personal", epochs=1, imgsz=64, batch=8,
                       workers=0, project=tmp_path / "runs", name="p")
    )  # fmt: skip
    labels = sorted((tmp_path / "runs" / "p" / "data" / "personal" / "labels").glob("*.txt"))
    assert len(labels) == 24 and labels[0].read_text().split()[0] in {"0", "1", "2"}
    assert out.exists()


def test_pretrain_unknown_split_is_an_error(tmp_path):
    data = make_mocha_dataset(tmp_path / "ds", n_images=2)
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", f"data={data}", "train_split=nope", f"project={tmp_path}"])
    assert exc.value.code == 2


def test_pretrain_trains_on_the_threads_asked_for(tmp_path, monkeypatch):
    """ultralytics alone resets torch to cpu_count() - 1 threads for CPU training; `threads=` wins."""
    import torch
    from ultralytics.utils import NUM_THREADS
    from ultralytics.utils.callbacks import base

    from mocha.student.pretrain import PretrainConfig, pretrain

    seen: list[int] = []
    monkeypatch.setitem(base.default_callbacks, "on_train_epoch_end", [lambda _: seen.append(torch.get_num_threads())])
    data = make_mocha_dataset(tmp_path / "ds", n_images=2)
    before = torch.get_num_threads()
    try:
        pretrain(PretrainConfig(data=data, epochs=2, imgsz=64, batch=8, workers=0, device="cpu",
                                threads=NUM_THREADS + 1, project=tmp_path / "runs", name="t"))
        assert seen == [NUM_THREADS + 1] * 2
    finally:
        torch.set_num_threads(before)
