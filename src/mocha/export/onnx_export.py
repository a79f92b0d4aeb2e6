"""ONNX export of a bundle as two graphs, so instances can still be enrolled after export.

    detector.onnx   images (1,3,S,S) float [0,1] → pred (1, 4+nc, A) decoded xywh + class scores (all anchors),
                    and the maps regions are pooled from, named by stride as ultralytics' levels: p3, p4, p5 (the
                    maps feeding the head; NanoDet-g with `stride4` adds p2 first)
    embedder.onnx   those maps + boxes (N,4) xyxy letterboxed pixels → embeddings (N, d_t)
                    (the box-mean pooling of mocha.models.pooling as one matrix product, + the translator)
    export.json     format, bundle digest/path, class names, imgsz, strides, dims, opset, versions, the sha256
                    of each graph (a manifest copied beside other graphs is refused), int8 (null, or how the
                    detector was quantized and on which calibration images: mocha.export.quantize)

NMS runs outside the graphs (the same ultralytics call as the PyTorch student), so both backends keep the
same boxes. Prototypes are data (the gallery), not weights: enrol and detect work the same after export.
The image size is fixed at export (the head's anchors are baked in); export again for another size.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mocha.data.images import check_imgsz
from mocha.errors import ConfigError
from mocha.io import atomic_dir, file_sha256, read_manifest
from mocha.models.pooling import bin_boxes, pool_image

FORMAT = "mocha-onnx/1"
GRAPHS = ("detector.onnx", "embedder.onnx")
INT8_MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (the axis attribute) start at opset 13
log = logging.getLogger(__name__)


class DetectorGraph(nn.Module):
    """image → (decoded predictions of every anchor, P3, P4, P5)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        feats, raw = self.student(images)
        return (self.student.export_predictions(raw, tuple(images.shape[-2:])), *feats)


