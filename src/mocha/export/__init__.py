"""mocha.export — ONNX export of a bundle and its onnxruntime runner (docs/personalize.md).

Public face: `export_onnx(bundle, out, imgsz=None, opset=17) -> Path` (detector.onnx + embedder.onnx +
export.json), `read_export_meta(path)`, `OnnxEngine(path, threads=None)` (same engine interface as
`mocha.personalize.engine.TorchEngine`), `session_options(threads)`. onnx/onnxruntime are imported
when used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OnnxEngine", "export_onnx", "read_export_meta", "session_options"]


def __getattr__(name: str) -> Any:
    if name in ("export_onnx", "read_export_meta"):
        from mocha.export import onnx_export

        return getattr(onnx_export, name)
    if name in ("OnnxEngine", "session_options"):
        from mocha.export import onnx_runner

        return getattr(onnx_runner, name)
    raise AttributeError(name)
