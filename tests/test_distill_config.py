"""DistillConfig validation: one error naming the option; required inputs unless resume; run-folder switches."""

from __future__ import annotations

import pytest

from mocha.core.device import choose_device
from mocha.distill.config import DistillConfig
from mocha.errors import ConfigError


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": -1}, "epochs=-1: must be >= 0"),
        ({"epochs": 0}, "epochs=0: nothing would be trained"),
        ({"imgsz": 100}, "imgsz=100: must be a multiple of 32"),
        ({"lr_translator": "0"}, "lr_translator=0.0: must be > 0"),
        ({"lambda_dist": -1}, "lambda_dist=-1.0: must be >= 0"),
        ({"batch": "two"}, "batch='two': expected an integer"),
        ({"betas": "0.9"}, "betas=0.9: expected two numbers"),
        ({"betas": "0.9,1.5"}, "betas=1.5: must be < 1"),
        ({"det_every": -1}, "det_every=-1: must be >= 0"),
        ({"exist_ok": True}, "exist_ok=true: conflicts with resume=true"),
        ({"progress": "maybe"}, "progress='maybe': expected true or false"),
    ],
)
def test_bad_values_name_the_option(changes, message):
    with pytest.raises(ConfigError) as exc:
        DistillConfig(resume=True, **changes)
    assert message in str(exc.value)


def test_inputs_are_required_once_the_runs_settings_are_known(tmp_path):
    from mocha.distill.train import distill

    data, student = tmp_path / "data.yaml", tmp_path / "student.safetensors"
    data.write_text("x")
    student.write_text("x")
    with pytest.raises(ConfigError, match=r"^data: required"):
        distill(DistillConfig(project=tmp_path))
    with pytest.raises(ConfigError, match=r"^branch_light=true: needs an embedding branch"):
        distill(DistillConfig(project=tmp_path, branch_light=True))
    with pytest.raises(ConfigError, match=r"^stride4_only=true: conflicts with branch=1"):
        distill(DistillConfig(project=tmp_path, branch=1, stride4_only=True))
    with pytest.raises(ConfigError, match=r"^pca: required"):
        DistillConfig(data=data, store=tmp_path, student=student).check_inputs()
    with pytest.raises(ConfigError, match=r"student=.*missing.safetensors: no such file"):
        DistillConfig(data=data, store=tmp_path, pca=tmp_path, student=tmp_path / "missing.safetensors")
    cfg = DistillConfig(data=str(data), store=tmp_path, pca=tmp_path, student=student)
    cfg.check_inputs()
    assert cfg.data == data
    # resume=true takes them from the run's config.json; without a checkpoint there is nothing to resume
    with pytest.raises(ConfigError, match="nothing to resume"):
        distill(DistillConfig(project=tmp_path, name="none", resume=True))


def test_unknown_keys_suggest_and_json_round_trips(tmp_path):
    with pytest.raises(ConfigError, match="unknown option 'lamda_emb' for `mocha distill`; did you mean 'lambda_emb'"):
        DistillConfig.from_kwargs(resume=True, lamda_emb=1)
    cfg = DistillConfig(resume=True, recipe="tuned", epochs=3, betas="0.9,0.99", project=tmp_path)
    saved = {**cfg.to_dict(), "world_size": 2, "pca_digest": "abc"}  # config.json carries notes too
    again = DistillConfig.from_json(saved)
    assert again == cfg and again.betas == (0.9, 0.99)


def test_choose_device():
    assert choose_device("cpu").type == "cpu"
    assert choose_device(None).type == choose_device("").type == ("cuda" if _cuda() else "cpu")
    if not _cuda():
        with pytest.raises(ConfigError, match="device=cuda: CUDA is not available"):
            choose_device("cuda")
    with pytest.raises(ConfigError, match="device='gpu0': not a torch device"):
        choose_device("gpu0")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