class ExportTranslator(nn.Module):
    """The translator with its attention written out (same weights, exportable: torch's fused attention
    kernel has no ONNX symbolic). One token per region (SPEC): softmax over one key is 1, so
    MHA(x,x,x) = out_proj(v_proj(x)), a linear map. More tokens (pool_bins > 1): scaled dot-product attention
    of the first token over the region's tokens, head by head."""

    def __init__(self, t: nn.Module) -> None:
        super().__init__()
        self.t = t
        d = t.in_dim
        w, b = t.attn.in_proj_weight.detach(), t.attn.in_proj_bias
        b = b.detach() if b is not None else torch.zeros(3 * d)
        for i, name in enumerate("qkv"):
            self.register_buffer(f"w_{name}", w[i * d:(i + 1) * d].clone())
            self.register_buffer(f"b_{name}", b[i * d:(i + 1) * d].clone())

    def _attend(self, x: Tensor) -> Tensor:
        t = self.t
        n, k, d = x.shape
        h = t.heads
        v = torch.nn.functional.linear(x, self.w_v, self.b_v)
        if k == 1:
            return t.attn.out_proj(v[:, 0])
        q = torch.nn.functional.linear(x[:, 0], self.w_q, self.b_q).reshape(n, h, 1, d // h)
        keys = torch.nn.functional.linear(x, self.w_k, self.b_k).reshape(n, k, h, d // h).transpose(1, 2)
        w = torch.softmax(q @ keys.transpose(2, 3) / (d // h) ** 0.5, -1)  # (n, h, 1, k)
        out = (w @ v.reshape(n, k, h, d // h).transpose(1, 2)).reshape(n, d)
        return t.attn.out_proj(out)

    def forward(self, f: Tensor) -> Tensor:
        t = self.t
        x = (f.reshape(-1, t.tokens, t.in_dim) - t.mu) / t.sigma.clamp_min(1e-5)
        y = x[:, 0] + t.norm1(self._attend(x))
        y = y + t.norm2(t.ffn(y))
        return t.proj(y)


# the embedder's pooling (tests and scripts/time_embedder_pooling.py use this name): one matrix product per level,
# 1.1 against 3.7 ms of summed-area tables for 15 boxes on NanoDet-g's maps at 416² (onnxruntime, 2 threads)
pool_one_image = pool_image


def map_names(strides: tuple[int, ...] | list[int]) -> list[str]:
    """Graph names of the pooled maps: p<log2 stride>, as ultralytics names its levels (stride 8 → p3)."""
    return [f"p{int(s).bit_length() - 1}" for s in strides]


class EmbedderGraph(nn.Module):
    """(the pooled maps, boxes of the one image) → translated region embeddings."""

    def __init__(self, translator: nn.Module, strides: tuple[int, ...], bins: int = 1) -> None:
        super().__init__()
        self.translator = ExportTranslator(translator)
        self.strides = tuple(float(s) for s in strides)
        self.bins = int(bins)

    def forward(self, *inputs: Tensor) -> Tensor:
        *maps, boxes = inputs
        tokens = [torch.cat([pool_one_image(f, boxes, s) for f, s in zip(maps, self.strides, strict=True)], 1)]
        if self.bins > 1:  # the b×b grid of each box (mocha.models.pooling.pool_regions' layout)
            cells = bin_boxes(boxes, self.bins)
            grid = torch.cat([pool_one_image(f, cells, s) for f, s in zip(maps, self.strides, strict=True)], 1)
            tokens.append(grid.reshape(boxes.shape[0], -1))
        return self.translator(torch.cat(tokens, 1))


def default_imgsz(bundle: Any) -> int:
    return int((bundle.config or {}).get("imgsz", 640))


def export_onnx(bundle_path: str | Path, out: str | Path, imgsz: int | None = None, opset: int = 17,
                int8: bool = False, calib: str | Path | None = None) -> Path:
    """Export `bundle_path` to the folder `out` (written atomically); returns `out`.

    int8=True quantizes the detector graph, calibrated on the images of the folder `calib`."""
    import onnx

    from mocha.models.bundle import load_bundle, personalize_defaults, versions

    calib_files = _check_int8(int8, calib, opset)
    bundle = load_bundle(bundle_path, device="cpu")
    imgsz = check_imgsz(int(imgsz or default_imgsz(bundle)))
    student, translator = bundle.student.eval(), bundle.translator.eval()
    maps = map_names(student.strides)
    x = torch.zeros(1, 3, imgsz, imgsz)
    with torch.no_grad():
        feats, _ = student(x)
    s = float(imgsz)
    boxes = torch.tensor([[0.0, 0.0, s, s], [s * 0.25, s * 0.3, s * 0.6, s * 0.9], [1.0, 2.0, 9.0, 7.0]])
    out = Path(out)
    with atomic_dir(out) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns about traced shapes we fix on purpose
        torch.onnx.export(
            DetectorGraph(student), (x,), str(tmp / "detector.onnx"), dynamo=False, opset_version=opset,
            input_names=["images"], output_names=["pred", *maps], do_constant_folding=True,
        )
        torch.onnx.export(
            EmbedderGraph(translator, student.strides, student.pool_bins), (*feats, boxes), str(tmp / "embedder.onnx"),
            dynamo=False, opset_version=opset, input_names=[*maps, "boxes"], output_names=["embeddings"],
            dynamic_axes={"boxes": {0: "n"}, "embeddings": {0: "n"}}, do_constant_folding=True,
        )
        for name in GRAPHS:
            onnx.checker.check_model(str(tmp / name))
        int8_meta = _quantize(tmp, calib_files, Path(calib), imgsz) if calib_files else None
        meta = {
            "format": FORMAT,
            "bundle_digest": bundle.digest,
            "bundle_path": str(Path(bundle.path).resolve()) if bundle.path else None,
            "names": list(student.names),
            "imgsz": imgsz,
            "strides": list(student.strides),
            "feature_dims": list(student.feature_dims),
            "pool_bins": student.pool_bins,
            "dim": bundle.dim,
            "personalize": personalize_defaults(bundle.config),
            "opset": opset,
            "int8": int8_meta,
            "files": {name: file_sha256(tmp / name) for name in GRAPHS},
            "versions": {**versions(), "onnx": onnx.__version__},
        }
        (tmp / "export.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("exported %s → %s (imgsz %d%s)", bundle_path, out, imgsz, ", int8 detector" if int8 else "")
    return out


def _check_int8(int8: bool, calib: str | Path | None, opset: int) -> list[Path]:
    """The calibration images of an int8 export ([] for fp32); bad settings fail before anything is written."""
    if not int8:
        if calib is not None:
            raise ConfigError(f"calib={calib}: calibration images are only used with int8=true")
        return []
    if calib is None:
        raise ConfigError("int8=true needs calib=<folder of images like the ones you will detect on>")
    if opset < INT8_MIN_OPSET:
        raise ConfigError(f"opset={opset}: int8 (per-channel QDQ) needs opset >= {INT8_MIN_OPSET}")
    from mocha.export.quantize import calibration_images

    return calibration_images(calib)


def _quantize(folder: Path, files: list[Path], calib: Path, imgsz: int) -> dict[str, Any]:
    """Replace folder/detector.onnx by its int8 version; check onnxruntime runs it; the manifest's int8 entry."""
    import onnxruntime as ort

    from mocha.export.quantize import calibration_digest, quantize_detector

    fp32 = folder / "detector.fp32.onnx"
    (folder / "detector.onnx").rename(fp32)
    info = quantize_detector(fp32, folder / "detector.onnx", files, imgsz)
    fp32.unlink()
    try:  # an onnxruntime without these int8 kernels fails here, not at the user's first detection
        ort.InferenceSession(str(folder / "detector.onnx"), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        raise ConfigError(f"int8: onnxruntime {ort.__version__} cannot run the quantized detector ({exc})") from None
    root = calib.resolve()
    info["calibration"] = {"path": str(root), "count": len(files),
                           "sha256": calibration_digest([f.resolve() for f in files], root)}
    return info


def read_export_meta(path: str | Path, verify: bool = False) -> dict[str, Any]:
    """export.json of an export folder (ConfigError when absent, malformed or incomplete). verify=True also
    checks each graph against the sha256 the manifest records (a manifest of another export is refused)."""
    path = Path(path)
    meta = read_manifest(path, "export.json", FORMAT, "mocha ONNX export", "run `mocha export --bundle ...`")
    for name in GRAPHS:
        if not (path / name).exists():
            raise ConfigError(f"{path}: export is missing {name}")
        want = (meta.get("files") or {}).get(name)
        if verify and want and file_sha256(path / name) != want:
            raise ConfigError(f"{path / name}: does not match {path / 'export.json'} (the manifest of another "
                              "export or bundle?); export again")
    return meta
