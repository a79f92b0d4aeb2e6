"""A NanoDet-g bundle end to end on real photos: torch vs ONNX export, and enrol → detect through the Personalizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mocha.data.images import letterbox
from mocha.export.onnx_export import export_onnx
from mocha.export.onnx_runner import OnnxEngine
from mocha.models.bundle import save_bundle
from mocha.models.nanodet import load_shipped
from mocha.models.translator import Translator
from mocha.personalize.engine import TorchEngine
from mocha.personalize.personalizer import Personalizer
from tests.test_export_parity import photos

IMGSZ = 416
DIM = 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from mocha.teacher.pca import PCAArtifact

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("nanodet_bundle")
    g = torch.Generator().manual_seed(5)
    translator = Translator(384, DIM, heads=12)
    with torch.no_grad():  # nothing at its identity value, so an export that dropped a step would not match
        translator.mu.copy_(torch.randn(384, generator=g))
        translator.sigma.copy_(0.5 + 1.5 * torch.rand(384, generator=g))
    pca = PCAArtifact.fit(torch.randn(300, 64, generator=g) * torch.linspace(3.0, 0.2, 64), DIM)
    bundle = save_bundle(root / "bundle", load_shipped().eval(), translator.eval(), pca, {"imgsz": IMGSZ})
    yield root, bundle, export_onnx(bundle, root / "onnx")
    torch.set_num_threads(threads)


def test_onnx_export_matches_torch_on_real_photos(setup):
    _, bundle, onnx = setup
    pt, ox = TorchEngine.load(bundle, device="cpu"), OnnxEngine(onnx, threads=1)
    assert pt.imgsz == ox.imgsz == IMGSZ and ox.names == pt.names and len(pt.names) == 80
    for img in photos()[:3]:
        lb_img, _ = letterbox(img, IMGSZ)
        d_pt, m_pt = pt.detect(lb_img, conf=0.05, max_det=50)
        d_ox, m_ox = ox.detect(lb_img, conf=0.05, max_det=50)
        assert len(d_pt) == len(d_ox) > 0
        assert np.abs(d_pt[:, :4] - d_ox[:, :4]).max() <= 1e-3 and np.abs(d_pt[:, 4] - d_ox[:, 4]).max() <= 1e-5
        assert np.array_equal(d_pt[:, 5], d_ox[:, 5])
        assert np.abs(m_pt - m_ox).max() <= 1e-4 * max(1.0, np.abs(m_pt).max())


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_enrol_a_person_and_find_them_again(setup, backend, tmp_path):
    root, bundle, onnx = setup
    bus = photos()[0]
    p = Personalizer.load(bundle if backend == "torch" else onnx, gallery=tmp_path / "g.gallery", backend=backend)
    r = p.detect(bus)
    is_person = np.array([p.names[int(k)] == "person" for k in r.boxes.cls])
    person = int(np.argmax(np.where(is_person, r.boxes.conf, -1)))
    box = r.boxes.xyxy[person].tolist()
    p.enroll("the-driver", bus, boxes=[box])  # the coarse class comes from the detector: person
    found = p.detect(bus)
    named = [i for i in range(len(found.boxes)) if found.instance_name(i) == "the-driver"]
    assert named and max(found.boxes.similarity[named]) > 0.99


def test_an_unchanged_shipped_student_is_referenced_not_copied(setup, tmp_path):
    from mocha.models.bundle import load_bundle

    _, bundle, _ = setup
    assert not (bundle / "student.safetensors").exists()  # 15 MB saved per bundle and checkpoint
    b = load_bundle(bundle)
    assert b.student.shipped_as is not None and b.student.weights_digest() == b.student.shipped_as[1]
    changed = load_shipped()
    with torch.no_grad():
        changed.head[0].gfl_cls.conv.bias.add_(0.01)
    out = save_bundle(tmp_path / "tuned", changed, b.translator, b.pca, {"imgsz": IMGSZ})
    assert (out / "student.safetensors").exists()
    again = load_bundle(out)
    assert torch.equal(again.student.head[0].gfl_cls.conv.bias, changed.head[0].gfl_cls.conv.bias)
    assert again.digest != b.digest


def test_the_bundle_ships_its_open_set_defaults_and_a_gallery_overrides_them(setup, tmp_path):
    from mocha.models.bundle import load_bundle

    root, bundle, _ = setup
    b = load_bundle(bundle)
    tuned = save_bundle(tmp_path / "tuned", b.student, b.translator, b.pca,
                        {"imgsz": IMGSZ, "personalize": {"min_similarity": 0.42, "coarse_penalty": 0.3}})
    onnx = export_onnx(tuned, tmp_path / "onnx")
    for backend, path in (("torch", tuned), ("onnx", onnx)):
        with Personalizer.load(path, backend=backend) as p:
            assert (p.min_similarity, p.coarse_penalty) == (0.42, 0.3)
        with Personalizer.load(path, tmp_path / f"{backend}.gallery", backend=backend) as p:
            p.gallery.set_setting("min_similarity", 0.1)
        with Personalizer.load(path, tmp_path / f"{backend}.gallery", backend=backend, coarse_penalty=0.0) as p:
            assert (p.min_similarity, p.coarse_penalty) == (0.1, 0.0)
