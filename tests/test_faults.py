"""Faults survived: a full disk during store writes, bundle saves and gallery commits; SIGKILL at a seeded random
point of enrolment, then a rerun reaching the uninterrupted run's gallery rows. (`mocha bench faults` also
kills extraction, distillation, export, the demo and one torchrun rank.)"""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from mocha.bench import faults


@pytest.mark.parametrize("name", list(faults.DISK_FULL))
def test_disk_full_is_a_clear_error_and_the_previous_artifact_is_intact(name, tmp_path):
    result = faults.DISK_FULL[name](tmp_path)
    assert result["ok"], result
    assert "intact" in result["message"] or "as before" in result["message"]


def test_run_and_kill_kills_the_whole_process_group(tmp_path):
    marker = tmp_path / "done"
    child = f"import time; time.sleep(3); open({str(marker)!r}, 'w')"
    (tmp_path / "parent.py").write_text(f"import subprocess, sys, time\n"
                                        f"subprocess.Popen([sys.executable, '-c', {child!r}])\ntime.sleep(30)\n")
    assert faults.run_and_kill([sys.executable, "parent.py"], tmp_path, 1.0)
    subprocess.run([sys.executable, "-c", "import time; time.sleep(3)"], check=True)
    assert not marker.exists()  # the child was killed with its parent
    assert not faults.run_and_kill([sys.executable, "-c", "pass"], tmp_path, 30.0)  # ended before the kill


@pytest.fixture(scope="module")
def enrol_inputs(tmp_path_factory):
    import numpy as np
    import torch
    from PIL import Image

    from mocha.models.bundle import save_bundle
    from mocha.models.detector import Student
    from mocha.models.translator import Translator

    root = tmp_path_factory.mktemp("enrol")
    torch.manual_seed(0)
    student = Student.create("yolov8n.yaml", names=["mug", "ball"])
    bundle = save_bundle(root / "bundle", student, Translator(student.region_dim, 8), None, {"imgsz": 64})
    rng = np.random.default_rng(0)
    images = []
    for k in range(6):
        images.append(root / f"i{k}.png")
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(images[-1])
    return bundle, images


def test_enrolment_killed_at_a_random_point_then_rerun_equals_an_uninterrupted_run(enrol_inputs, tmp_path):
    bundle, images = enrol_inputs
    inp = faults.Inputs(tmp_path, [], 0.0, tmp_path, tmp_path, tmp_path, tmp_path, bundle, images)
    sc = faults.scenarios(inp)["enroll"]
    (point,) = faults.kill_points(sc, tmp_path, 1, random.Random(19))
    assert point.killed and point.recovered, point.detail
    ref = faults.gallery_fingerprint(tmp_path / "enroll-ref" / "me.gallery")
    assert [r[1] for r in ref] == ["thing-0", "thing-1", "thing-2"] and all(r[3] == 2 for r in ref)
