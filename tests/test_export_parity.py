"""ONNX vs PyTorch on a deliberately perturbed bundle and real photos, at two input sizes.

A freshly initialised bundle has identity BatchNorm affines and a translator standardisation of μ=0, σ=1,
so an export that dropped either would still match PyTorch. Here every BatchNorm has a random affine and
running statistics taken from a photo, the translator has random μ/σ, and the bundle carries a fitted
(non-identity) PCA; the images are the photos shipped with ultralytics and scikit-image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mocha.data.images import letterbox
from mocha.export.onnx_export import export_onnx, read_export_meta
from mocha.export.onnx_runner import OnnxEngine
from mocha.models.bundle import load_bundle
from mocha.personalize.engine import TorchEngine

NAMES = ["mug", "ball", "can"]
SIZES = (320, 416)
DIM = 32


def photos() -> list[np.ndarray]:
    """Five real photos (people, a bus, a cat, a cup) that ship inside installed dependencies."""
    import skimage
    from ultralytics.utils import ASSETS

    sk = Path(skimage.__file__).parent / "data"
    paths = [ASSETS / "bus.jpg", ASSETS / "zidane.jpg",
             *(sk / n for n in ("astronaut.png", "coffee.png", "chelsea.png"))]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def perturbed_bundle(path: Path, photo: np.ndarray) -> Path:
    """YOLOv8n + translator + PCA with nothing at its identity value (see the module docstring)."""
    from mocha.models.bundle import save_bundle
    from mocha.models.detector import Student
    from mocha.models.translator import Translator
    from mocha.personalize.bench import calibrate_bn
    from mocha.teacher.pca import PCAArtifact

    torch.manual_seed(3)
    g = torch.Generator().manual_seed(3)
    student = Student.create("yolov8n.yaml", names=NAMES)
    with torch.no_grad():
        for m in student.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    # the affine first, then the running statistics of that network on a photo (so activations neither
    # vanish nor explode through the 60 BatchNorm layers)
    calibrate_bn(student, photo, SIZES[0])
    with torch.no_grad():
        for branch in student.model.model[-1].cv3:  # class logits ×0.05: confidences spread, no ties at 1
            branch[-1].weight.mul_(0.05)
            branch[-1].bias.mul_(0.05)
    translator = Translator(448, DIM)
    with torch.no_grad():
        translator.mu.copy_(torch.randn(448, generator=g))
        translator.sigma.copy_(0.5 + 1.5 * torch.rand(448, generator=g))
    teacher_like = torch.randn(300, 64, generator=g) * torch.linspace(3.0, 0.2, 64) + 0.5
    pca = PCAArtifact.fit(teacher_like, DIM)
    return save_bundle(path, student.eval(), translator.eval(), pca, {"imgsz": SIZES[0]})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared CPU two torch threads wait on each other (10x slower here)
    root = tmp_path_factory.mktemp("parity")
    images = photos()
    bundle = perturbed_bundle(root / "bundle", images[0])
    exports = {s: export_onnx(bundle, root / f"onnx{s}", imgsz=s) for s in SIZES}
    yield bundle, exports, images
    torch.set_num_threads(threads)


def test_the_bundle_is_far_from_identity(setup):
    """Guards the fixture: if it drifted back to identity values, the parity test below would prove nothing."""
    bundle, _, _ = setup
    b = load_bundle(bundle)
    bns = [m for m in b.student.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(bns) > 50
    assert min((m.weight - 1).abs().max().item() for m in bns) > 0.1
    assert min(m.bias.abs().max().item() for m in bns) > 0.1
    assert min((m.running_var - 1).abs().max().item() for m in bns) > 0.1
    assert min(m.running_mean.abs().max().item() for m in bns) > 1e-3
    t = b.translator
    assert t.mu.abs().mean().item() > 0.5 and (t.sigma - 1).abs().mean().item() > 0.2
    assert b.pca is not None and (b.pca.scale - 1).abs().max().item() > 0.5 and b.pca.mean.abs().max().item() > 0.1


@pytest.mark.parametrize("imgsz", SIZES)
def test_parity_on_real_photos(setup, imgsz):
    bundle, exports, images = setup
    out = exports[imgsz]
    assert read_export_meta(out)["bundle_digest"] == load_bundle(bundle).digest  # the PCA is part of the digest
    pt, ox = TorchEngine.load(bundle, device="cpu", imgsz=imgsz), OnnxEngine(out, threads=1)
    pca = pt.bundle.pca
    s = float(imgsz)
    boxes = np.array([[0, 0, s, s], [10.5, 20.25, 100, 180], [200, 30, 205, 33], [64, 64, 128, 96]], np.float32)
    for img in images:
        lb_img, _ = letterbox(img, imgsz)
        with torch.no_grad():
            feats, raw = pt.bundle.student(pt._tensor(lb_img))
        pred, ofeats = ox.forward(lb_img)
        ref = raw[0].numpy()
        assert pred.shape == ref.shape == (1, 4 + len(NAMES), sum((imgsz // st) ** 2 for st in (8, 16, 32)))
        # float32 reordering only: box coordinates (px) to 1e-4 of the image size, class scores (0..1) to 1e-5;
        # a dropped BatchNorm or an identity affine moves them by whole pixels and tenths of a score
        assert np.abs(pred[0, :4] - ref[0, :4]).max() <= 1e-4 * s
        assert np.abs(pred[0, 4:] - ref[0, 4:]).max() <= 1e-5
        for a, b in zip(ofeats, feats, strict=True):  # maps of magnitude 10-50: relative
            assert np.abs(a - b.numpy()).max() <= 1e-4 * max(1.0, float(np.abs(b.numpy()).max()))
        # embeddings at given boxes (enrolment with a user box), from a full-image box to a 5×3 px one; from the
        # maps above (`embed` would run the detector again)
        with torch.no_grad():
            e_pt = pt.bundle.embed_regions(feats, [torch.from_numpy(boxes)]).numpy()
        e_ox = ox._embed(ofeats, boxes)
        assert e_pt.shape == e_ox.shape == (4, DIM)
        assert np.abs(e_pt - e_ox).max() <= 1e-4 * max(1.0, np.abs(e_pt).max())
        # the same embeddings taken back to the teacher space through the (non-identity) PCA
        back_pt, back_ox = pca.inverse(torch.from_numpy(e_pt)), pca.inverse(torch.from_numpy(e_ox))
        assert (back_pt - back_ox).abs().max().item() <= 1e-4 * max(1.0, back_pt.abs().max().item())
        # the full detect path: the same boxes in the same order after NMS, the same embeddings
        d_pt, m_pt = pt.detect(lb_img, conf=0.0, max_det=50)
        d_ox, m_ox = ox.detect(lb_img, conf=0.0, max_det=50)
        assert len(d_pt) == len(d_ox) == 50
        assert np.abs(d_pt[:, :4] - d_ox[:, :4]).max() <= 1e-4 * s
        assert np.abs(d_pt[:, 4] - d_ox[:, 4]).max() <= 1e-5 and np.array_equal(d_pt[:, 5], d_ox[:, 5])
        assert np.abs(m_pt - m_ox).max() <= 1e-4 * max(1.0, np.abs(m_pt).max())
